-- The lifecycle: every change of a task's status, each in one transition function, and the one
-- epilogue they all call (docs/lifecycle.md has the table and the hook order).
--
-- A transition locks the task row (cogo.fence for a worker's writes), writes the events that
-- explain the change, makes one UPDATE that sets the status, updated_at and event_seq =
-- event_seq + 1 (the seq of the status event), then calls cogo.task_status_changed, which writes
-- that event and calls the feature hooks in a fixed order. The hooks are defined by the feature
-- migrations after this one. No trigger changes a task or reacts to a status change: the triggers
-- on public.tasks only wake workers and broadcast a new task.

-- ── the lifecycle: one epilogue for every status change ───────────────────────────────────────
-- Called by each transition right after its UPDATE, with the row as that UPDATE returned it (its
-- event_seq already taken for this event) and the status it left. In this order:
--   1. the `task_status` event (seq = p_task.event_seq), on the task topic;
--   2. cogo.on_task_status_plans      the step of a plan run, the plan's other steps (20261126000300);
--   3. cogo.on_task_status_analysis   a clone or batch task that failed fails its analysis (20261126000400);
--   4. cogo.on_task_status_dashboard  `task_changed` on the owner's `user:<id>` topic (20261126000700),
--      last, so the summary it carries has the version (event seq) after every hook's events.
-- Events that explain a change (block_detected, recovery_*) are written by the transition itself
-- before its UPDATE, so they come before the task_status event they cause.
create function cogo.task_status_changed(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.insert_event(p_task.id, p_task.event_seq, p_task.attempt, 'task_status', jsonb_strip_nulls(jsonb_build_object(
    'status', p_task.status, 'previous', p_previous, 'attempt', p_task.attempt, 'workerId', p_task.worker_id,
    'exitCode', p_task.exit_code, 'signal', p_task.signal, 'reason', p_task.reason)));
  perform cogo.on_task_status_plans(p_task, p_previous);
  perform cogo.on_task_status_analysis(p_task, p_previous);
  perform cogo.on_task_status_dashboard(p_task, p_previous);
end;
$$;

-- Whether a live worker other than p_worker, not excluded itself, could run the task; while none
-- can, an exclusion does not hold (it would starve the task).
create function cogo.another_worker_can_take(p_task public.tasks, p_worker uuid) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.workers w
     where w.id <> p_worker and cogo.worker_is_live(w) and w.kind = p_task.required_kind
       and p_task.required_labels <@ w.labels and not (w.id = any(p_task.excluded_workers)));
$$;

-- ── transitions ───────────────────────────────────────────────────────────────────────────────
-- queued → claimed. Claims up to p_max queued tasks this worker can run: highest priority first,
-- then oldest; a task that excluded this worker (a `reassign`) is passed over while another live
-- worker could take it. Takes an attempt (the table's checks keep it within max_attempts).
create function cogo.claim_tasks(p_worker uuid, p_max integer) returns setof public.tasks
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
    with next as (
      select t.id from public.tasks t
      where t.status = 'queued' and t.required_kind = w.kind and t.required_labels <@ w.labels
        and t.run_after <= now()
        and not (p_worker = any(t.excluded_workers) and cogo.another_worker_can_take(t, p_worker))
      order by t.priority desc, t.created_at, t.id
      limit p_max
      for update skip locked
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

-- claimed (or blocked, recovering) → running, fenced. Returns the task's last output seq, so the
-- worker numbers its output from there.
create function cogo.start_task(p_task uuid, p_attempt integer, p_worker uuid) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks := cogo.fence(p_task, p_attempt, p_worker);
  v_task public.tasks;
begin
  if v_old.status = 'running' then
    return v_old.output_seq;
  end if;
  update public.tasks set status = 'running', started_at = coalesce(started_at, now()), updated_at = now(),
                          event_seq = event_seq + 1
   where id = p_task returning * into v_task;
  perform cogo.task_status_changed(v_task, v_old.status);
  return v_task.output_seq;
end;
$$;

-- active → a final state, fenced: the attempt's result.
create function cogo.finish_task(p_task uuid, p_attempt integer, p_worker uuid, p_status public.task_status,
                                 p_exit_code integer, p_signal text, p_reason text, p_usage jsonb, p_result jsonb)
returns public.tasks language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks;
  v_task public.tasks;
begin
  if not (p_status = any(cogo.final_states())) then
    raise exception 'finish_task needs a final status, got %', p_status using errcode = '22023';
  end if;
  v_old := cogo.fence(p_task, p_attempt, p_worker);
  update public.tasks
     set status = p_status, exit_code = p_exit_code, signal = p_signal, reason = p_reason, usage = p_usage,
         result = p_result, finished_at = now(), lease_expires_at = null, updated_at = now(), event_seq = event_seq + 1
   where id = p_task returning * into v_task;
  perform cogo.task_status_changed(v_task, v_old.status);
  return v_task;
end;
$$;

-- active → queued, failed or cancelled, fenced: the worker hands the task back (it shuts down
-- before the task finished, stopped it because its heartbeats failed, lost the database, found no
-- free sandbox). The attempt was counted when it was claimed: the last one handed back fails the
-- task, and a cancel asked meanwhile wins.
create function cogo.release_task(p_task uuid, p_attempt integer, p_worker uuid, p_reason text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks := cogo.fence(p_task, p_attempt, p_worker);
  v_task public.tasks;
  v_why text := regexp_replace(p_reason, '; re-queued$', '');
begin
  if v_old.cancel_requested_at is not null then
    update public.tasks
       set status = 'cancelled', reason = format('cancelled while its worker handed it back (%s)', v_why),
           finished_at = now(), lease_expires_at = null, updated_at = now(), event_seq = event_seq + 1
     where id = p_task returning * into v_task;
  elsif v_old.attempt >= v_old.max_attempts then
    update public.tasks
       set status = 'failed', finished_at = now(), lease_expires_at = null, updated_at = now(), event_seq = event_seq + 1,
           reason = format('attempt %s of %s handed back (%s); no attempts left', v_old.attempt, v_old.max_attempts, v_why)
     where id = p_task returning * into v_task;
  else
    update public.tasks
       set status = 'queued', worker_id = null, lease_expires_at = null, reason = p_reason, updated_at = now(),
           event_seq = event_seq + 1
     where id = p_task returning * into v_task;
  end if;
  perform cogo.task_status_changed(v_task, v_old.status);
end;
$$;

-- active → queued, failed or cancelled, for a task whose lease ran out (its worker stopped
-- heartbeating): the next attempt if one is left, else failed; cancelled if a cancel was asked.
-- Losing the worker is a block (`worker_lost`): its block_detected and reassign (or give_up)
-- events come first, then the status change, then a `system` output line saying why. Returns the
-- new status, or null when the task is not active with an expired lease.
create function cogo.expire_task(p_task uuid) returns public.task_status
language plpgsql security definer set search_path = '' as $$
declare
  t public.tasks;
  v_task public.tasks;
  v_next public.task_status;
  v_reason text;
begin
  select * into t from public.tasks where id = p_task for update;
  if not found or not (t.status = any(cogo.active_states())) or not (t.lease_expires_at <= now()) then
    return null;
  end if;
  if t.cancel_requested_at is not null then
    v_next := 'cancelled';
    v_reason := 'cancelled; its worker stopped heartbeating';
  elsif t.attempt < t.max_attempts then
    v_next := 'queued';
    v_reason := format('attempt %s lost: worker %s stopped heartbeating; re-queued', t.attempt, t.worker_id);
  else
    v_next := 'failed';
    v_reason := format('attempt %s lost: worker %s stopped heartbeating; no attempts left (max %s)', t.attempt, t.worker_id, t.max_attempts);
  end if;
  if v_next <> 'cancelled' then
    perform cogo.record_worker_lost(t, v_next, v_reason);
  end if;
  update public.tasks
     set status = v_next, reason = v_reason, lease_expires_at = null,
         worker_id = case when v_next = 'queued' then null else worker_id end,
         finished_at = case when v_next = 'queued' then null else now() end,
         output_seq = output_seq + 1, updated_at = now(), event_seq = event_seq + 1
   where id = t.id returning * into v_task;
  perform cogo.task_status_changed(v_task, t.status);
  insert into public.task_output (task_id, seq, attempt, stream, data)
    values (t.id, v_task.output_seq, t.attempt, 'system', v_reason || E'\n');
  perform realtime.send(jsonb_build_object('taskId', t.id, 'attempt', t.attempt, 'chunks', jsonb_build_array(
    jsonb_build_object('sequence', v_task.output_seq, 'stream', 'system', 'data', v_reason || E'\n', 'timestamp', clock_timestamp()))),
    'realtime_output', 'task:' || t.id, true);
  return v_next;
end;
$$;

-- queued → cancelled at once; an active task gets its cancel requested (the worker kills it and
-- finishes it `cancelled`; every way back to the queue ends it instead).
create function cogo.cancel_task(p_task uuid) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks;
  v_task public.tasks;
begin
  select * into v_old from public.tasks where id = p_task for update;
  if not found or not cogo.caller_may_use(v_old.owner) then
    return null;
  end if;
  v_task := v_old;
  if v_old.status = 'queued' then
    update public.tasks set status = 'cancelled', reason = 'cancelled before it started', finished_at = now(),
                            updated_at = now(), event_seq = event_seq + 1
      where id = p_task returning * into v_task;
    perform cogo.task_status_changed(v_task, v_old.status);
  elsif v_old.status = any(cogo.active_states()) and v_old.cancel_requested_at is null then
    update public.tasks set cancel_requested_at = now() where id = p_task returning * into v_task;
    perform pg_notify('cogo_control', json_build_object('action', 'cancel', 'taskId', p_task, 'workerId', v_task.worker_id)::text);
    -- Not a status change, but the task lists show the pending cancel.
    perform cogo.on_task_status_dashboard(v_task, v_task.status);
  end if;
  return v_task;
end;
$$;

-- running/recovering (any active state) → blocked, fenced, with the `block_detected` event
-- (reason, durationMs, usage, recoverable, evidence) first.
create function cogo.report_block(p_task uuid, p_attempt integer, p_worker uuid, p_data jsonb) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks := cogo.fence(p_task, p_attempt, p_worker);
  v_task public.tasks;
begin
  perform cogo.append_event_unchecked(p_task, 'block_detected', p_data);
  if v_old.status = 'blocked' then
    select * into v_task from public.tasks where id = p_task;
    return v_task;
  end if;
  update public.tasks set status = 'blocked', updated_at = now(), event_seq = event_seq + 1
   where id = p_task returning * into v_task;
  perform cogo.task_status_changed(v_task, v_old.status);
  return v_task;
end;
$$;

-- blocked → recovering, fenced, with `recovery_started` {action, attempt, reason, …} first.
create function cogo.begin_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_data jsonb) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks := cogo.fence(p_task, p_attempt, p_worker);
  v_task public.tasks;
begin
  perform cogo.append_event_unchecked(p_task, 'recovery_started', p_data);
  if v_old.status <> 'recovering' then
    update public.tasks set status = 'recovering', updated_at = now(), event_seq = event_seq + 1
     where id = p_task returning * into v_task;
    perform cogo.task_status_changed(v_task, v_old.status);
  end if;
end;
$$;

-- `recovery_succeeded` / `recovery_failed`, fenced; p_resume: recovering → running (an in-place
-- action such as feeding stdin worked and the same process goes on).
create function cogo.end_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_ok boolean, p_data jsonb,
                                  p_resume boolean) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks := cogo.fence(p_task, p_attempt, p_worker);
  v_task public.tasks;
begin
  perform cogo.append_event_unchecked(p_task, case when p_ok then 'recovery_succeeded' else 'recovery_failed' end, p_data);
  if p_resume and v_old.status <> 'running' then
    update public.tasks set status = 'running', updated_at = now(), event_seq = event_seq + 1
     where id = p_task returning * into v_task;
    perform cogo.task_status_changed(v_task, v_old.status);
  end if;
end;
$$;

-- recovering (any active state) → queued for another attempt, fenced, after the worker has killed
-- the sandbox, with the step's `recovery_succeeded` event first: `retry` (after delayMs),
-- `reassign` (exclude: not this worker), `raise_limit` (limits merged into the task's),
-- `alternative_command` (command replaces it). Refused with CG422 when no attempt is left; a
-- cancel asked meanwhile wins: the task is finished `cancelled` instead.
create function cogo.requeue_for_recovery(p_task uuid, p_attempt integer, p_worker uuid, p_step jsonb, p_event jsonb)
returns public.tasks language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks := cogo.fence(p_task, p_attempt, p_worker);
  v_task public.tasks;
  v_exclude boolean := coalesce((p_step ->> 'exclude')::boolean, false);
begin
  if v_old.cancel_requested_at is not null then
    perform cogo.append_event_unchecked(p_task, 'recovery_failed',
      p_event || '{"message": "cancelled during the recovery: not re-queued"}');
    return cogo.finish_task(p_task, p_attempt, p_worker, 'cancelled', null, null, 'cancelled while recovering', '{}', null);
  end if;
  if v_old.attempt >= v_old.max_attempts then
    raise exception 'task % has no attempts left (max %)', p_task, v_old.max_attempts using errcode = 'CG422';
  end if;
  perform cogo.append_event_unchecked(p_task, 'recovery_succeeded', p_event);
  update public.tasks
     set status = 'queued', worker_id = null, lease_expires_at = null, reason = p_step ->> 'reason',
         run_after = now() + make_interval(secs => greatest(coalesce((p_step ->> 'delayMs')::integer, 0), 0) / 1000.0),
         -- One wall-time setting: a raised wall time is the task's timeout_ms, never limits.wallTimeMs.
         limits = (limits || coalesce(p_step -> 'limits', '{}')) - 'wallTimeMs',
         timeout_ms = coalesce((p_step -> 'limits' ->> 'wallTimeMs')::integer, timeout_ms),
         command = coalesce(p_step ->> 'command', command),
         argv = case when p_step ? 'command' then null else argv end,
         excluded_workers = case when v_exclude and not (p_worker = any(excluded_workers))
                                 then excluded_workers || p_worker else excluded_workers end,
         updated_at = now(), event_seq = event_seq + 1
   where id = p_task returning * into v_task;
  perform cogo.task_status_changed(v_task, v_old.status);
  return v_task;
end;
$$;

-- Lease rescuer: every task whose worker stopped heartbeating goes through cogo.expire_task.
create function cogo.requeue_expired() returns integer
language plpgsql security definer set search_path = '' as $$
declare
  v_id uuid;
  n integer := 0;
begin
  for v_id in
    -- Skips a row another transaction holds (a worker's fenced call about to fail, a heartbeat,
    -- recover_worker): the next pass takes it. Waiting instead would deadlock with those, which
    -- lock a worker's tasks in their own order.
    select id from public.tasks
     where status = any(cogo.active_states()) and lease_expires_at <= now()
     for update skip locked
  loop
    if cogo.expire_task(v_id) is not null then
      n := n + 1;
    end if;
  end loop;
  return n;
end;
$$;

-- ── triggers: wake workers, broadcast new tasks ───────────────────────────────────────────────
-- Wakes workers (LISTEN cogo_tasks) when a task becomes claimable: enqueued, or back in the queue.
-- Only transitions change status, and none moves a queued task to queued.
create function cogo.notify_queued() returns trigger language plpgsql set search_path = '' as $$
begin
  perform pg_notify('cogo_tasks', new.required_kind);
  return null;
end;
$$;
create trigger tasks_notify_queued after insert or update of status on public.tasks
  for each row when (new.status = 'queued') execute function cogo.notify_queued();

-- A new task on its owner's task list topic (the status changes get there through the dashboard hook).
create function cogo.broadcast_new_task() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.on_task_status_dashboard(new, null);
  return null;
end;
$$;
create trigger tasks_broadcast_insert after insert on public.tasks
  for each row when (new.owner is not null) execute function cogo.broadcast_new_task();
