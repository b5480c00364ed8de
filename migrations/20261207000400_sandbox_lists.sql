-- Persistent sandboxes in the user's task lists (issue 19, design risk R6). A sandbox's init task
-- (`internal = 'sandbox-init'`) is how the sandbox holds its slot, not something the user ran: it
-- leaves the `user:<id>` topic here and GET /tasks in the API (functions/_shared/routes/dashboard.ts).
-- The sandbox itself is listed by GET /sandboxes and followed on `sandbox:<id>`. Commands stay in
-- both, and each task summary names its sandbox (`sandboxId`, null for a task), so a list can be
-- narrowed to one sandbox's commands (GET /tasks?sandboxId=…).

-- cogo.task_summary as in 20261126000700_dashboard_and_fleet.sql, plus `sandboxId`.
create or replace function cogo.task_summary(t public.tasks) returns jsonb
language sql stable set search_path = '' as $$
  select jsonb_build_object(
    'id', t.id,
    'status', t.status,
    'command', left(coalesce(t.command, array_to_string(t.argv, ' ')), 500),
    'priority', t.priority,
    'kind', t.required_kind,
    'labels', to_jsonb(t.required_labels),
    'stdin', t.stdin_mode,
    'attempt', t.attempt,
    'maxAttempts', t.max_attempts,
    'workerId', t.worker_id,
    'planId', t.plan_id,
    'step', t.step,
    'sandboxId', t.sandbox_id,
    'exitCode', t.exit_code,
    'signal', t.signal,
    'reason', t.reason,
    'cancelRequested', t.cancel_requested_at is not null,
    'outputSeq', t.output_seq,
    'version', t.event_seq,
    'createdAt', t.created_at,
    'startedAt', t.started_at,
    'finishedAt', t.finished_at,
    'updatedAt', t.updated_at
  );
$$;

-- cogo.on_task_status_dashboard as in 20261126000700_dashboard_and_fleet.sql, except that a
-- sandbox's init task is not sent: its status changes reach the owner as `sandbox_status` on the
-- sandbox's topic. It is the one function that writes `user:<id>` (the lifecycle's last hook, the
-- insert trigger and cancel_task all call it), so the init task is kept off that topic entirely.
create or replace function cogo.on_task_status_dashboard(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  if p_task.owner is null or p_task.internal is not distinct from 'sandbox-init' then return; end if;
  select * into v_task from public.tasks where id = p_task.id;
  perform realtime.send(
    jsonb_build_object('task', cogo.task_summary(v_task), 'previous', p_previous),
    'task_changed', 'user:' || v_task.owner, true);
end;
$$;

-- GET /tasks?sandboxId=…: one sandbox's commands, newest first.
create index tasks_sandbox_created on public.tasks (sandbox_id, created_at desc, id desc) where sandbox_id is not null;
