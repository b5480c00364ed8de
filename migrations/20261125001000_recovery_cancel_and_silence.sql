-- Fixes from a review of block recovery where it meets cancel and worker silence.

-- How long without a heartbeat before the database may take a worker's tasks: the worker stops
-- them itself at 70 % of a lease measured from when its last good heartbeat was *sent*, checked
-- every lease/20, and killing takes a moment; 0.7 of a lease after the heartbeat *ran* was too
-- early (a task could be re-queued while its sandbox still ran). 75 % plus a second, and never
-- later than the lease itself (then the lease rescuer would take them anyway).
create function cogo.worker_silence(p_lease_ms integer) returns interval
language sql immutable set search_path = '' as $$
  select make_interval(secs => least(p_lease_ms, 0.75 * p_lease_ms + 1000) / 1000.0)
$$;

create or replace function cogo.requeue_for_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_step jsonb, p_event jsonb)
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


-- A recover request re-queues a silent worker's task only once cogo.worker_silence has passed.
create or replace function cogo.request_recovery(p_task uuid, p_request jsonb) returns jsonb
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


create or replace function cogo.recover_worker(p_worker uuid) returns jsonb
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


revoke execute on function cogo.worker_silence(integer) from public;
