-- Persistent sandboxes (issue 19, docs/design/persistent-sandboxes.md §3): one long-lived sandbox
-- on one worker, and commands that run in it. Nothing new runs the lifecycle:
--   * the sandbox's slot is an internal task (`internal = 'sandbox-init'`, one attempt) claimed by
--     cogo.claim_tasks like any other, so the tenant's fair turn and running cap, the worker's
--     capacity and memory admission, leases, heartbeats, cancel and lease expiry all apply to it;
--   * a command is a task with `sandbox_id` (one attempt: its state lives on one machine), claimed
--     only by the worker holding the sandbox (cogo.claim_sandbox_commands), never by claim_tasks;
--   * the sandbox's status mirrors its init task in the same transaction as each of the init
--     task's status changes (cogo.on_task_status_sandboxes, a hook of cogo.task_status_changed):
--     init claimed → worker_id set; running → ready; succeeded or cancelled → stopped; failed by
--     a lost lease → lost; any other end → stopped. When the sandbox ends, its queued commands
--     fail naming why and its active ones are asked to cancel.
-- Who enforces idle and lifetime expiry: the holding worker's timers (it ends the init task
-- `succeeded` with the reason), and cogo.expire_sandboxes() (the workers' rescuer) as a backstop
-- that cancels the init task of a sandbox 5 s past a deadline.
-- R1 (design §7): `network: true` is refused in v1. A networked sandbox shares the host's network
-- namespace, so a server one sandbox leaves listening on loopback is reachable from every other.

-- ── the sandbox ───────────────────────────────────────────────────────────────────────────────
-- One list of sandbox states, mirrored by SANDBOX_STATES in functions/_shared/states.ts.
create type public.sandbox_status as enum ('starting', 'ready', 'stopped', 'lost');

-- Allowed internal markers: the init task of a sandbox joins the analysis tasks.
alter table public.tasks drop constraint tasks_internal_check;
alter table public.tasks add constraint tasks_internal_check
  check (internal in ('analysis-clone', 'analysis-batch', 'sandbox-init'));
comment on column public.tasks.internal is
  'The system job this task is (set only by cogo.start_analysis / cogo.plan_analysis / cogo.create_sandbox); null for user tasks.';

create table public.sandboxes (
  id uuid primary key default gen_random_uuid(),
  owner uuid,                                   -- null: the operator's, as for tasks
  status public.sandbox_status not null default 'starting',
  -- Its slot: the init task (set in the same transaction as the insert).
  init_task_id uuid not null unique references public.tasks (id),
  worker_id uuid references public.workers (id) on delete set null,
  required_kind text not null default 'basic',
  required_labels text[] not null default '{}',
  limits jsonb not null default '{}',
  network boolean not null default false check (not network),   -- R1: refused in v1
  env jsonb not null default '{}',
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object' and pg_column_size(metadata) <= 8192),
  idle_timeout_ms integer not null default 300000 check (idle_timeout_ms between 1000 and 3600000),
  max_lifetime_ms integer not null default 3600000 check (max_lifetime_ms between 1000 and 3600000),
  last_activity_at timestamptz not null default now(),
  expires_at timestamptz not null,              -- created_at + max_lifetime_ms
  ready_at timestamptz,
  stopped_at timestamptz,
  reason text,
  topic text generated always as ('sandbox:' || id::text) stored,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- The target of the tasks' composite foreign key below.
  constraint sandboxes_id_owner unique (id, owner)
);
create index sandboxes_owner_created on public.sandboxes (owner, created_at desc);
create index sandboxes_live_by_worker on public.sandboxes (worker_id) where status in ('starting', 'ready');
create index sandboxes_live on public.sandboxes (expires_at) where status in ('starting', 'ready');

alter table public.sandboxes enable row level security;
create policy "owners read their sandboxes" on public.sandboxes for select to authenticated
  using (owner = (select auth.uid()));

-- ── commands: tasks with a sandbox ───────────────────────────────────────────────────────────
-- (sandbox_id, owner) → sandboxes (id, owner): a user's command row can only name a sandbox of
-- the same owner, whatever inserts it (MATCH SIMPLE skips ownerless rows, the operator's;
-- cogo.enqueue_command checks every caller). One attempt: a command never runs twice nor moves.
alter table public.tasks
  add column sandbox_id uuid,
  add column background boolean not null default false,
  add column cwd text check (cwd is null or length(cwd) between 1 and 4096),
  add constraint tasks_sandbox_owner foreign key (sandbox_id, owner) references public.sandboxes (id, owner),
  add constraint tasks_sandbox_single_attempt check (sandbox_id is null or max_attempts = 1);
create index tasks_queued_commands on public.tasks (sandbox_id, created_at) where status = 'queued' and sandbox_id is not null;
create index tasks_active_commands on public.tasks (sandbox_id) where status = any(cogo.active_states()) and sandbox_id is not null;

-- ── constants ────────────────────────────────────────────────────────────────────────────────
-- Live (starting or ready) sandboxes per tenant. A constant in v1, not a tenant limit: a sandbox
-- also holds one of its tenant's running slots (its init task), which maxRunning already bounds.
create function cogo.max_live_sandboxes() returns integer
language sql immutable set search_path = '' as $$ select 8 $$;

-- Active commands per sandbox (background ones included) that its worker claims at once.
create function cogo.max_sandbox_commands() returns integer
language sql immutable set search_path = '' as $$ select 16 $$;

-- How long past a deadline the SQL sweep waits for the holding worker's own timers.
create function cogo.sandbox_expiry_grace() returns interval
language sql immutable set search_path = '' as $$ select interval '5 seconds' $$;

-- What an old worker runs if it claims an init task: it knows nothing of sandboxes, so it must
-- fail clearly instead of running anything (a worker that holds sandboxes never runs this argv).
create function cogo.sandbox_init_argv() returns text[]
language sql immutable set search_path = '' as $$
  select array['/bin/sh', '-c', 'echo "this worker cannot hold persistent sandboxes (upgrade it)" >&2; exit 70']
$$;

-- ── events ───────────────────────────────────────────────────────────────────────────────────
-- A sandbox's status events are events of its init task (stored, replayable, checked by the event
-- contract test as `sandbox_status`) and are also sent on the sandbox's own topic.
create function cogo.sandbox_status_event(s public.sandboxes, p_previous public.sandbox_status) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_data jsonb := jsonb_strip_nulls(jsonb_build_object(
    'sandboxId', s.id, 'status', s.status, 'previous', p_previous, 'reason', s.reason, 'workerId', s.worker_id,
    'expiresAt', s.expires_at, 'idleTimeoutMs', s.idle_timeout_ms));
  v_seq bigint;
begin
  v_seq := cogo.append_event_unchecked(s.init_task_id, 'sandbox_status', v_data);
  perform realtime.send(jsonb_build_object('sandboxId', s.id, 'seq', v_seq, 'type', 'sandbox_status', 'data', v_data,
                                           'timestamp', clock_timestamp()),
                        'sandbox_status', s.topic, true);
end;
$$;

-- Realtime: a sandbox's topic is `sandbox:<id>`, private, readable by the sandbox's owner only.
create function cogo.owns_sandbox_topic(topic text) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.sandboxes s
    where topic ~ '^sandbox:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      and s.id = substr(topic, 9)::uuid
      and s.owner = (select auth.uid())
  );
$$;
create policy "sandbox owners receive their sandbox topics" on realtime.messages for select to authenticated
  using (cogo.owns_sandbox_topic((select realtime.topic())));

-- ── creating a sandbox ───────────────────────────────────────────────────────────────────────
-- Inserts the sandbox and its init task in one transaction. spec: {requirements: {kind, labels},
-- limits, network, env, idleTimeoutMs, maxLifetimeMs, metadata}; the API validated the shapes.
create function cogo.create_sandbox_unmetered(spec jsonb) returns public.sandboxes
language plpgsql security definer set search_path = '' as $$
declare
  v_owner uuid := auth.uid();
  v_id uuid := gen_random_uuid();
  v_lifetime integer := coalesce((spec ->> 'maxLifetimeMs')::integer, 3600000);
  v_live integer;
  v_task public.tasks;
  s public.sandboxes;
begin
  if not cogo.caller_may_use(v_owner) then
    raise exception 'a user token or the service key is required to create sandboxes' using errcode = 'CG401';
  end if;
  if coalesce((spec ->> 'network')::boolean, false) then
    raise exception 'network: persistent sandboxes run without network in this version (a server left on loopback would be reachable from other sandboxes on the worker)'
      using errcode = '22023';
  end if;
  if v_lifetime not between 1000 and 3600000 then
    raise exception 'maxLifetimeMs: between 1000 and 3600000 (1 h), got %', v_lifetime using errcode = '22023';
  end if;
  if v_owner is not null then
    -- Two creates of one tenant at once: the quota lock of cogo.meter_begin serializes them.
    select count(*) into v_live from public.sandboxes where owner = v_owner and status in ('starting', 'ready');
    if v_live >= cogo.max_live_sandboxes() then
      raise exception 'sandbox quota: at most % live sandboxes; stop one first (DELETE /sandboxes/:id)', cogo.max_live_sandboxes()
        using errcode = 'CGQ29',
              detail = jsonb_build_object('quota', 'maxSandboxes', 'limit', cogo.max_live_sandboxes(), 'live', v_live)::text;
    end if;
  end if;
  insert into public.tasks (owner, internal, argv, required_kind, required_labels, limits, network, timeout_ms, max_attempts)
  values (v_owner, 'sandbox-init', cogo.sandbox_init_argv(),
          coalesce(spec #>> '{requirements,kind}', 'basic'),
          coalesce(array(select jsonb_array_elements_text(spec #> '{requirements,labels}')), '{}'),
          coalesce(spec -> 'limits', '{}'), false, v_lifetime, 1)
  returning * into v_task;
  insert into public.sandboxes (id, owner, init_task_id, required_kind, required_labels, limits, env, metadata,
                                idle_timeout_ms, max_lifetime_ms, expires_at)
  values (v_id, v_owner, v_task.id, v_task.required_kind, v_task.required_labels, v_task.limits,
          coalesce(spec -> 'env', '{}'), coalesce(spec -> 'metadata', '{}'),
          coalesce((spec ->> 'idleTimeoutMs')::integer, 300000), v_lifetime,
          now() + make_interval(secs => v_lifetime / 1000.0))
  returning * into s;
  perform cogo.sandbox_status_event(s, null);
  return s;
end;
$$;

-- Metered as POST /execute is (the `execute` bucket, the tenant's quota lock): a sandbox is a task.
create function cogo.create_sandbox(spec jsonb) returns public.sandboxes
language plpgsql security definer set search_path = '' as $$
declare
  m record;
  s public.sandboxes;
begin
  select * into m from cogo.meter_begin('execute');
  s := cogo.create_sandbox_unmetered(spec);
  perform cogo.meter_end(m.queued, m.stored, 0, false);
  return s;
end;
$$;

-- The caller's sandbox, locked (share: it may not end while a command is added), or CG404.
create function cogo.lock_callers_sandbox(p_sandbox uuid) returns public.sandboxes
language plpgsql security definer set search_path = '' as $$
declare
  s public.sandboxes;
begin
  select * into s from public.sandboxes where id = p_sandbox for share;
  if not found or not cogo.caller_may_use(s.owner) then
    raise exception 'sandbox % not found', p_sandbox using errcode = 'CG404';
  end if;
  return s;
end;
$$;

-- ── commands ─────────────────────────────────────────────────────────────────────────────────
-- A command for a starting or ready sandbox (one starting waits queued until it is ready); a
-- stopped or lost one is CG409 naming why. spec: {command | argv, cwd, env, stdin, timeoutMs,
-- background, priority, idempotencyKey}. The command inherits the sandbox's kind, limits and
-- network; env is the sandbox's env overlaid by the command's.
create function cogo.enqueue_command_unmetered(p_sandbox uuid, spec jsonb) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  s public.sandboxes := cogo.lock_callers_sandbox(p_sandbox);
  v_task public.tasks;
begin
  if s.status not in ('starting', 'ready') then
    raise exception 'sandbox % is %: %', s.id, s.status, coalesce(s.reason, 'it takes no more commands')
      using errcode = 'CG409';
  end if;
  if spec ? 'idempotencyKey' then
    select * into v_task from public.tasks
      where coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(s.owner, '00000000-0000-0000-0000-000000000000'::uuid)
        and idempotency_key = spec ->> 'idempotencyKey';
    if found then return v_task; end if;
  end if;
  insert into public.tasks (owner, sandbox_id, command, argv, cwd, env, stdin_mode, priority, required_kind, required_labels,
                            limits, network, timeout_ms, max_attempts, background, idempotency_key)
  values (s.owner, s.id, spec ->> 'command',
          case when spec ? 'argv' then array(select jsonb_array_elements_text(spec -> 'argv')) end,
          spec ->> 'cwd', s.env || coalesce(spec -> 'env', '{}'), coalesce(spec ->> 'stdin', 'closed'),
          coalesce((spec ->> 'priority')::integer, 0), s.required_kind, s.required_labels, s.limits, s.network,
          coalesce((spec ->> 'timeoutMs')::integer, 600000), 1,
          coalesce((spec ->> 'background')::boolean, false), spec ->> 'idempotencyKey')
  on conflict do nothing
  returning * into v_task;
  if v_task.id is null then
    select * into v_task from public.tasks
      where coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(s.owner, '00000000-0000-0000-0000-000000000000'::uuid)
        and idempotency_key = spec ->> 'idempotencyKey';
  end if;
  return v_task;
end;
$$;

create function cogo.enqueue_command(p_sandbox uuid, spec jsonb) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  m record;
  v_task public.tasks;
begin
  select * into m from cogo.meter_begin('execute');
  v_task := cogo.enqueue_command_unmetered(p_sandbox, spec);
  perform cogo.meter_end(m.queued, m.stored, 0, v_task.created_at = now());
  return v_task;
end;
$$;

-- queued → claimed, for commands, by the worker holding their ready sandbox only. One statement,
-- FOR UPDATE SKIP LOCKED. Each sandbox takes at most max_sandbox_commands() − its active ones,
-- in its own order (priority, then age); sandboxes take turns by that rank, so one flooding
-- sandbox cannot starve its neighbours on the worker.
create function cogo.claim_sandbox_commands(p_worker uuid, p_max integer) returns setof public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
  v_task public.tasks;
begin
  select * into w from public.workers where id = p_worker;
  if not found or w.status = 'offline' or p_max < 1 then
    return;
  end if;
  for v_task in
    with held as (
      select s.id,
             cogo.max_sandbox_commands() - (select count(*) from public.tasks a
                                             where a.sandbox_id = s.id and a.status = any(cogo.active_states())) as room
        from public.sandboxes s
       where s.worker_id = p_worker and s.status = 'ready'
    ),
    candidates as (
      select c.id, c.priority, c.created_at, c.n
        from held h
        cross join lateral (
          select t.id, t.priority, t.created_at,
                 row_number() over (order by t.priority desc, t.created_at, t.id) as n
            from public.tasks t
           where t.sandbox_id = h.id and t.status = 'queued'
           order by t.priority desc, t.created_at, t.id
           limit greatest(least(h.room, p_max), 0)
        ) c
    ),
    locked as (
      select t.id
        from public.tasks t join candidates c on c.id = t.id
       where t.status = 'queued'
       order by c.n, c.priority desc, c.created_at, c.id
       limit p_max
       for update of t skip locked
    )
    update public.tasks t
       set status = 'claimed', attempt = t.attempt + 1, worker_id = p_worker, claimed_at = now(),
           lease_expires_at = now() + make_interval(secs => w.lease_ms / 1000.0), reason = null,
           updated_at = now(), event_seq = t.event_seq + 1
      from locked where t.id = locked.id
    returning t.*
  loop
    perform cogo.task_status_changed(v_task, 'queued');
    return next v_task;
  end loop;
end;
$$;

-- queued → failed, for a command whose sandbox ended before it was claimed: a `system` output
-- line says why. Returns whether it changed the task (a row another transaction holds is skipped:
-- it is being claimed, and its worker finds the sandbox gone).
create function cogo.fail_sandbox_command(p_task uuid, p_reason text) returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  v_old public.tasks;
  v_task public.tasks;
begin
  select * into v_old from public.tasks where id = p_task and status = 'queued' and sandbox_id is not null
    for update skip locked;
  if not found then
    return false;
  end if;
  update public.tasks
     set status = 'failed', reason = p_reason, finished_at = now(), output_seq = output_seq + 1,
         updated_at = now(), event_seq = event_seq + 1
   where id = p_task returning * into v_task;
  perform cogo.task_status_changed(v_task, 'queued');
  insert into public.task_output (task_id, seq, attempt, stream, data)
    values (p_task, v_task.output_seq, v_task.attempt, 'system', p_reason || E'\n');
  perform realtime.send(jsonb_build_object('taskId', p_task, 'attempt', v_task.attempt, 'chunks', jsonb_build_array(
    jsonb_build_object('sequence', v_task.output_seq, 'stream', 'system', 'data', p_reason || E'\n', 'timestamp', clock_timestamp()))),
    'realtime_output', 'task:' || p_task, true);
  return true;
end;
$$;

-- ── the hook: the sandbox follows its init task ─────────────────────────────────────────────
-- Called by cogo.task_status_changed after analysis, before dashboard. Lock order: the task (held
-- by the transition), then the sandbox, then (skipping locked ones) its queued commands.
create function cogo.on_task_status_sandboxes(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
declare
  s public.sandboxes;
  v_prev public.sandbox_status;
  v_next public.sandbox_status;
  v_reason text;
  v_cmd uuid;
begin
  if p_task.sandbox_id is not null then
    -- A command claimed or ended is activity: the idle clock restarts from here.
    if p_task.status = 'claimed' or p_task.status = any(cogo.final_states()) then
      update public.sandboxes set last_activity_at = now() where id = p_task.sandbox_id and status in ('starting', 'ready');
    end if;
    return;
  end if;
  if p_task.internal is distinct from 'sandbox-init' then
    return;
  end if;
  select * into s from public.sandboxes where init_task_id = p_task.id for update;
  if not found or s.status in ('stopped', 'lost') then
    return;
  end if;
  v_prev := s.status;
  if p_task.status = 'claimed' then
    update public.sandboxes set worker_id = p_task.worker_id, updated_at = now() where id = s.id;
    return;
  elsif p_task.status = 'running' then
    if s.status = 'ready' then
      return; -- running again after a block: still the same sandbox
    end if;
    update public.sandboxes
       set status = 'ready', worker_id = p_task.worker_id, ready_at = now(), last_activity_at = now(), updated_at = now()
     where id = s.id returning * into s;
    perform cogo.sandbox_status_event(s, v_prev);
    -- Commands queued while it started: wake the holder.
    perform pg_notify('cogo_sandbox', s.worker_id::text);
    return;
  elsif not (p_task.status = any(cogo.final_states())) then
    return; -- blocked, recovering, or back to queued (not with one attempt)
  end if;
  -- The init task ended: so did the sandbox. A lease that ran out (cogo.expire_task's reason) is a
  -- lost worker; every other end is a stop with the worker's (or the cancel's) reason.
  if p_task.status = 'failed' and p_task.reason like 'attempt % lost: worker % stopped heartbeating%' then
    v_next := 'lost';
    v_reason := format('worker %s stopped heartbeating', p_task.worker_id);
  else
    v_next := 'stopped';
    v_reason := coalesce(p_task.reason, p_task.status::text);
  end if;
  update public.sandboxes
     set status = v_next, reason = v_reason, stopped_at = now(), updated_at = now()
   where id = s.id returning * into s;
  perform cogo.sandbox_status_event(s, v_prev);
  for v_cmd in select id from public.tasks where sandbox_id = s.id and status = 'queued' order by created_at loop
    perform cogo.fail_sandbox_command(v_cmd, format('sandbox %s %s: %s', s.id, v_next, v_reason));
  end loop;
  -- Active commands of a stopped sandbox: the holder kills them with it (asked here too, so a
  -- command it claimed meanwhile ends). A lost one's share the dead holder's lease and fail with it.
  if v_next = 'stopped' then
    update public.tasks set cancel_requested_at = now()
     where sandbox_id = s.id and status = any(cogo.active_states()) and cancel_requested_at is null;
  end if;
end;
$$;

-- task_status_changed as in 20261126000200_lifecycle.sql, with the sandboxes hook after analysis.
create or replace function cogo.task_status_changed(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.insert_event(p_task.id, p_task.event_seq, p_task.attempt, 'task_status', jsonb_strip_nulls(jsonb_build_object(
    'status', p_task.status, 'previous', p_previous, 'attempt', p_task.attempt, 'workerId', p_task.worker_id,
    'exitCode', p_task.exit_code, 'signal', p_task.signal, 'reason', p_task.reason)));
  perform cogo.on_task_status_plans(p_task, p_previous);
  perform cogo.on_task_status_analysis(p_task, p_previous);
  perform cogo.on_task_status_sandboxes(p_task, p_previous);
  perform cogo.on_task_status_dashboard(p_task, p_previous);
end;
$$;

-- ── stopping, keeping alive, expiry ─────────────────────────────────────────────────────────
-- DELETE /sandboxes/:id: cancels the init task. Queued (never claimed): stopped at once. Held:
-- the worker kills every process, removes the workspace and ends the init task `cancelled`.
-- Idempotent: an ended sandbox is returned as it is.
create function cogo.stop_sandbox(p_sandbox uuid) returns public.sandboxes
language plpgsql security definer set search_path = '' as $$
declare
  s public.sandboxes;
begin
  select * into s from public.sandboxes where id = p_sandbox;
  if not found or not cogo.caller_may_use(s.owner) then
    raise exception 'sandbox % not found', p_sandbox using errcode = 'CG404';
  end if;
  if s.status in ('starting', 'ready') then
    perform cogo.cancel_task(s.init_task_id);
    select * into s from public.sandboxes where id = p_sandbox;
  end if;
  return s;
end;
$$;

-- PATCH /sandboxes/:id {idleTimeoutMs}: a new idle timeout, counted from now (a keep-alive). The
-- holder re-reads its sandbox on the `cogo_sandbox` notification.
create function cogo.set_sandbox_idle_timeout(p_sandbox uuid, p_idle_timeout_ms integer) returns public.sandboxes
language plpgsql security definer set search_path = '' as $$
declare
  s public.sandboxes;
begin
  select * into s from public.sandboxes where id = p_sandbox for update;
  if not found or not cogo.caller_may_use(s.owner) then
    raise exception 'sandbox % not found', p_sandbox using errcode = 'CG404';
  end if;
  if s.status not in ('starting', 'ready') then
    raise exception 'sandbox % is %: %', s.id, s.status, coalesce(s.reason, 'it has ended') using errcode = 'CG409';
  end if;
  if p_idle_timeout_ms is null or p_idle_timeout_ms not between 1000 and 3600000 then
    raise exception 'idleTimeoutMs: between 1000 and 3600000, got %', p_idle_timeout_ms using errcode = '22023';
  end if;
  update public.sandboxes set idle_timeout_ms = p_idle_timeout_ms, last_activity_at = now(), updated_at = now()
   where id = s.id returning * into s;
  if s.worker_id is not null then
    perform pg_notify('cogo_sandbox', s.worker_id::text);
  end if;
  return s;
end;
$$;

-- When a live sandbox is due to end: its lifetime, or (no command active) its idle timeout.
create function cogo.sandbox_deadline(s public.sandboxes) returns timestamptz
language sql stable security definer set search_path = '' as $$
  select case when exists (select 1 from public.tasks a where a.sandbox_id = s.id and a.status = any(cogo.active_states()))
              then s.expires_at
              else least(s.expires_at, s.last_activity_at + make_interval(secs => s.idle_timeout_ms / 1000.0)) end
$$;

-- The backstop of the workers' timers (run by every worker's rescuer beside requeue_expired):
-- cancels the init task of each live sandbox past its deadline by more than the grace, and fails
-- commands still queued for an ended sandbox (those a claim held when it ended). Returns how many
-- sandboxes it asked to stop.
create function cogo.expire_sandboxes() returns integer
language plpgsql security definer set search_path = '' as $$
declare
  s public.sandboxes;
  v_cmd record;
  n integer := 0;
begin
  for s in
    select * from public.sandboxes x
     where x.status in ('starting', 'ready') and cogo.sandbox_deadline(x) < now() - cogo.sandbox_expiry_grace()
     for update skip locked
  loop
    -- A queued init task is cancelled at once; a held one is asked to cancel (NOTIFY and the
    -- holder's next heartbeat), and the holder stops the sandbox and ends it.
    perform cogo.cancel_task(s.init_task_id);
    n := n + 1;
  end loop;
  for v_cmd in
    select t.id, x.id as sandbox, x.status, x.reason from public.tasks t join public.sandboxes x on x.id = t.sandbox_id
     where t.status = 'queued' and t.sandbox_id is not null and x.status in ('stopped', 'lost')
  loop
    perform cogo.fail_sandbox_command(v_cmd.id, format('sandbox %s %s: %s', v_cmd.sandbox, v_cmd.status, v_cmd.reason));
  end loop;
  return n;
end;
$$;

-- ── waking the holder ───────────────────────────────────────────────────────────────────────
-- notify_queued as in 20261126000200_lifecycle.sql (same trigger), but a command wakes only the
-- worker holding its sandbox (`cogo_sandbox`, payload: the worker id), not every worker of the kind.
create or replace function cogo.notify_queued() returns trigger language plpgsql set search_path = '' as $$
declare
  v_worker uuid;
begin
  if new.sandbox_id is null then
    perform pg_notify('cogo_tasks', new.required_kind);
  else
    select worker_id into v_worker from public.sandboxes where id = new.sandbox_id;
    if v_worker is not null then
      perform pg_notify('cogo_sandbox', v_worker::text);
    end if;
  end if;
  return null;
end;
$$;

-- ── the claim: never commands ─────────────────────────────────────────────────────────────────
-- cogo.claim_tasks exactly as 20261206000400_host_admission.sql, plus one predicate in four
-- places: `sandbox_id is null`. Commands are claimed by their sandbox's holder only
-- (cogo.claim_sandbox_commands), and they neither count as a tenant's running tasks nor take
-- memory room: the sandbox's init task holds its slot and its memory limit for all of them.
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
revoke insert, update, delete, truncate on public.sandboxes from anon, authenticated;
revoke select on public.sandboxes from anon;
grant select on public.sandboxes to authenticated, service_role;

revoke execute on function
  cogo.max_live_sandboxes(), cogo.max_sandbox_commands(), cogo.sandbox_expiry_grace(), cogo.sandbox_init_argv(),
  cogo.sandbox_status_event(public.sandboxes, public.sandbox_status), cogo.owns_sandbox_topic(text),
  cogo.create_sandbox_unmetered(jsonb), cogo.create_sandbox(jsonb), cogo.lock_callers_sandbox(uuid),
  cogo.enqueue_command_unmetered(uuid, jsonb), cogo.enqueue_command(uuid, jsonb),
  cogo.claim_sandbox_commands(uuid, integer), cogo.fail_sandbox_command(uuid, text),
  cogo.on_task_status_sandboxes(public.tasks, public.task_status),
  cogo.stop_sandbox(uuid), cogo.set_sandbox_idle_timeout(uuid, integer),
  cogo.sandbox_deadline(public.sandboxes), cogo.expire_sandboxes()
  from public;
grant execute on function
  cogo.max_live_sandboxes(), cogo.max_sandbox_commands(), cogo.sandbox_expiry_grace(), cogo.sandbox_init_argv(),
  cogo.sandbox_status_event(public.sandboxes, public.sandbox_status), cogo.owns_sandbox_topic(text),
  cogo.create_sandbox_unmetered(jsonb), cogo.create_sandbox(jsonb), cogo.lock_callers_sandbox(uuid),
  cogo.enqueue_command_unmetered(uuid, jsonb), cogo.enqueue_command(uuid, jsonb),
  cogo.claim_sandbox_commands(uuid, integer), cogo.fail_sandbox_command(uuid, text),
  cogo.on_task_status_sandboxes(public.tasks, public.task_status),
  cogo.stop_sandbox(uuid), cogo.set_sandbox_idle_timeout(uuid, integer),
  cogo.sandbox_deadline(public.sandboxes), cogo.expire_sandboxes()
  to service_role;
-- The user-facing ones (each checks its caller) and the topic check of the Realtime policy.
grant execute on function
  cogo.create_sandbox(jsonb), cogo.enqueue_command(uuid, jsonb), cogo.stop_sandbox(uuid),
  cogo.set_sandbox_idle_timeout(uuid, integer), cogo.owns_sandbox_topic(text)
  to authenticated;
