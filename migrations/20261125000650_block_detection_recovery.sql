-- Block detection and recovery (issue 6, docs/state-machine.md "Blocks and recovery").
-- A worker's monitor reports a block (running → blocked), applies the recovery plan from
-- functions/_shared/recovery/planner.ts through the fenced functions below (blocked → recovering →
-- running, or back to the queue, or a final state), and every step is a task event. Tasks of a
-- worker that stopped heartbeating are a block too (`worker_lost`), recorded by a trigger on the
-- lease rescuer's update, so cogo.requeue_expired stays as it is.

alter table public.tasks
  add column block_detection jsonb not null default '{}',
  add column recovery jsonb not null default '{}',
  -- Workers a `reassign` moved the task away from; they do not claim it while another can.
  add column excluded_workers uuid[] not null default '{}';

-- Per-task thresholds and recovery options (validated by the API's zod schema). Set in the same
-- transaction as cogo.enqueue_task, so no worker sees the task without them.
create function cogo.set_block_options(p_task uuid, p_detection jsonb, p_recovery jsonb) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  select * into v_task from public.tasks where id = p_task for update;
  if not found or not cogo.caller_may_use(v_task.owner) then
    raise exception 'task % not found', p_task using errcode = 'CG404';
  end if;
  if v_task.status = 'queued' and v_task.attempt = 0 then
    update public.tasks set block_detection = coalesce(p_detection, '{}'), recovery = coalesce(p_recovery, '{}')
     where id = p_task;
  end if;
end;
$$;

-- A claim by an excluded worker is skipped (the row stays queued for another worker), as long as
-- another live worker could take it; otherwise the exclusion would starve the task.
create function cogo.skip_excluded_claim() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.worker_id = any(new.excluded_workers) and exists (
       select 1 from public.workers w
        where w.id <> new.worker_id and w.status = 'online' and w.kind = new.required_kind
          and new.required_labels <@ w.labels and not (w.id = any(new.excluded_workers))
          and w.last_heartbeat_at > now() - make_interval(secs => 2 * w.lease_ms / 1000.0)) then
    return null;
  end if;
  return new;
end;
$$;
create trigger tasks_claim_exclusion before update of status on public.tasks
  for each row when (old.status = 'queued' and new.status = 'claimed' and cardinality(new.excluded_workers) > 0)
  execute function cogo.skip_excluded_claim();

-- running/recovering → blocked, with the `block_detected` event (reason, durationMs, usage,
-- recoverable, evidence). Fenced: only the worker holding the attempt reports.
create function cogo.report_block(p_task uuid, p_attempt integer, p_worker uuid, p_data jsonb) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  v_task := cogo.fence(p_task, p_attempt, p_worker);
  perform cogo.append_event_unchecked(p_task, 'block_detected', p_data);
  update public.tasks set status = 'blocked' where id = p_task returning * into v_task;
  return v_task;
end;
$$;

-- blocked → recovering, with `recovery_started` {action, attempt, reason, …}.
create function cogo.begin_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_data jsonb) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  perform cogo.append_event_unchecked(p_task, 'recovery_started', p_data);
  update public.tasks set status = 'recovering' where id = p_task and status <> 'recovering';
end;
$$;

-- `recovery_succeeded` / `recovery_failed`; p_resume puts the task back to running (an in-place
-- action such as feeding stdin worked and the same process goes on).
create function cogo.end_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_ok boolean, p_data jsonb,
                                  p_resume boolean) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  perform cogo.append_event_unchecked(p_task, case when p_ok then 'recovery_succeeded' else 'recovery_failed' end, p_data);
  if p_resume then
    update public.tasks set status = 'running' where id = p_task;
  end if;
end;
$$;

-- Back to the queue for another attempt, after the worker has killed the sandbox, with the step's
-- `recovery_succeeded` event: `retry` (after delayMs), `reassign` (exclude: not this worker),
-- `raise_limit` (limits merged into the task's), `alternative_command` (command replaces it).
-- Bounded by max_attempts (SQLSTATE CG422 when none is left).
create function cogo.requeue_for_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_step jsonb, p_event jsonb)
returns public.tasks language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
  v_exclude boolean := coalesce((p_step ->> 'exclude')::boolean, false);
begin
  v_task := cogo.fence(p_task, p_attempt, p_worker);
  -- Cancelled while the recovery ran: the cancel wins, the task does not go back to the queue.
  if v_task.cancel_requested_at is not null then
    perform cogo.append_event_unchecked(p_task, 'recovery_failed',
      p_event || '{"message": "cancelled during the recovery: not re-queued"}');
    return cogo.finish_task(p_task, p_attempt, p_worker, 'cancelled', null, null, 'cancelled while recovering', '{}', null);
  end if;
  if v_task.attempt >= v_task.max_attempts then
    raise exception 'task % has no attempts left (max %)', p_task, v_task.max_attempts using errcode = 'CG422';
  end if;
  perform cogo.append_event_unchecked(p_task, 'recovery_succeeded', p_event);
  update public.tasks
     set status = 'queued', worker_id = null, lease_expires_at = null, reason = p_step ->> 'reason',
         run_after = now() + make_interval(secs => greatest(coalesce((p_step ->> 'delayMs')::integer, 0), 0) / 1000.0),
         limits = limits || coalesce(p_step -> 'limits', '{}'),
         command = coalesce(p_step ->> 'command', command),
         argv = case when p_step ? 'command' then null else argv end,
         excluded_workers = case when v_exclude and not (p_worker = any(excluded_workers))
                                 then excluded_workers || p_worker else excluded_workers end
   where id = p_task returning * into v_task;
  return v_task;
end;
$$;

-- Worker loss as a block: cogo.requeue_expired moved an active task whose lease ran out (every
-- other way out of an active state is fenced, so needs an unexpired lease). Named to fire before
-- tasks_status_event: block_detected and the recovery come before the task_status they cause.
create function cogo.publish_worker_lost() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
  v_action jsonb;
begin
  select * into w from public.workers where id = old.worker_id;
  perform cogo.append_event_unchecked(new.id, 'block_detected', jsonb_build_object(
    'reason', 'worker_lost',
    'durationMs', coalesce(floor(extract(epoch from now() - w.last_heartbeat_at) * 1000), 0)::bigint,
    'usage', coalesce(old.usage, '{}'),
    'recoverable', new.status = 'queued',
    'evidence', jsonb_build_object('workerId', old.worker_id, 'workerName', w.name,
                                   'lastHeartbeatAt', w.last_heartbeat_at, 'leaseExpiredAt', old.lease_expires_at)));
  v_action := jsonb_build_object('attempt', old.attempt, 'reason', 'worker_lost');
  if new.status = 'queued' then
    perform cogo.append_event_unchecked(new.id, 'recovery_started', v_action || '{"action": "reassign"}');
    perform cogo.append_event_unchecked(new.id, 'recovery_succeeded', v_action || jsonb_build_object(
      'action', 'reassign', 'message', 're-queued for any live worker'));
  else
    perform cogo.append_event_unchecked(new.id, 'recovery_failed', v_action || jsonb_build_object(
      'action', 'give_up', 'diagnosis', new.reason));
  end if;
  return null;
end;
$$;
create trigger tasks_lease_lost_block after update of status on public.tasks
  for each row when (old.status in ('claimed', 'running', 'blocked', 'recovering')
                     and new.status in ('queued', 'failed') and old.lease_expires_at <= now()
                     and new.lease_expires_at is null)
  execute function cogo.publish_worker_lost();

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
-- cogo.worker_silence (it has stopped its tasks itself) is re-queued at once; a live worker is told over
-- cogo_control and applies the request (or its own plan) through the fenced functions above.
create function cogo.request_recovery(p_task uuid, p_request jsonb) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
  w public.workers;
begin
  select * into v_task from public.tasks where id = p_task for update;
  if not found or not cogo.caller_may_use(v_task.owner) then
    raise exception 'task % not found', p_task using errcode = 'CG404';
  end if;
  if v_task.status not in ('claimed', 'running', 'blocked', 'recovering') then
    raise exception 'task % is %: only claimed, running, blocked or recovering tasks can be recovered', p_task, v_task.status
      using errcode = 'CG409';
  end if;
  select * into w from public.workers where id = v_task.worker_id;
  if w.id is null or w.last_heartbeat_at < now() - cogo.worker_silence(w.lease_ms)
     or v_task.lease_expires_at <= now() then
    update public.tasks set lease_expires_at = now() where id = p_task;
    perform cogo.requeue_expired();
    return jsonb_build_object('taskId', p_task, 'applied', 'reassign', 'workerId', v_task.worker_id);
  end if;
  perform pg_notify('cogo_control', json_build_object('action', 'recover', 'taskId', p_task, 'workerId', v_task.worker_id,
                                                      'request', coalesce(p_request, '{}'))::text);
  return jsonb_build_object('taskId', p_task, 'applied', 'sent_to_worker', 'workerId', v_task.worker_id);
end;
$$;

-- Recover what one worker holds: a silent worker's tasks are re-queued now (and it is marked
-- offline); a live worker is asked to recover its blocked tasks.
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
    update public.tasks set lease_expires_at = now()
     where worker_id = p_worker and status in ('claimed', 'running', 'blocked', 'recovering');
    v_requeued := cogo.requeue_expired();
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

-- For GET /health: blocks now, silent workers, the last hour's detections and recoveries.
create function cogo.block_health() returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'blocked', (select count(*) from public.tasks where status = 'blocked'),
    'recovering', (select count(*) from public.tasks where status = 'recovering'),
    'silentWorkers', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'id', w.id, 'name', w.name, 'status', w.status, 'lastHeartbeatAt', w.last_heartbeat_at,
               'activeTasks', (select count(*) from public.tasks t where t.worker_id = w.id
                                 and t.status in ('claimed', 'running', 'blocked', 'recovering')))
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

create index task_events_recent_blocks on public.task_events (created_at)
  where type in ('block_detected', 'recovery_succeeded', 'recovery_failed');

revoke execute on function cogo.set_block_options(uuid, jsonb, jsonb), cogo.skip_excluded_claim(),
  cogo.report_block(uuid, integer, uuid, jsonb), cogo.begin_recovery(uuid, integer, uuid, jsonb),
  cogo.end_recovery(uuid, integer, uuid, boolean, jsonb, boolean),
  cogo.requeue_for_recovery(uuid, integer, uuid, jsonb, jsonb), cogo.publish_worker_lost(),
  cogo.request_recovery(uuid, jsonb), cogo.recover_worker(uuid), cogo.block_health(), cogo.worker_silence(integer) from public;
grant execute on function cogo.set_block_options(uuid, jsonb, jsonb), cogo.request_recovery(uuid, jsonb)
  to authenticated, service_role;
grant execute on function cogo.block_health() to anon, authenticated, service_role;
grant execute on function cogo.report_block(uuid, integer, uuid, jsonb), cogo.begin_recovery(uuid, integer, uuid, jsonb),
  cogo.end_recovery(uuid, integer, uuid, boolean, jsonb, boolean),
  cogo.requeue_for_recovery(uuid, integer, uuid, jsonb, jsonb), cogo.recover_worker(uuid)
  to service_role;
