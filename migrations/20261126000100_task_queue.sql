-- The task queue: workers, tasks, their numbered output and events, stdin, and the SQL functions
-- that enqueue, fence and feed them (docs/state-machine.md). Queue logic lives in SQL so that the
-- edge function and every worker share one implementation; the status changes themselves are the
-- transition functions of 20261126000200_lifecycle.sql (docs/lifecycle.md).
--
-- Tables are in `public` with RLS on (a tenant sees only its own rows). Every write goes through a
-- function in schema `cogo`, which the Data API does not expose; those functions are
-- SECURITY DEFINER with an empty search_path and check the caller themselves. Who may call what is
-- in one place: 20261126000800_grants.sql.
--
-- This file and the seven after it replace the thirteen migrations of 20261125 (squashed before
-- anything was deployed; embedded/migrate.ts tells a database that has the old ones to reset).

create schema if not exists cogo;

-- ── states and workers: each defined once ──────────────────────────────────────────────────────
-- One list of states, mirrored by TASK_STATES in functions/_shared/states.ts (a test compares them).
create type public.task_status as enum (
  'queued', 'claimed', 'running', 'blocked', 'recovering',
  'succeeded', 'failed', 'cancelled', 'timed_out'
);
create type public.worker_status as enum ('online', 'draining', 'offline');
create type public.output_stream as enum ('stdout', 'stderr', 'system');

-- A task in one of these belongs to the worker holding its lease (ACTIVE_STATES in states.ts).
-- Immutable, so a query or index predicate `status = any(cogo.active_states())` folds to a constant.
create function cogo.active_states() returns public.task_status[]
language sql immutable parallel safe set search_path = '' as $$
  select '{claimed,running,blocked,recovering}'::public.task_status[]
$$;

-- A task in one of these never changes again (FINAL_STATES in states.ts).
create function cogo.final_states() returns public.task_status[]
language sql immutable parallel safe set search_path = '' as $$
  select '{succeeded,failed,cancelled,timed_out}'::public.task_status[]
$$;

create table public.workers (
  id uuid primary key default gen_random_uuid(),
  name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$'),
  kind text not null default 'basic' check (kind ~ '^[a-z][a-z0-9_-]{0,31}$'),
  labels text[] not null default '{}' check (cardinality(labels) <= 32),
  capacity integer not null default 4 check (capacity between 1 and 1000),
  status public.worker_status not null default 'online',
  lease_ms integer not null default 15000 check (lease_ms between 1000 and 3600000),
  version text,
  host jsonb not null default '{}',
  last_heartbeat_at timestamptz not null default now(),
  created_at timestamptz not null default now()
);

-- A live worker: online and heard from within two leases. What claims, health, metrics and the
-- claim exclusion count as "a worker that could take this".
create function cogo.worker_is_live(w public.workers) returns boolean
language sql stable set search_path = '' as $$
  select w.status = 'online' and w.last_heartbeat_at > now() - make_interval(secs => 2 * w.lease_ms / 1000.0)
$$;

create table public.tasks (
  id uuid primary key default gen_random_uuid(),
  owner uuid,
  plan_id uuid,
  step text,
  -- The system job this task is; see the comment below and 20261126000400_analysis.sql.
  internal text check (internal in ('analysis-clone', 'analysis-batch')),
  command text check (command is null or length(command) between 1 and 100000),
  argv text[] check (argv is null or cardinality(argv) between 1 and 1000),
  files jsonb not null default '[]',
  env jsonb not null default '{}',
  stdin_mode text not null default 'closed' check (stdin_mode in ('closed', 'pipe')),
  priority integer not null default 0 check (priority between -1000 and 1000),
  required_kind text not null default 'basic',
  required_labels text[] not null default '{}',
  limits jsonb not null default '{}',
  -- The one wall-time limit; at most functions/_shared/limits.ts MAX_WALL_TIME_MS (1 h).
  timeout_ms integer not null default 600000 check (timeout_ms between 100 and 3600000),
  -- Sandbox options enqueue_task does not know of (cogo.request_sandbox_options): files collected
  -- after exit (20261126000600_artifacts.sql), and network, granted only by --allow-network workers.
  artifact_patterns text[] not null default '{}',
  network boolean not null default false,
  -- Block thresholds and recovery options (cogo.set_block_options), and the workers a `reassign`
  -- moved the task away from: they do not claim it while another live worker can.
  block_detection jsonb not null default '{}',
  recovery jsonb not null default '{}',
  excluded_workers uuid[] not null default '{}',
  status public.task_status not null default 'queued',
  attempt integer not null default 0,
  max_attempts integer not null default 3 check (max_attempts between 1 and 20),
  worker_id uuid references public.workers (id) on delete set null,
  lease_expires_at timestamptz,
  cancel_requested_at timestamptz,
  exit_code integer,
  signal text,
  reason text,
  usage jsonb,
  result jsonb,
  output_seq bigint not null default 0,
  event_seq bigint not null default 0,
  stdin_seq bigint not null default 0,
  idempotency_key text check (idempotency_key is null or length(idempotency_key) between 1 and 200),
  run_after timestamptz not null default now(),
  created_at timestamptz not null default now(),
  claimed_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint tasks_command_or_argv check (num_nonnulls(command, argv) = 1),
  -- The invariants every transition keeps, held by the table itself: claim_tasks takes an attempt,
  -- so a task is never claimed past max_attempts; a queued task has an attempt left and no cancel
  -- pending (a pending cancel always wins over a re-queue).
  constraint tasks_attempts_bounded check (attempt between 0 and max_attempts),
  constraint tasks_queued_is_claimable check (status <> 'queued' or (attempt < max_attempts and cancel_requested_at is null))
);
comment on column public.tasks.internal is
  'The system job this task is (set only by cogo.start_analysis / cogo.plan_analysis); null for user tasks.';
create unique index tasks_owner_idempotency_key on public.tasks (coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key)
  where idempotency_key is not null;
create index tasks_queued on public.tasks (required_kind, priority desc, created_at, id) where status = 'queued';
create index tasks_active_by_worker on public.tasks (worker_id) where status = any(cogo.active_states());
create index tasks_owner_created on public.tasks (owner, created_at desc);
-- "Similar task" (cogo.estimate_duration_ms): same owner, same plan step name (null for plain
-- tasks) and same command or argv.
create index tasks_duration_history on public.tasks
  (coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), coalesce(step, ''), finished_at desc)
  where status = 'succeeded' and started_at is not null;

-- Output rows: seq is per task, starts at 1, gap-free across attempts (assigned under the task's row lock).
create table public.task_output (
  task_id uuid not null references public.tasks (id) on delete cascade,
  seq bigint not null,
  attempt integer not null,
  stream public.output_stream not null,
  data text not null,
  created_at timestamptz not null default clock_timestamp(),
  primary key (task_id, seq)
);

create table public.task_events (
  task_id uuid not null references public.tasks (id) on delete cascade,
  seq bigint not null,
  attempt integer not null,
  type text not null check (type ~ '^[a-z][a-z_]{0,63}$'),
  data jsonb not null default '{}',
  created_at timestamptz not null default clock_timestamp(),
  primary key (task_id, seq)
);
-- /metrics counts blocks and recoveries by scanning only these events; /health the last hour's.
create index task_events_blocks_recoveries on public.task_events (type)
  where type in ('block_detected', 'recovery_started', 'recovery_succeeded', 'recovery_failed');
create index task_events_recent_blocks on public.task_events (created_at)
  where type in ('block_detected', 'recovery_succeeded', 'recovery_failed');

create table public.task_stdin (
  task_id uuid not null references public.tasks (id) on delete cascade,
  seq bigint not null,
  data text not null default '',
  eof boolean not null default false,
  created_at timestamptz not null default clock_timestamp(),
  primary key (task_id, seq)
);

alter table public.workers enable row level security;
alter table public.tasks enable row level security;
alter table public.task_output enable row level security;
alter table public.task_events enable row level security;
alter table public.task_stdin enable row level security;

-- Reads only: writes go through cogo.* functions. `(select auth.uid())` is evaluated once per query.
create policy "signed-in users see the fleet" on public.workers for select to authenticated using (true);
create policy "owners read their tasks" on public.tasks for select to authenticated
  using (owner = (select auth.uid()));
create policy "owners read their output" on public.task_output for select to authenticated
  using (exists (select 1 from public.tasks t where t.id = task_id and t.owner = (select auth.uid())));
create policy "owners read their events" on public.task_events for select to authenticated
  using (exists (select 1 from public.tasks t where t.id = task_id and t.owner = (select auth.uid())));
create policy "owners read their stdin" on public.task_stdin for select to authenticated
  using (exists (select 1 from public.tasks t where t.id = task_id and t.owner = (select auth.uid())));

-- Realtime: a task's topic is `task:<id>`, private, readable by the task's owner only.
create function cogo.owns_topic(topic text) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.tasks t
    where topic ~ '^task:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      and t.id = substr(topic, 6)::uuid
      and t.owner = (select auth.uid())
  );
$$;

create policy "task owners receive their task topics" on realtime.messages for select to authenticated
  using (cogo.owns_topic((select realtime.topic())));

-- Caller checks for the user-facing functions: a service_role caller may act on any task, a user
-- only on its own, anon on none. No claims at all means a direct database session (the worker or
-- an operator), which only the roles that can log in have.
create function cogo.caller_may_use(task_owner uuid) returns boolean
language sql stable set search_path = '' as $$
  select coalesce(auth.role(), 'service_role') = 'service_role'
      or (auth.uid() is not null and task_owner = auth.uid());
$$;

-- The caller's own task (the service role's: any), locked for the change the caller makes;
-- CG404 when it does not exist or is another tenant's (the two are not told apart).
create function cogo.lock_callers_task(p_task uuid) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  select * into v_task from public.tasks where id = p_task for update;
  if not found or not cogo.caller_may_use(v_task.owner) then
    raise exception 'task % not found', p_task using errcode = 'CG404';
  end if;
  return v_task;
end;
$$;

-- The service role, or a direct database session (a worker, an operator): sees the fleet's host
-- details (a worker's name, version and host facts); users see capacity only.
create function cogo.caller_sees_hosts() returns boolean
language sql stable set search_path = '' as $$
  select coalesce(auth.role(), 'service_role') = 'service_role';
$$;

-- ── events ────────────────────────────────────────────────────────────────────────────────────
-- Inserts an event with a seq already taken under the task's row lock and publishes it on the
-- task topic: the one place an event row and its broadcast are made. A step's diagnostics and test
-- results also go to its plan's topic (cogo.forward_step_feedback, 20261126000300_plans.sql).
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
  if p_type in ('diagnostic', 'test_results') then
    perform cogo.forward_step_feedback(p_task, p_type, p_data);
  end if;
  return p_seq;
end;
$$;

-- Appends an event with the task's next event seq.
create function cogo.append_event_unchecked(p_task uuid, p_type text, p_data jsonb)
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

-- ── fencing ───────────────────────────────────────────────────────────────────────────────────
-- Raises CG409 unless this worker still holds this attempt's lease: the fence every worker write
-- passes. Returns the task, locked.
create function cogo.fence(p_task uuid, p_attempt integer, p_worker uuid) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  select * into v_task from public.tasks where id = p_task for update;
  if not found or v_task.attempt <> p_attempt or v_task.worker_id is distinct from p_worker
     or not (v_task.status = any(cogo.active_states())) or v_task.lease_expires_at <= now() then
    raise exception 'lease lost: task % attempt % no longer belongs to worker %', p_task, p_attempt, p_worker
      using errcode = 'CG409';
  end if;
  return v_task;
end;
$$;

-- cogo.fence's check holding the task row FOR SHARE: writes that may run side by side on several
-- connections of one attempt (the clone step's blob chunks). A claim or release of the task still
-- waits for every one in flight.
create function cogo.fence_shared(p_task uuid, p_attempt integer, p_worker uuid) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform 1 from public.tasks
   where id = p_task and attempt = p_attempt and worker_id = p_worker
     and status = any(cogo.active_states()) and lease_expires_at > now()
     for share;
  if not found then
    raise exception 'lease lost: task % attempt % no longer belongs to worker %', p_task, p_attempt, p_worker
      using errcode = 'CG409';
  end if;
end;
$$;

-- ── reserved names ────────────────────────────────────────────────────────────────────────────
-- What the system names its own tasks is reserved: worker kind `analysis` and step names starting
-- with `analysis-` (any case). A task without the `internal` marker naming them is refused with
-- SQLSTATE 22023, whoever inserts it (the API, an RPC, the service role); so is a plan step
-- (20261126000300_plans.sql). RESERVED_KINDS and RESERVED_STEP_PREFIX in
-- functions/_shared/schemas.ts mirror this, so the API refuses them first with a 400.
create function cogo.reserved_kind(p_kind text) returns boolean
language sql immutable set search_path = '' as $$
  select p_kind = 'analysis';
$$;

create function cogo.reserved_step(p_step text) returns boolean
language sql immutable set search_path = '' as $$
  select lower(p_step) like 'analysis-%';
$$;

create function cogo.refuse_reserved_task() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if cogo.reserved_kind(new.required_kind) then
    raise exception 'requirements.kind: "%" is reserved for the system''s own tasks (repository analysis: POST /analyze/repository)',
      new.required_kind using errcode = '22023';
  end if;
  raise exception 'step: step names starting with "analysis-" are reserved for the system''s own tasks (got %)', new.step
    using errcode = '22023';
end;
$$;
create trigger tasks_reserved_names before insert on public.tasks
  for each row when (new.internal is null and (cogo.reserved_kind(new.required_kind) or cogo.reserved_step(new.step)))
  execute function cogo.refuse_reserved_task();

-- ── user-facing functions (edge function, as the caller's role) ───────────────────────────────
create function cogo.enqueue_task(spec jsonb) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_owner uuid := auth.uid();
  v_task public.tasks;
begin
  if not cogo.caller_may_use(v_owner) then
    raise exception 'a user token or the service key is required to run tasks' using errcode = 'CG401';
  end if;
  if spec ? 'idempotencyKey' then
    select * into v_task from public.tasks
      where coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(v_owner, '00000000-0000-0000-0000-000000000000'::uuid)
        and idempotency_key = spec ->> 'idempotencyKey';
    if found then return v_task; end if;
  end if;
  insert into public.tasks (owner, plan_id, step, command, argv, files, env, stdin_mode, priority, required_kind,
                            required_labels, limits, timeout_ms, max_attempts, idempotency_key)
  values (
    v_owner,
    (spec ->> 'planId')::uuid,
    spec ->> 'step',
    spec ->> 'command',
    case when spec ? 'argv' then array(select jsonb_array_elements_text(spec -> 'argv')) end,
    coalesce(spec -> 'files', '[]'),
    coalesce(spec -> 'env', '{}'),
    coalesce(spec ->> 'stdin', 'closed'),
    coalesce((spec ->> 'priority')::integer, 0),
    coalesce(spec #>> '{requirements,kind}', 'basic'),
    coalesce(array(select jsonb_array_elements_text(spec #> '{requirements,labels}')), '{}'),
    coalesce(spec -> 'limits', '{}'),
    coalesce((spec ->> 'timeoutMs')::integer, 600000),
    coalesce((spec ->> 'maxAttempts')::integer, 3),
    spec ->> 'idempotencyKey'
  )
  on conflict do nothing
  returning * into v_task;
  if v_task.id is null then
    -- A concurrent request with the same key won the insert.
    select * into v_task from public.tasks
      where coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(v_owner, '00000000-0000-0000-0000-000000000000'::uuid)
        and idempotency_key = spec ->> 'idempotencyKey';
  end if;
  return v_task;
end;
$$;

-- Queues stdin for a running task; the worker reads rows after its last seq when notified.
create function cogo.write_stdin(p_task uuid, p_data text, p_eof boolean) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  v_task := cogo.lock_callers_task(p_task);
  if v_task.stdin_mode <> 'pipe' then
    raise exception 'task % was not started with stdin: "pipe"', p_task using errcode = 'CG409';
  end if;
  if v_task.status = any(cogo.final_states()) then
    raise exception 'task % has already finished (%)', p_task, v_task.status using errcode = 'CG409';
  end if;
  update public.tasks set stdin_seq = stdin_seq + 1 where id = p_task returning * into v_task;
  insert into public.task_stdin (task_id, seq, data, eof) values (p_task, v_task.stdin_seq, p_data, p_eof);
  perform pg_notify('cogo_control', json_build_object('action', 'stdin', 'taskId', p_task, 'workerId', v_task.worker_id)::text);
  return v_task.stdin_seq;
end;
$$;

-- ── worker functions (service role only) ──────────────────────────────────────────────────────
create function cogo.register_worker(p_name text, p_kind text, p_labels text[], p_capacity integer,
                                     p_lease_ms integer, p_version text, p_host jsonb)
returns public.workers language sql security definer set search_path = '' as $$
  insert into public.workers (name, kind, labels, capacity, lease_ms, version, host)
  values (p_name, p_kind, coalesce(p_labels, '{}'), p_capacity, p_lease_ms, p_version, coalesce(p_host, '{}'))
  returning *;
$$;

-- Appends output chunks as seqs p_first_seq.. and broadcasts them as one `realtime_output` message.
-- Idempotent: a retry of a batch that already committed (the reply was lost with the connection)
-- changes nothing, so output is never written twice.
create function cogo.append_output(p_task uuid, p_attempt integer, p_worker uuid, p_first_seq bigint,
                                   p_streams public.output_stream[], p_data text[], p_times timestamptz[])
returns bigint language plpgsql security definer set search_path = '' as $$
declare
  n integer := cardinality(p_data);
  v_task public.tasks;
  v_last bigint;
  v_chunks jsonb;
begin
  if n = 0 then return null; end if;
  v_task := cogo.fence(p_task, p_attempt, p_worker);
  if v_task.output_seq >= p_first_seq + n - 1 then
    return v_task.output_seq;
  end if;
  if v_task.output_seq <> p_first_seq - 1 then
    raise exception 'output of task % continues at seq %, not %', p_task, v_task.output_seq + 1, p_first_seq
      using errcode = 'CG409';
  end if;
  update public.tasks set output_seq = output_seq + n where id = p_task returning output_seq into v_last;
  insert into public.task_output (task_id, seq, attempt, stream, data, created_at)
    select p_task, v_last - n + i, p_attempt, p_streams[i], p_data[i], p_times[i] from generate_series(1, n) i;
  select jsonb_agg(jsonb_build_object('sequence', v_last - n + i, 'stream', p_streams[i], 'data', p_data[i],
                                      'timestamp', p_times[i]) order by i)
    into v_chunks from generate_series(1, n) i;
  perform realtime.send(jsonb_build_object('taskId', p_task, 'attempt', p_attempt, 'chunks', v_chunks),
                        'realtime_output', 'task:' || p_task, true);
  return v_last;
end;
$$;

create function cogo.append_event(p_task uuid, p_attempt integer, p_worker uuid, p_type text, p_data jsonb)
returns bigint language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  return cogo.append_event_unchecked(p_task, p_type, p_data);
end;
$$;

-- Appends events in order with consecutive seqs, fenced once; each is published on the task topic
-- like cogo.append_event. Returns the last seq (null for an empty batch).
create function cogo.append_events(p_task uuid, p_attempt integer, p_worker uuid, p_types text[], p_data jsonb[])
returns bigint language plpgsql security definer set search_path = '' as $$
declare
  v_seq bigint;
begin
  if cardinality(p_types) is distinct from cardinality(p_data) then
    raise exception 'append_events: % types but % data', cardinality(p_types), cardinality(p_data) using errcode = '22023';
  end if;
  if coalesce(cardinality(p_types), 0) = 0 then return null; end if;
  perform cogo.fence(p_task, p_attempt, p_worker);
  for i in 1 .. cardinality(p_types) loop
    v_seq := cogo.append_event_unchecked(p_task, p_types[i], p_data[i]);
  end loop;
  return v_seq;
end;
$$;

-- Extends the leases of this worker's tasks. Returns those it must stop: cancelled by a user, or
-- no longer its own (lease lost); the worker kills any running task not in `kept`.
create function cogo.heartbeat(p_worker uuid, out kept uuid[], out cancel uuid[], out worker_status public.worker_status)
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
begin
  update public.workers set last_heartbeat_at = now(),
         status = case when status = 'offline' then 'online' else status end
   where id = p_worker returning * into w;
  if not found then
    raise exception 'worker % is not registered', p_worker using errcode = 'CG404';
  end if;
  worker_status := w.status;
  with extended as (
    update public.tasks set lease_expires_at = now() + make_interval(secs => w.lease_ms / 1000.0)
     where worker_id = p_worker and status = any(cogo.active_states())
       and lease_expires_at > now()
    returning id, cancel_requested_at
  )
  select coalesce(array_agg(id), '{}'), coalesce(array_agg(id) filter (where cancel_requested_at is not null), '{}')
    into kept, cancel from extended;
end;
$$;

-- Workers silent for three leases are offline.
create function cogo.mark_lost_workers() returns integer
language sql security definer set search_path = '' as $$
  with lost as (
    update public.workers set status = 'offline'
     where status <> 'offline' and last_heartbeat_at < now() - make_interval(secs => 3 * lease_ms / 1000.0)
    returning 1
  )
  select count(*)::integer from lost;
$$;

-- Drain: no new claims; the worker finishes what it runs, then goes offline.
create function cogo.drain_worker(p_worker uuid) returns public.workers
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
begin
  update public.workers set status = 'draining' where id = p_worker and status = 'online' returning * into w;
  if not found then
    select * into w from public.workers where id = p_worker;
  end if;
  if found then
    perform pg_notify('cogo_control', json_build_object('action', 'drain', 'workerId', p_worker)::text);
  end if;
  return w;
end;
$$;

create function cogo.set_worker_offline(p_worker uuid) returns void
language sql security definer set search_path = '' as $$
  update public.workers set status = 'offline' where id = p_worker;
$$;

-- ── health ────────────────────────────────────────────────────────────────────────────────────
create function cogo.health() returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'liveWorkers', (select count(*) from public.workers w where cogo.worker_is_live(w)),
    'queueDepth', (select count(*) from public.tasks where status = 'queued'),
    'running', (select count(*) from public.tasks where status = any(cogo.active_states())),
    'oldestQueuedAgeMs', (select coalesce(floor(extract(epoch from now() - min(created_at)) * 1000), 0)::bigint
                            from public.tasks where status = 'queued'),
    'queuedWithoutWorker', (
      select coalesce(jsonb_agg(jsonb_build_object('kind', q.required_kind, 'labels', q.required_labels, 'count', q.n)), '[]')
        from (select required_kind, required_labels, count(*) n from public.tasks t where t.status = 'queued'
                 and not exists (select 1 from public.workers w
                                  where cogo.worker_is_live(w) and w.kind = t.required_kind and t.required_labels <@ w.labels)
               group by required_kind, required_labels) q)
  );
$$;

-- Live workers per kind, for /health (workers are not readable by anon).
create function cogo.live_worker_kinds() returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce(jsonb_agg(jsonb_build_object('kind', kind, 'n', n)), '[]') from (
    select w.kind, count(*)::integer n from public.workers w where cogo.worker_is_live(w) group by w.kind) k;
$$;

-- Median run time in ms of the last 20 successful runs similar to p_task (null without history).
create function cogo.estimate_duration_ms(p_task uuid) returns bigint
language sql stable security definer set search_path = '' as $$
  select percentile_cont(0.5) within group (order by d)::bigint
  from (
    select extract(epoch from h.finished_at - h.started_at) * 1000 as d
      from public.tasks t
      join public.tasks h
        on coalesce(h.owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid)
       and coalesce(h.step, '') = coalesce(t.step, '')
       and h.command is not distinct from t.command and h.argv is not distinct from t.argv
       and h.status = 'succeeded' and h.started_at is not null
       and h.id <> t.id
     where t.id = p_task
     order by h.finished_at desc
     limit 20
  ) history;
$$;
