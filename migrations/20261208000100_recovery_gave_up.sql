-- Issue 20: giving up is its own event, and a task row's claimedAt/startedAt are one attempt's.
--
-- `recovery_gave_up` ends a recovery that stops trying (the planner's give_up: recovery.maxRecoveries
-- or the attempts used up, a block no action helps, a lost worker's task with no attempt left), with
-- the diagnosis and the actions tried before. `recovery_failed` stays for an action that could not be
-- applied (a refused recover request, a re-queue refused for want of attempts, a cancel during the
-- recovery). Events of either type written before this migration keep their type.

-- The actions a task's recoveries started, all attempts, first use first, give_up left out.
create function cogo.recovery_tried(p_task uuid) returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce(jsonb_agg(a.action order by a.first), '[]')
    from (select e.data ->> 'action' as action, min(e.seq) as first from public.task_events e
           where e.task_id = p_task and e.type = 'recovery_started' and e.data ->> 'action' <> 'give_up'
           group by 1) a;
$$;

-- `recovery_gave_up`, fenced: the worker's give_up step. p_data: {action: 'give_up', attempt,
-- reason, diagnosis}; `tried` is added from the task's recovery_started events.
create function cogo.give_up_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_data jsonb) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  perform cogo.append_event_unchecked(p_task, 'recovery_gave_up', p_data || jsonb_build_object('tried', cogo.recovery_tried(p_task)));
end;
$$;

-- cogo.record_worker_lost as in 20261126000500_blocks_and_recovery.sql; a lost worker's task with
-- no attempt left gives up with `recovery_gave_up`.
create or replace function cogo.record_worker_lost(p_task public.tasks, p_next public.task_status, p_reason text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
  v_action jsonb;
begin
  select * into w from public.workers where id = p_task.worker_id;
  perform cogo.append_event_unchecked(p_task.id, 'block_detected', jsonb_build_object(
    'reason', 'worker_lost',
    -- now() is this transaction's start: a heartbeat committed since can be later than it.
    'durationMs', greatest(coalesce(floor(extract(epoch from now() - w.last_heartbeat_at) * 1000), 0), 0)::bigint,
    'usage', coalesce(p_task.usage, '{}'),
    'recoverable', p_next = 'queued',
    'evidence', jsonb_build_object('workerId', p_task.worker_id, 'workerName', w.name,
                                   'lastHeartbeatAt', w.last_heartbeat_at, 'leaseExpiredAt', p_task.lease_expires_at)));
  v_action := jsonb_build_object('attempt', p_task.attempt, 'reason', 'worker_lost');
  if p_next = 'queued' then
    perform cogo.append_event_unchecked(p_task.id, 'recovery_started', v_action || '{"action": "reassign"}');
    perform cogo.append_event_unchecked(p_task.id, 'recovery_succeeded', v_action || jsonb_build_object(
      'action', 'reassign', 'message', 're-queued for any live worker'));
  else
    perform cogo.append_event_unchecked(p_task.id, 'recovery_gave_up', v_action || jsonb_build_object(
      'action', 'give_up', 'diagnosis', p_reason, 'tried', cogo.recovery_tried(p_task.id)));
  end if;
end;
$$;


-- cogo.block_health as in 20261126000500_blocks_and_recovery.sql, plus lastHour.recoveryGaveUp.
create or replace function cogo.block_health() returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'blocked', (select count(*) from public.tasks where status = 'blocked'),
    'recovering', (select count(*) from public.tasks where status = 'recovering'),
    'silentWorkers', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'id', w.id, 'status', w.status, 'lastHeartbeatAt', w.last_heartbeat_at,
               'activeTasks', (select count(*) from public.tasks t where t.worker_id = w.id
                                 and t.status = any(cogo.active_states())))
               || case when cogo.caller_sees_hosts() then jsonb_build_object('name', w.name) else '{}' end
             order by w.last_heartbeat_at desc), '[]')
        from public.workers w
       where w.last_heartbeat_at < now() - make_interval(secs => w.lease_ms / 1000.0)
         and w.last_heartbeat_at > now() - interval '1 hour'),
    'lastHour', (
      select jsonb_build_object(
        'detected', coalesce((select jsonb_object_agg(reason, n) from (
                      select e.data ->> 'reason' as reason, count(*) as n from public.task_events e
                       where e.type = 'block_detected' and e.created_at > now() - interval '1 hour' group by 1) r), '{}'),
        'workerLost', (select count(*) from public.task_events e
                        where e.type = 'block_detected' and e.data ->> 'reason' = 'worker_lost'
                          and e.created_at > now() - interval '1 hour'),
        'recoverySucceeded', (select count(*) from public.task_events e
                               where e.type = 'recovery_succeeded' and e.created_at > now() - interval '1 hour'),
        'recoveryFailed', (select count(*) from public.task_events e
                            where e.type = 'recovery_failed' and e.created_at > now() - interval '1 hour'),
        'recoveryGaveUp', (select count(*) from public.task_events e
                            where e.type = 'recovery_gave_up' and e.created_at > now() - interval '1 hour')))
  );
$$;


-- cogo.metrics as in 20261126000700_dashboard_and_fleet.sql; recoveries count outcome `gave_up` too.
create or replace function cogo.metrics(p_buckets double precision[]) returns jsonb
language sql stable security definer set search_path = '' as $$
  with latency as materialized (
    select extract(epoch from t.claimed_at - greatest(t.created_at, t.run_after))::double precision as s
      from public.tasks t where t.claimed_at is not null and t.attempt = 1
  )
  select jsonb_build_object(
    'tasksByState', (select coalesce(jsonb_object_agg(s.status, s.n), '{}')
                       from (select status, count(*) n from public.tasks group by status) s),
    'claimLatency', jsonb_build_object(
      'buckets', (select jsonb_agg(jsonb_build_object('le', b, 'count', (select count(*) from latency where s <= b)) order by b)
                    from unnest(p_buckets) b),
      'count', (select count(*) from latency),
      'sum', (select coalesce(sum(greatest(s, 0)), 0) from latency)),
    'outputRowsTotal', (select coalesce(sum(output_seq), 0) from public.tasks),
    'outputRowsLastMinute', (select count(*) from public.task_output o
                              where o.task_id in (select id from public.tasks
                                                   where status = any(cogo.active_states())
                                                      or finished_at > now() - interval '60 seconds')
                                and o.created_at > now() - interval '60 seconds'),
    'blocksByReason', (select coalesce(jsonb_object_agg(r.reason, r.n), '{}')
                         from (select coalesce(data ->> 'reason', 'unknown') reason, count(*) n from public.task_events
                                where type = 'block_detected' group by 1) r),
    'recoveries', (select coalesce(jsonb_agg(jsonb_build_object('outcome', r.outcome, 'action', r.action, 'count', r.n)), '[]')
                     from (select substr(type, 10) outcome, coalesce(data ->> 'action', 'unknown') action, count(*) n
                             from public.task_events
                            where type in ('recovery_started', 'recovery_succeeded', 'recovery_failed', 'recovery_gave_up')
                            group by 1, 2) r),
    'workersByStatus', (select coalesce(jsonb_object_agg(w.status, w.n), '{}')
                          from (select status, count(*) n from public.workers group by status) w),
    'liveWorkers', (select count(*) from public.workers w where cogo.worker_is_live(w)),
    'queue', cogo.queue_depth(),
    'oldestQueuedAgeMs', (select coalesce(floor(extract(epoch from now() - min(created_at)) * 1000), 0)::bigint
                            from public.tasks where status = 'queued')
  );
$$;


-- /metrics and /health scan recoveries through these partial indexes: they take the new type.
drop index public.task_events_blocks_recoveries;
create index task_events_blocks_recoveries on public.task_events (type)
  where type in ('block_detected', 'recovery_started', 'recovery_succeeded', 'recovery_failed', 'recovery_gave_up');
drop index public.task_events_recent_blocks;
create index task_events_recent_blocks on public.task_events (created_at)
  where type in ('block_detected', 'recovery_succeeded', 'recovery_failed', 'recovery_gave_up');

-- A claim starts an attempt: the previous attempt's started_at must not sit beside the new
-- claimed_at (start_task keeps a started_at it finds, so a retry showed the first attempt's start).
-- The claim clears it; start_task then stamps the new attempt's start. (A persistent sandbox's
-- command has one attempt, so cogo.claim_sandbox_commands never claims a row with a start.)

-- cogo.claim_tasks exactly as 20261207000100_sandboxes.sql, plus `started_at = null`.
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
        where t.status = 'queued' and t.required_kind = w.kind and t.sandbox_id is null
        order by 1 limit 1)
      union all
      select (select coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid) from public.tasks t
               where t.status = 'queued' and t.required_kind = w.kind and t.sandbox_id is null
                 and coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid) > s.tenant
               order by 1 limit 1)
        from tenants s where s.tenant is not null
    ),
    fleet as (
      select coalesce(sum(x.capacity), 0) as capacity from public.workers x where x.kind = w.kind and cogo.worker_is_live(x)
    ),
    room as (
      select w.memory_budget_bytes - (select coalesce(sum(cogo.task_memory_bytes(a.limits)), 0) from public.tasks a
                                       where a.worker_id = p_worker and a.status = any(cogo.active_states())
                                         and a.sandbox_id is null) as free
    ),
    shares as materialized (
      select s.tenant,
             (select count(*) from public.tasks a
               where a.status = any(cogo.active_states()) and a.required_kind = w.kind and a.sandbox_id is null
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
           where t.status = 'queued' and t.required_kind = w.kind and t.sandbox_id is null
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
       set status = 'claimed', attempt = t.attempt + 1, worker_id = p_worker, claimed_at = now(), started_at = null,
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
revoke execute on function cogo.recovery_tried(uuid), cogo.give_up_recovery(uuid, integer, uuid, jsonb) from public;
grant execute on function cogo.recovery_tried(uuid), cogo.give_up_recovery(uuid, integer, uuid, jsonb) to service_role;
