-- Terminals in persistent sandboxes (issue 19, docs/design/persistent-sandboxes.md §1.4, §6 commit 7).
-- A terminal is a command (cogo.enqueue_command) with `pty = {cols, rows}`: its worker enters the
-- sandbox with a pseudo-terminal of the sandbox's own devpts as the command's stdio (launcher.py
-- `enter` with `pty`). Keystrokes are its stdin (task_stdin, `cogo_control` "stdin" as for any
-- task), the terminal's bytes its stdout rows. A resize is a control message like cancel and stdin:
-- cogo.resize_task stores the new size on the task (a worker that claims it later starts with it)
-- and tells the holding worker over `cogo_control` ("resize").

alter table public.tasks
  add column pty jsonb,
  add constraint tasks_pty check (
    pty is null
    or (sandbox_id is not null and stdin_mode = 'pipe'
        and jsonb_typeof(pty) = 'object' and (pty - 'cols' - 'rows') = '{}'::jsonb
        and case when (pty ->> 'cols') ~ '^[0-9]{1,4}$' then (pty ->> 'cols')::integer between 1 and 1000 else false end
        and case when (pty ->> 'rows') ~ '^[0-9]{1,4}$' then (pty ->> 'rows')::integer between 1 and 1000 else false end));
comment on column public.tasks.pty is
  'A command run on a terminal: its size {cols, rows} (the latest resize); null for every other task. Set only by cogo.create_pty.';

-- What a terminal runs without a command: bash if the sandbox has it, else sh, interactive.
create function cogo.default_shell() returns text
language sql immutable set search_path = '' as $$
  select 'command -v bash >/dev/null 2>&1 && exec bash -i; exec sh -i'
$$;

-- The size check of create_pty and resize_task: 22023 naming the field (the API checks first).
create function cogo.check_pty_size(p_cols integer, p_rows integer) returns jsonb
language plpgsql immutable set search_path = '' as $$
begin
  if p_cols is null or p_cols not between 1 and 1000 then
    raise exception 'cols: an integer from 1 to 1000, got %', coalesce(p_cols::text, 'null') using errcode = '22023';
  end if;
  if p_rows is null or p_rows not between 1 and 1000 then
    raise exception 'rows: an integer from 1 to 1000, got %', coalesce(p_rows::text, 'null') using errcode = '22023';
  end if;
  return jsonb_build_object('cols', p_cols, 'rows', p_rows);
end;
$$;

-- POST /sandboxes/:id/pty. spec: {cols, rows, command?, cwd?, env?, timeoutMs?}. A command of the
-- sandbox (same checks, metering and 404/409 as cogo.enqueue_command) with stdin "pipe", its size,
-- and block detection off: a shell waiting at its prompt is what a terminal is for, not a block.
create function cogo.create_pty(p_sandbox uuid, spec jsonb) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_size jsonb := cogo.check_pty_size((spec ->> 'cols')::integer, (spec ->> 'rows')::integer);
  v_task public.tasks;
begin
  v_task := cogo.enqueue_command(p_sandbox, jsonb_strip_nulls(jsonb_build_object(
    'command', coalesce(spec ->> 'command', cogo.default_shell()),
    'cwd', spec ->> 'cwd', 'env', spec -> 'env', 'timeoutMs', spec -> 'timeoutMs', 'stdin', 'pipe')));
  -- The same transaction as the insert: no worker can claim the command before it has its size.
  update public.tasks set pty = v_size, block_detection = '{"enabled": false}'::jsonb
   where id = v_task.id returning * into v_task;
  return v_task;
end;
$$;

-- POST /tasks/:id/resize {cols, rows}: the caller's terminal (404 for anyone else's task), still
-- active (409 once it ended, or for a task without a terminal).
create function cogo.resize_task(p_task uuid, p_cols integer, p_rows integer) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks := cogo.lock_callers_task(p_task);
  v_size jsonb;
begin
  if v_task.pty is null then
    raise exception 'task % has no terminal (start one with POST /sandboxes/:id/pty)', p_task using errcode = 'CG409';
  end if;
  if v_task.status = any(cogo.final_states()) then
    raise exception 'task % has already finished (%)', p_task, v_task.status using errcode = 'CG409';
  end if;
  v_size := cogo.check_pty_size(p_cols, p_rows);
  update public.tasks set pty = v_size, updated_at = now() where id = p_task returning * into v_task;
  if v_task.worker_id is not null then
    perform pg_notify('cogo_control', json_build_object('action', 'resize', 'taskId', p_task, 'workerId', v_task.worker_id,
                                                        'cols', p_cols, 'rows', p_rows)::text);
  end if;
  return v_task;
end;
$$;

-- ── grants (as 20261126000800_grants.sql: PUBLIC nothing, the service role everything) ─────────
revoke execute on function
  cogo.default_shell(), cogo.check_pty_size(integer, integer), cogo.create_pty(uuid, jsonb),
  cogo.resize_task(uuid, integer, integer)
  from public;
grant execute on function
  cogo.default_shell(), cogo.check_pty_size(integer, integer), cogo.create_pty(uuid, jsonb),
  cogo.resize_task(uuid, integer, integer)
  to service_role;
-- The user-facing ones check their caller (cogo.lock_callers_sandbox, cogo.lock_callers_task).
grant execute on function
  cogo.create_pty(uuid, jsonb), cogo.resize_task(uuid, integer, integer), cogo.default_shell(), cogo.check_pty_size(integer, integer)
  to authenticated;
