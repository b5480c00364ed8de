-- Queue throughput (bench/compare.ts): cheaper task_status events, and start/finish in one
-- statement each (at the end).
--
-- Every status change appended its `task_status` event with
-- cogo.append_event_unchecked, which updates the task row a second time to take the next event seq:
-- a second row version per change, its index entries, and a foreign-key re-check that takes a
-- KEY SHARE lock on the worker's row (shared by all of a worker's concurrent transactions).
-- Now the status-changing UPDATE takes the seq itself (a BEFORE trigger), and the AFTER trigger only
-- inserts and broadcasts the event. Events, seqs, payloads and their order are unchanged:
--   * the reservation is made only when no AFTER trigger that fires before tasks_status_event
--     (name order: tasks_fail_analysis, tasks_lease_lost_block, tasks_plan_step) appends events to
--     the task first, which would otherwise come after task_status; those changes keep the old path;
--   * the reserved seq is old.event_seq + 1, exactly what the old path's update took.

-- Inserts an event with a seq already taken under the task's row lock and publishes it on the
-- task topic; the one place an event row and its broadcast are made.
create function cogo.insert_event(p_task uuid, p_seq bigint, p_attempt integer, p_type text, p_data jsonb)
returns bigint language plpgsql security definer set search_path = '' as $$
declare
  v_at timestamptz := clock_timestamp();
begin
  insert into public.task_events (task_id, seq, attempt, type, data, created_at)
    values (p_task, p_seq, p_attempt, p_type, p_data, v_at);
  perform realtime.send(
    jsonb_build_object('taskId', p_task, 'seq', p_seq, 'attempt', p_attempt, 'type', p_type, 'data', p_data,
                       'timestamp', v_at),
    p_type, 'task:' || p_task, true);
  return p_seq;
end;
$$;

create or replace function cogo.append_event_unchecked(p_task uuid, p_type text, p_data jsonb)
returns bigint language plpgsql security definer set search_path = '' as $$
declare
  v_seq bigint;
  v_attempt integer;
begin
  update public.tasks set event_seq = event_seq + 1 where id = p_task
    returning event_seq, attempt into v_seq, v_attempt;
  if v_seq is null then
    raise exception 'task % not found', p_task using errcode = 'CG404';
  end if;
  return cogo.insert_event(p_task, v_seq, v_attempt, p_type, p_data);
end;
$$;

create function cogo.reserve_status_event_seq() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.event_seq := old.event_seq + 1;
  return new;
end;
$$;

-- Fires after tasks_claim_exclusion (name order), so a claim that trigger skips reserves nothing.
-- The WHEN clause is the negation of the AFTER triggers above that append events of their own.
create trigger tasks_status_seq before update of status on public.tasks
  for each row when (old.status is distinct from new.status
                     and new.plan_id is null
                     and new.required_kind <> 'analysis'
                     and not (old.status in ('claimed', 'running', 'blocked', 'recovering')
                              and new.status in ('queued', 'failed') and old.lease_expires_at <= now()
                              and new.lease_expires_at is null)
                     and new.event_seq = old.event_seq)
  execute function cogo.reserve_status_event_seq();

create or replace function cogo.publish_status_change() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_data jsonb := jsonb_strip_nulls(jsonb_build_object(
    'status', new.status, 'previous', old.status, 'attempt', new.attempt, 'workerId', new.worker_id,
    'exitCode', new.exit_code, 'signal', new.signal, 'reason', new.reason));
begin
  if new.event_seq > old.event_seq then
    -- tasks_status_seq took the seq in this UPDATE (nothing else changes event_seq and status together).
    perform cogo.insert_event(new.id, new.event_seq, new.attempt, 'task_status', v_data);
  else
    perform cogo.append_event_unchecked(new.id, 'task_status', v_data);
  end if;
  return null;
end;
$$;

revoke execute on function cogo.insert_event(uuid, bigint, integer, text, jsonb), cogo.reserve_status_event_seq() from public;
grant execute on function cogo.insert_event(uuid, bigint, integer, text, jsonb) to service_role;

-- start_task and finish_task: the fence and the change in one UPDATE (it takes the row lock the
-- fence's SELECT … FOR UPDATE took), one statement fewer per call. The WHERE clause is the fence's
-- test; when it fails, cogo.fence raises the usual CG409 lease_lost.
create or replace function cogo.start_task(p_task uuid, p_attempt integer, p_worker uuid) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  v_seq bigint;
begin
  update public.tasks set status = 'running', started_at = coalesce(started_at, now())
   where id = p_task and attempt = p_attempt and worker_id is not distinct from p_worker
     and status in ('claimed', 'running', 'blocked', 'recovering') and (lease_expires_at <= now()) is not true
  returning output_seq into v_seq;
  if not found then
    perform cogo.fence(p_task, p_attempt, p_worker);
    raise exception 'lease lost: task % attempt % no longer belongs to worker %', p_task, p_attempt, p_worker
      using errcode = 'CG409';
  end if;
  return v_seq;
end;
$$;

create or replace function cogo.finish_task(p_task uuid, p_attempt integer, p_worker uuid, p_status public.task_status,
                                            p_exit_code integer, p_signal text, p_reason text, p_usage jsonb, p_result jsonb)
returns public.tasks language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  if p_status not in ('succeeded', 'failed', 'cancelled', 'timed_out') then
    raise exception 'finish_task needs a final status, got %', p_status using errcode = '22023';
  end if;
  update public.tasks
     set status = p_status, exit_code = p_exit_code, signal = p_signal, reason = p_reason, usage = p_usage,
         result = p_result, finished_at = now(), lease_expires_at = null
   where id = p_task and attempt = p_attempt and worker_id is not distinct from p_worker
     and status in ('claimed', 'running', 'blocked', 'recovering') and (lease_expires_at <= now()) is not true
  returning * into v_task;
  if not found then
    perform cogo.fence(p_task, p_attempt, p_worker);
    raise exception 'lease lost: task % attempt % no longer belongs to worker %', p_task, p_attempt, p_worker
      using errcode = 'CG409';
  end if;
  return v_task;
end;
$$;
