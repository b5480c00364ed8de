-- Host admission (issue 18): a worker claims only tasks whose memory limit fits what its host has
-- left. Before this, a task asking 64 GiB was cut to 8 GiB and every slot could hold one, so four
-- slots could promise 32 GiB on a 24 GiB host and the kernel's OOM killer chose among Postgres,
-- the worker and the tasks. Now (docs/state-machine.md, "Host admission"):
--   * a worker registers its memory budget (host memory, or its cgroup's limit, less a reserve
--     for itself and a local Postgres: worker/budget.ts) and its CPU budget (cores);
--   * claim_tasks admits a task only while the memory limits of the worker's active tasks plus its
--     own stay within the budget, for the whole batch it claims (a running sum in fair order);
--   * a task that does not fit now stays queued and smaller tasks behind it go first, until it has
--     been claimable for cogo.admission_patience(): from then on this worker claims nothing behind
--     it until enough memory is free for it (it cannot be passed over forever);
--   * a task that can never fit on this worker (more than its whole budget) is not its to claim;
--     the API refuses one larger than every live worker of its kind can give
--     (cogo.kind_memory_budgets, functions/_shared/admission.ts).
-- CPU is not admitted on: a task's limits have no core count (cpuTimeMs is a time budget), the
-- worker's concurrency bounds how many share its cores. The CPU budget is registered for the fleet view.
-- claim_tasks stays one statement with FOR UPDATE SKIP LOCKED and the fair order of
-- 20261206000100_fair_claims.sql; only which of those rows it takes changed.

-- ── budgets on the worker row ─────────────────────────────────────────────────────────────────
-- Null: the worker registered none (registered through the old signature, or by hand): it claims
-- without admission, as before, and the API counts it as giving MAX_MEMORY_BYTES per task.
alter table public.workers
  add column memory_budget_bytes bigint check (memory_budget_bytes >= 16777216),
  add column cpu_budget numeric check (cpu_budget > 0);

-- Users see a worker's budgets with its capacity (what the fleet view shows), not its host facts.
grant select (memory_budget_bytes, cpu_budget) on public.workers to authenticated;

-- register_worker takes the budgets; the old seven-argument call still works (they default to null).
drop function cogo.register_worker(text, text, text[], integer, integer, text, jsonb);
create function cogo.register_worker(p_name text, p_kind text, p_labels text[], p_capacity integer,
                                     p_lease_ms integer, p_version text, p_host jsonb,
                                     p_memory_budget_bytes bigint default null, p_cpu_budget numeric default null)
returns public.workers language sql security definer set search_path = '' as $$
  insert into public.workers (name, kind, labels, capacity, lease_ms, version, host, memory_budget_bytes, cpu_budget)
  values (p_name, p_kind, coalesce(p_labels, '{}'), p_capacity, p_lease_ms, p_version, coalesce(p_host, '{}'),
          p_memory_budget_bytes, p_cpu_budget)
  returning *;
$$;

-- ── what a task asks ──────────────────────────────────────────────────────────────────────────
-- The memory a task's limits ask for; a task that gives none gets the sandbox's default, 1 GiB
-- (DEFAULT_MEMORY_BYTES in functions/_shared/limits.ts; tests/sandbox/admission.test.ts compares them).
create function cogo.task_memory_bytes(p_limits jsonb) returns bigint
language sql immutable set search_path = '' as $$
  select coalesce((p_limits ->> 'memoryBytes')::bigint, 1073741824)
$$;

-- How long a task that does not fit may be passed over by smaller ones behind it (claimable since
-- greatest(created_at, run_after)). After that it holds its place: the worker claims nothing
-- behind it in the fair order until its memory is free, so the tasks it waits for are only those
-- already running (each ends within its wall time, an hour at most) and those ahead of it in the
-- fair order (a higher priority, a tenant with fewer running). Half a minute lets a stream of
-- small tasks use memory a big one waits for, without starving it.
create function cogo.admission_patience() returns interval
language sql immutable set search_path = '' as $$
  select interval '30 seconds'
$$;

-- Per kind, its live workers, the largest budget among them and how many gave none: what the API
-- checks a task's memory against (functions/_shared/admission.ts). Kinds without a live worker
-- are left out. Readable by users, as the fleet view is.
create function cogo.kind_memory_budgets(p_kinds text[]) returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce(jsonb_object_agg(b.kind, jsonb_build_object('live', b.live, 'maxBudgetBytes', b.max_budget, 'unbudgeted', b.unbudgeted)), '{}')
    from (select w.kind, count(*) as live, max(w.memory_budget_bytes) as max_budget,
                 count(*) filter (where w.memory_budget_bytes is null) as unbudgeted
            from public.workers w
           where w.kind = any(p_kinds) and cogo.worker_is_live(w)
           group by w.kind) b
$$;

-- The fleet view shows each worker's budgets beside its capacity.
create or replace function cogo.worker_public_summary(w public.workers) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'id', w.id, 'kind', w.kind, 'labels', to_jsonb(w.labels), 'capacity', w.capacity,
    'status', w.status, 'leaseMs', w.lease_ms, 'lastHeartbeatAt', w.last_heartbeat_at, 'createdAt', w.created_at,
    'memoryBudgetBytes', w.memory_budget_bytes, 'cpuBudget', w.cpu_budget,
    'running', (select count(*) from public.tasks t
                 where t.worker_id = w.id and t.status = any(cogo.active_states())));
$$;

-- ── unserved tasks (20261206000300_retention.sql) ──────────────────────────────────────────
-- A worker serves a task only if its budget can hold the task's memory: a task queued while no
-- worker was live (the static maximum applied) whose kind's workers all came up smaller fails as
-- unserved after the wait, instead of staying queued for ever. Workers without a budget serve any.
create or replace function cogo.kind_served_within(p_task public.tasks, p_wait interval) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.workers w
     where w.kind = p_task.required_kind and p_task.required_labels <@ w.labels
       and (w.memory_budget_bytes is null or w.memory_budget_bytes >= cogo.task_memory_bytes(p_task.limits))
       and (cogo.worker_is_live(w) or w.last_heartbeat_at > now() - p_wait));
$$;

-- ── the claim ─────────────────────────────────────────────────────────────────────────────────
-- queued → claimed. Claims up to p_max queued tasks this worker can run, in one statement:
--   tenants     every tenant with a queued task of the worker's kind (a skip scan: one index probe each);
--   room        the worker's memory budget less the memory limits of the tasks it holds (null: no budget);
--   shares      each tenant's active tasks of the kind, its cap, and its last claim;
--   candidates  each tenant's first min(p_max, cap − running) tasks this worker may run, numbered n:
--               with a budget, only tasks within it, and of those only ones that fit the room or
--               have waited past cogo.admission_patience() (those hold their place, below);
--   locked      those ordered by priority, then running + n (fewest running first), then the least
--               recently served tenant, then the oldest task; locked FOR UPDATE SKIP LOCKED, limit p_max;
--   next        of the locked rows in that order, those before the first one that does not fit the
--               room (a patient task: nothing behind it is taken) whose running sum of memory fits
--               it: the whole batch fits, and what is left over is claimed by the next poll.
-- A task that excluded this worker (a `reassign`) is passed over while another live worker could
-- take it. Takes an attempt (the table's checks keep it within max_attempts). Two workers claiming
-- for one tenant at the same instant both count its running tasks before either commits, so a cap
-- can be passed by up to one claim batch until those finish. A worker's own claims run one at a
-- time, so its room is never counted twice.
create or replace function cogo.claim_tasks(p_worker uuid, p_max integer) returns setof public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
  v_task public.tasks;
begin
  select * into w from public.workers where id = p_worker;
  if not found or w.status <> 'online' or p_max < 1 then
    return;
  end if;
  for v_task in
    with recursive tenants (tenant) as (
      (select coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid) from public.tasks t
        where t.status = 'queued' and t.required_kind = w.kind
        order by 1 limit 1)
      union all
      select (select coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid) from public.tasks t
               where t.status = 'queued' and t.required_kind = w.kind
                 and coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid) > s.tenant
               order by 1 limit 1)
        from tenants s where s.tenant is not null
    ),
    fleet as (
      select coalesce(sum(x.capacity), 0) as capacity from public.workers x where x.kind = w.kind and cogo.worker_is_live(x)
    ),
    room as (
      select w.memory_budget_bytes - (select coalesce(sum(cogo.task_memory_bytes(a.limits)), 0) from public.tasks a
                                       where a.worker_id = p_worker and a.status = any(cogo.active_states())) as free
    ),
    shares as materialized (
      select s.tenant,
             (select count(*) from public.tasks a
               where a.status = any(cogo.active_states()) and a.required_kind = w.kind
                 and coalesce(a.owner, '00000000-0000-0000-0000-000000000000'::uuid) = s.tenant) as running,
             -- Ownerless tasks are the operator's (service role, direct SQL): no share cap.
             case when s.tenant = '00000000-0000-0000-0000-000000000000'::uuid then f.capacity
                  else coalesce(l.max_running, greatest(1, floor(f.capacity * cogo.default_running_share(w.kind)))) end as cap,
             (select max(c.claimed_at) from public.tasks c
               where c.claimed_at is not null and c.required_kind = w.kind
                 and coalesce(c.owner, '00000000-0000-0000-0000-000000000000'::uuid) = s.tenant) as served_at
        from tenants s cross join fleet f
        left join cogo.tenant_limits l on l.owner = s.tenant
       where s.tenant is not null
    ),
    candidates as (
      select c.id, c.priority, c.created_at, sh.running + c.n as load, sh.served_at, c.memory
        from shares sh
        cross join room r
        cross join lateral (
          select t.id, t.priority, t.created_at, cogo.task_memory_bytes(t.limits) as memory,
                 row_number() over (order by t.priority desc, t.created_at, t.id) as n
            from public.tasks t
           where t.status = 'queued' and t.required_kind = w.kind
             and coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid) = sh.tenant
             and t.required_labels <@ w.labels and t.run_after <= now()
             and not (p_worker = any(t.excluded_workers) and cogo.another_worker_can_take(t, p_worker))
             and (r.free is null
                  or (cogo.task_memory_bytes(t.limits) <= w.memory_budget_bytes
                      and (cogo.task_memory_bytes(t.limits) <= r.free
                           or greatest(t.created_at, t.run_after) <= now() - cogo.admission_patience())))
           order by t.priority desc, t.created_at, t.id
           limit least(p_max, greatest(sh.cap - sh.running, 0))
        ) c
    ),
    locked as (
      select t.id, c.priority, c.load, c.served_at, c.created_at, c.memory
        from public.tasks t join candidates c on c.id = t.id
       where t.status = 'queued'
       order by c.priority desc, c.load, c.served_at nulls first, c.created_at, c.id
       limit p_max
       for update of t skip locked
    ),
    next as (
      select a.id
        from (select l.id,
                     sum(l.memory) over fair as taken,
                     bool_or(l.memory > r.free) over fair as held
                from locked l cross join room r
              window fair as (order by l.priority desc, l.load, l.served_at nulls first, l.created_at, l.id
                              rows between unbounded preceding and current row)) a
        cross join room r
       where r.free is null or (not a.held and a.taken <= r.free)
    )
    update public.tasks t
       set status = 'claimed', attempt = t.attempt + 1, worker_id = p_worker, claimed_at = now(),
           lease_expires_at = now() + make_interval(secs => w.lease_ms / 1000.0), reason = null,
           updated_at = now(), event_seq = t.event_seq + 1
      from next where t.id = next.id
    returning t.*
  loop
    perform cogo.task_status_changed(v_task, 'queued');
    return next v_task;
  end loop;
end;
$$;

-- ── grants (as 20261126000800_grants.sql: PUBLIC nothing, the service role everything) ─────────
revoke execute on function
  cogo.register_worker(text, text, text[], integer, integer, text, jsonb, bigint, numeric),
  cogo.task_memory_bytes(jsonb), cogo.admission_patience(),
  cogo.kind_memory_budgets(text[])
  from public;
grant execute on function
  cogo.register_worker(text, text, text[], integer, integer, text, jsonb, bigint, numeric),
  cogo.task_memory_bytes(jsonb), cogo.admission_patience(),
  cogo.kind_memory_budgets(text[])
  to service_role;
-- The API checks a user's task against the fleet as that user (functions/_shared/admission.ts).
grant execute on function cogo.kind_memory_budgets(text[]) to authenticated;
