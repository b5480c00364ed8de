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
-- Every claim path (cogo.claim_tasks, the persistent sandboxes' command claim) and nothing else
-- raises `attempt`, so one trigger on it covers them all (an update that only moves timestamps,
-- as tests moving time do, keeps started_at); start_task then stamps the new attempt's start.
create function cogo.reset_attempt_start() returns trigger
language plpgsql set search_path = '' as $$
begin
  new.started_at := null;
  return new;
end;
$$;
create trigger tasks_attempt_start before update of attempt on public.tasks
  for each row when (new.attempt > old.attempt) execute function cogo.reset_attempt_start();

-- ── grants (as 20261126000800_grants.sql: PUBLIC nothing, the service role everything) ─────────
revoke execute on function cogo.recovery_tried(uuid), cogo.give_up_recovery(uuid, integer, uuid, jsonb),
  cogo.reset_attempt_start() from public;
grant execute on function cogo.recovery_tried(uuid), cogo.give_up_recovery(uuid, integer, uuid, jsonb),
  cogo.reset_attempt_start() to service_role;
