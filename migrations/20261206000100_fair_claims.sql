-- Fair claiming (issue 18): tenants share the fleet. Before this, claim_tasks took the highest
-- priority, then the oldest, across all owners, so one tenant's backlog starved everyone queued
-- after it. Now, per worker kind (docs/state-machine.md, "Fair claiming"):
--   * a tenant (a task's owner; tasks without one are one more tenant) runs at most its running
--     cap at once: cogo.tenant_limits.max_running, or by default three quarters of the live
--     capacity of the kind (rounded down, at least 1; all of it for analysis kinds), so a newcomer finds
--     a free slot at once;
--     ownerless tasks (the operator's: service role, direct SQL) have no cap, only their turn;
--   * priority still comes first, across tenants;
--   * at equal priority, the tenant with the fewest tasks running goes first, then the one served
--     least recently (round-robin), then the oldest task.
-- claim_tasks stays one statement with FOR UPDATE SKIP LOCKED; only which rows it picks changed.

-- ── per-tenant limits (operator only) ─────────────────────────────────────────────────────────
-- The share of a kind's live capacity one tenant may hold when the operator set nothing for it.
-- Three quarters for tasks users write; the whole capacity for the system's own kinds (analysis
-- batches): they are short, already shared round-robin, and one user's analysis should use every
-- analysis slot when nobody else is waiting.
create function cogo.default_running_share(p_kind text) returns numeric
language sql immutable set search_path = '' as $$
  select case when cogo.reserved_kind(p_kind) then 1.0 else 0.75 end
$$;

-- One row per tenant the operator configured; a tenant without a row (or with a null cap) gets
-- the default. Not for clients: read by claim_tasks, written by cogo.set_tenant_limits.
create table cogo.tenant_limits (
  owner uuid primary key,
  -- Tasks of one worker kind the tenant may have active (claimed, running, blocked, recovering)
  -- at once; null: floor(cogo.default_running_share(kind) × the kind's live capacity), at least 1.
  max_running integer check (max_running between 1 and 100000),
  updated_at timestamptz not null default now()
);
alter table cogo.tenant_limits enable row level security;
-- The service role (which bypasses RLS) edits it through cogo.set_tenant_limits; no client role
-- reads or writes it, which this policy states (Supabase's linter, lint 0008 rls_enabled_no_policy).
create policy tenant_limits_no_client_access on cogo.tenant_limits
  for all to anon, authenticated using (false) with check (false);

-- Sets a tenant's limits from a JSON object (service role only) and returns the row. Keys left
-- out keep their value; a key set to null goes back to the default. Unknown keys are refused, so
-- a typo never passes for a change. Keys: maxRunning.
create function cogo.set_tenant_limits(p_owner uuid, p_limits jsonb) returns cogo.tenant_limits
language plpgsql security definer set search_path = '' as $$
declare
  v_row cogo.tenant_limits;
  v_unknown text;
begin
  if coalesce(auth.role(), 'service_role') <> 'service_role' then
    raise exception 'tenant limits are set by the operator (service role)' using errcode = '42501';
  end if;
  if p_owner is null then
    raise exception 'set_tenant_limits: owner is required' using errcode = '22023';
  end if;
  if p_limits is null or jsonb_typeof(p_limits) <> 'object' then
    raise exception 'set_tenant_limits: limits must be a JSON object such as {"maxRunning": 8}' using errcode = '22023';
  end if;
  select k into v_unknown from jsonb_object_keys(p_limits) k where k <> all(array['maxRunning']) limit 1;
  if v_unknown is not null then
    raise exception 'set_tenant_limits: unknown limit "%" (known: maxRunning)', v_unknown using errcode = '22023';
  end if;
  if p_limits ? 'maxRunning' and jsonb_typeof(p_limits -> 'maxRunning') <> 'null'
     and (jsonb_typeof(p_limits -> 'maxRunning') <> 'number' or (p_limits ->> 'maxRunning')::numeric < 1
          or (p_limits ->> 'maxRunning')::numeric <> trunc((p_limits ->> 'maxRunning')::numeric)) then
    raise exception 'set_tenant_limits: maxRunning is a whole number of at least 1 (null for the default), got %', p_limits -> 'maxRunning'
      using errcode = '22023';
  end if;
  insert into cogo.tenant_limits (owner) values (p_owner) on conflict (owner) do nothing;
  update cogo.tenant_limits l
     set max_running = case when p_limits ? 'maxRunning' then (p_limits ->> 'maxRunning')::integer else l.max_running end,
         updated_at = now()
   where l.owner = p_owner
  returning * into v_row;
  return v_row;
end;
$$;

-- ── indexes the fair claim walks ──────────────────────────────────────────────────────────────
-- A tenant is coalesce(owner, zero uuid). Queued tasks by kind and tenant in claim order: the
-- claim skips from one tenant to the next on it and reads each tenant's head.
create index tasks_queued_by_tenant on public.tasks
  (required_kind, coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), priority desc, created_at, id)
  where status = 'queued';
-- A tenant's active tasks of a kind (its running count).
create index tasks_active_by_tenant on public.tasks
  (required_kind, coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid))
  where status = any(cogo.active_states());
-- A tenant's last claim of a kind (who was served least recently).
create index tasks_claimed_by_tenant on public.tasks
  (required_kind, coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), claimed_at desc)
  where claimed_at is not null;

-- ── the claim ─────────────────────────────────────────────────────────────────────────────────
-- queued → claimed. Claims up to p_max queued tasks this worker can run, in one statement:
--   tenants   every tenant with a queued task of the worker's kind (a skip scan: one index probe each);
--   shares    each tenant's active tasks of the kind, its cap, and its last claim;
--   candidates  each tenant's first min(p_max, cap − running) tasks this worker may run, numbered n;
--   next      those ordered by priority, then running + n (fewest running first), then the least
--             recently served tenant, then the oldest task; locked FOR UPDATE SKIP LOCKED.
-- A task that excluded this worker (a `reassign`) is passed over while another live worker could
-- take it. Takes an attempt (the table's checks keep it within max_attempts). Two workers claiming
-- for one tenant at the same instant both count its running tasks before either commits, so a cap
-- can be passed by up to one claim batch until those finish.
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
      select c.id, c.priority, c.created_at, sh.running + c.n as load, sh.served_at
        from shares sh
        cross join lateral (
          select t.id, t.priority, t.created_at, row_number() over (order by t.priority desc, t.created_at, t.id) as n
            from public.tasks t
           where t.status = 'queued' and t.required_kind = w.kind
             and coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid) = sh.tenant
             and t.required_labels <@ w.labels and t.run_after <= now()
             and not (p_worker = any(t.excluded_workers) and cogo.another_worker_can_take(t, p_worker))
           order by t.priority desc, t.created_at, t.id
           limit least(p_max, greatest(sh.cap - sh.running, 0))
        ) c
    ),
    next as (
      select t.id from public.tasks t join candidates c on c.id = t.id
       where t.status = 'queued'
       order by c.priority desc, c.load, c.served_at nulls first, c.created_at, c.id
       limit p_max
       for update of t skip locked
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
revoke all on cogo.tenant_limits from public, anon, authenticated;
revoke execute on function cogo.default_running_share(text), cogo.set_tenant_limits(uuid, jsonb) from public;
grant execute on function cogo.default_running_share(text), cogo.set_tenant_limits(uuid, jsonb) to service_role;
