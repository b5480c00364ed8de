-- Block detection and recovery (issue 6, docs/state-machine.md "Blocks and recovery").
-- A worker's monitor reports a block (running → blocked), applies the recovery plan from
-- functions/_shared/recovery/planner.ts through the fenced transitions of 20261126000200
-- (report_block, begin_recovery, end_recovery, requeue_for_recovery, finish_task), and every step
-- is a task event. Tasks of a worker that stopped heartbeating are a block too (`worker_lost`),
-- recorded by cogo.expire_task through cogo.record_worker_lost below. This file holds the rest:
-- per-task options, the API's recover requests, and what /health reports.

-- Per-task thresholds and recovery options (validated by the API's zod schema). Set in the same
-- transaction as cogo.enqueue_task, so no worker sees the task without them.
create function cogo.set_block_options(p_task uuid, p_detection jsonb, p_recovery jsonb) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  v_task := cogo.lock_callers_task(p_task);
  if v_task.status = 'queued' and v_task.attempt = 0 then
    update public.tasks set block_detection = coalesce(p_detection, '{}'), recovery = coalesce(p_recovery, '{}')
     where id = p_task;
  end if;
end;
$$;

-- Worker loss as a block, written by cogo.expire_task before the status change it causes: the
-- `block_detected` event {reason: "worker_lost"}, then `reassign` (re-queued: p_next = 'queued')
-- or `give_up` (no attempts left) as recovery events.
create function cogo.record_worker_lost(p_task public.tasks, p_next public.task_status, p_reason text) returns void
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
    perform cogo.append_event_unchecked(p_task.id, 'recovery_failed', v_action || jsonb_build_object(
      'action', 'give_up', 'diagnosis', p_reason));
  end if;
end;
$$;

-- How long without a heartbeat before the database may take a worker's tasks: the worker stops
-- them itself at 70 % of a lease measured from when its last good heartbeat was *sent*, checked
-- every lease/20, and killing takes a moment, so 70 % after the heartbeat *ran* would be too early
-- (a task could be re-queued while its sandbox still ran). 75 % plus a second, and never later
-- than the lease itself (then the lease rescuer would take them anyway).
create function cogo.worker_silence(p_lease_ms integer) returns interval
language sql immutable set search_path = '' as $$
  select make_interval(secs => least(p_lease_ms, 0.75 * p_lease_ms + 1000) / 1000.0)
$$;

-- The API's recover request for one task. A task whose worker has been silent for
-- cogo.worker_silence since its last heartbeat and since it claimed the task (it has stopped the
-- task itself by then) has its lease expired and goes through
-- cogo.expire_task now; a live worker is told over cogo_control and applies the request (or its
-- own plan) through the fenced transitions.
create function cogo.request_recovery(p_task uuid, p_request jsonb) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
  w public.workers;
begin
  v_task := cogo.lock_callers_task(p_task);
  if not (v_task.status = any(cogo.active_states())) then
    raise exception 'task % is %: only claimed, running, blocked or recovering tasks can be recovered', p_task, v_task.status
      using errcode = 'CG409';
  end if;
  select * into w from public.workers where id = v_task.worker_id;
  -- Silent since it was handed this task, not merely since its last heartbeat: a worker whose
  -- heartbeats fail may still claim, and stops such a task only at its next lease-safety tick.
  if w.id is null or greatest(w.last_heartbeat_at, v_task.claimed_at) < now() - cogo.worker_silence(w.lease_ms)
     or v_task.lease_expires_at <= now() then
    update public.tasks set lease_expires_at = now() where id = p_task;
    perform cogo.expire_task(p_task);
    return jsonb_build_object('taskId', p_task, 'applied', 'reassign', 'workerId', v_task.worker_id);
  end if;
  perform pg_notify('cogo_control', json_build_object('action', 'recover', 'taskId', p_task, 'workerId', v_task.worker_id,
                                                      'request', coalesce(p_request, '{}'))::text);
  return jsonb_build_object('taskId', p_task, 'applied', 'sent_to_worker', 'workerId', v_task.worker_id);
end;
$$;

-- Recover what one worker holds: a silent worker is marked offline, and each of its tasks it has
-- been silent on for cogo.worker_silence (since its last heartbeat and since the claim) has its
-- lease expired and goes through cogo.expire_task now; a task it claimed a moment ago keeps
-- running until the worker stops it or its lease runs out. A live worker is asked to recover its
-- blocked tasks.
create function cogo.recover_worker(p_worker uuid) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
  v_silent boolean;
  v_requeued integer := 0;
  v_signalled integer := 0;
  t record;
begin
  select * into w from public.workers where id = p_worker for update;
  if not found then
    raise exception 'worker % not found', p_worker using errcode = 'CG404';
  end if;
  v_silent := w.status = 'offline' or w.last_heartbeat_at < now() - cogo.worker_silence(w.lease_ms);
  if v_silent then
    update public.workers set status = 'offline' where id = p_worker;
    for t in
      update public.tasks set lease_expires_at = now()
       where worker_id = p_worker and status = any(cogo.active_states())
         and (greatest(w.last_heartbeat_at, claimed_at) < now() - cogo.worker_silence(w.lease_ms) or lease_expires_at <= now())
      returning id
    loop
      if cogo.expire_task(t.id) is not null then
        v_requeued := v_requeued + 1;
      end if;
    end loop;
  else
    for t in select id from public.tasks where worker_id = p_worker and status = 'blocked' loop
      perform pg_notify('cogo_control', json_build_object('action', 'recover', 'taskId', t.id, 'workerId', p_worker,
                                                          'request', '{}'::json)::text);
      v_signalled := v_signalled + 1;
    end loop;
  end if;
  return jsonb_build_object('workerId', p_worker, 'silent', v_silent, 'requeued', v_requeued, 'signalled', v_signalled);
end;
$$;

-- For GET /health: blocks now, silent workers (named for the service role only), the last hour's
-- detections and recoveries.
create function cogo.block_health() returns jsonb
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
                            where e.type = 'recovery_failed' and e.created_at > now() - interval '1 hour')))
  );
$$;
