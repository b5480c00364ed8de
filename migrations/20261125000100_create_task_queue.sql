-- The task queue: workers, tasks, their numbered output and events, stdin, and the SQL functions
-- that move a task through its states (docs/state-machine.md). Queue logic lives here so that the
-- edge function and every worker share one implementation.
--
-- Tables are in `public` with RLS on (a tenant sees only its own rows). Every write goes through a
-- function in schema `cogo`, which the Data API does not expose; those functions are
-- SECURITY DEFINER with an empty search_path and check the caller themselves.

create schema if not exists cogo;
revoke all on schema cogo from public;
grant usage on schema cogo to anon, authenticated, service_role;

-- One list of states, mirrored by TASK_STATES in functions/_shared/states.ts (a test compares them).
create type public.task_status as enum (
  'queued', 'claimed', 'running', 'blocked', 'recovering',
  'succeeded', 'failed', 'cancelled', 'timed_out'
);
create type public.worker_status as enum ('online', 'draining', 'offline');
create type public.output_stream as enum ('stdout', 'stderr', 'system');

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

create table public.tasks (
  id uuid primary key default gen_random_uuid(),
  owner uuid,
  plan_id uuid,
  step text,
  command text check (command is null or length(command) between 1 and 100000),
  argv text[] check (argv is null or cardinality(argv) between 1 and 1000),
  files jsonb not null default '[]',
  env jsonb not null default '{}',
  stdin_mode text not null default 'closed' check (stdin_mode in ('closed', 'pipe')),
  priority integer not null default 0 check (priority between -1000 and 1000),
  required_kind text not null default 'basic',
  required_labels text[] not null default '{}',
  limits jsonb not null default '{}',
  timeout_ms integer not null default 600000 check (timeout_ms between 100 and 86400000),
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
  constraint tasks_command_or_argv check (num_nonnulls(command, argv) = 1)
);
create unique index tasks_owner_idempotency_key on public.tasks (coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key)
  where idempotency_key is not null;
create index tasks_queued on public.tasks (required_kind, priority desc, created_at, id) where status = 'queued';
create index tasks_active_by_worker on public.tasks (worker_id) where status in ('claimed', 'running', 'blocked', 'recovering');
create index tasks_owner_created on public.tasks (owner, created_at desc);

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

revoke insert, update, delete, truncate on public.workers, public.tasks, public.task_output, public.task_events, public.task_stdin
  from anon, authenticated;

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

-- ── events ────────────────────────────────────────────────────────────────────────────────────
-- Appends an event with the task's next event seq and publishes it on the task topic.
create function cogo.append_event_unchecked(p_task uuid, p_type text, p_data jsonb)
returns bigint language plpgsql security definer set search_path = '' as $$
declare
  v_seq bigint;
  v_attempt integer;
  v_at timestamptz := clock_timestamp();
begin
  update public.tasks set event_seq = event_seq + 1 where id = p_task
    returning event_seq, attempt into v_seq, v_attempt;
  if v_seq is null then
    raise exception 'task % not found', p_task using errcode = 'CG404';
  end if;
  insert into public.task_events (task_id, seq, attempt, type, data, created_at)
    values (p_task, v_seq, v_attempt, p_type, p_data, v_at);
  perform realtime.send(
    jsonb_build_object('taskId', p_task, 'seq', v_seq, 'attempt', v_attempt, 'type', p_type, 'data', p_data,
                       'timestamp', v_at),
    p_type, 'task:' || p_task, true);
  return v_seq;
end;
$$;

-- Every status change becomes a `task_status` event, in the same transaction.
create function cogo.publish_status_change() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.append_event_unchecked(new.id, 'task_status', jsonb_strip_nulls(jsonb_build_object(
    'status', new.status, 'previous', old.status, 'attempt', new.attempt, 'workerId', new.worker_id,
    'exitCode', new.exit_code, 'signal', new.signal, 'reason', new.reason)));
  return null;
end;
$$;

create function cogo.touch_task() returns trigger language plpgsql set search_path = '' as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

-- Wakes workers (LISTEN cogo_tasks) when work becomes claimable.
create function cogo.notify_queued() returns trigger language plpgsql set search_path = '' as $$
begin
  perform pg_notify('cogo_tasks', new.required_kind);
  return null;
end;
$$;

create trigger tasks_touch before update on public.tasks
  for each row when (old.status is distinct from new.status) execute function cogo.touch_task();
create trigger tasks_status_event after update of status on public.tasks
  for each row when (old.status is distinct from new.status) execute function cogo.publish_status_change();
create trigger tasks_notify_insert after insert on public.tasks
  for each row when (new.status = 'queued') execute function cogo.notify_queued();
create trigger tasks_notify_requeue after update of status on public.tasks
  for each row when (new.status = 'queued' and old.status is distinct from new.status) execute function cogo.notify_queued();

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

-- Queued → cancelled at once; claimed/running/blocked → cancel requested, the worker kills it.
create function cogo.cancel_task(p_task uuid) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  select * into v_task from public.tasks where id = p_task for update;
  if not found or not cogo.caller_may_use(v_task.owner) then
    return null;
  end if;
  if v_task.status = 'queued' then
    update public.tasks set status = 'cancelled', reason = 'cancelled before it started', finished_at = now()
      where id = p_task returning * into v_task;
  elsif v_task.status in ('claimed', 'running', 'blocked', 'recovering') and v_task.cancel_requested_at is null then
    update public.tasks set cancel_requested_at = now() where id = p_task returning * into v_task;
    perform pg_notify('cogo_control', json_build_object('action', 'cancel', 'taskId', p_task, 'workerId', v_task.worker_id)::text);
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
  select * into v_task from public.tasks where id = p_task for update;
  if not found or not cogo.caller_may_use(v_task.owner) then
    raise exception 'task % not found', p_task using errcode = 'CG404';
  end if;
  if v_task.stdin_mode <> 'pipe' then
    raise exception 'task % was not started with stdin: "pipe"', p_task using errcode = 'CG409';
  end if;
  if v_task.status in ('succeeded', 'failed', 'cancelled', 'timed_out') then
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

-- Claims up to p_max queued tasks this worker can run: highest priority first, then oldest.
create function cogo.claim_tasks(p_worker uuid, p_max integer) returns setof public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
begin
  select * into w from public.workers where id = p_worker;
  if not found or w.status <> 'online' or p_max < 1 then
    return;
  end if;
  return query
  with next as (
    select t.id from public.tasks t
    where t.status = 'queued' and t.required_kind = w.kind and t.required_labels <@ w.labels
      and t.run_after <= now()
    order by t.priority desc, t.created_at, t.id
    limit p_max
    for update skip locked
  )
  update public.tasks t
     set status = 'claimed', attempt = t.attempt + 1, worker_id = p_worker, claimed_at = now(),
         lease_expires_at = now() + make_interval(secs => w.lease_ms / 1000.0), reason = null
    from next where t.id = next.id
  returning t.*;
end;
$$;

-- Raises CG409 unless this worker still holds this attempt's lease: the fence every write passes.
create function cogo.fence(p_task uuid, p_attempt integer, p_worker uuid) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  select * into v_task from public.tasks where id = p_task for update;
  if not found or v_task.attempt <> p_attempt or v_task.worker_id is distinct from p_worker
     or v_task.status not in ('claimed', 'running', 'blocked', 'recovering') or v_task.lease_expires_at <= now() then
    raise exception 'lease lost: task % attempt % no longer belongs to worker %', p_task, p_attempt, p_worker
      using errcode = 'CG409';
  end if;
  return v_task;
end;
$$;

-- Returns the task's last output seq, so the worker numbers its output from there.
create function cogo.start_task(p_task uuid, p_attempt integer, p_worker uuid) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  v_task := cogo.fence(p_task, p_attempt, p_worker);
  update public.tasks set status = 'running', started_at = coalesce(started_at, now()) where id = p_task;
  return v_task.output_seq;
end;
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

create function cogo.finish_task(p_task uuid, p_attempt integer, p_worker uuid, p_status public.task_status,
                                 p_exit_code integer, p_signal text, p_reason text, p_usage jsonb, p_result jsonb)
returns public.tasks language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  if p_status not in ('succeeded', 'failed', 'cancelled', 'timed_out') then
    raise exception 'finish_task needs a final status, got %', p_status using errcode = '22023';
  end if;
  perform cogo.fence(p_task, p_attempt, p_worker);
  update public.tasks
     set status = p_status, exit_code = p_exit_code, signal = p_signal, reason = p_reason, usage = p_usage,
         result = p_result, finished_at = now(), lease_expires_at = null
   where id = p_task returning * into v_task;
  return v_task;
end;
$$;

-- Hands a task back to the queue (worker shutting down before it started, or draining).
create function cogo.release_task(p_task uuid, p_attempt integer, p_worker uuid, p_reason text) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  update public.tasks set status = 'queued', worker_id = null, lease_expires_at = null, reason = p_reason
   where id = p_task;
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
     where worker_id = p_worker and status in ('claimed', 'running', 'blocked', 'recovering')
       and lease_expires_at > now()
    returning id, cancel_requested_at
  )
  select coalesce(array_agg(id), '{}'), coalesce(array_agg(id) filter (where cancel_requested_at is not null), '{}')
    into kept, cancel from extended;
end;
$$;

-- Lease rescuer: tasks whose worker stopped heartbeating go back to the queue (next attempt) or,
-- past max_attempts or when a cancel was asked, end. Each gets a `system` output line saying so.
create function cogo.requeue_expired() returns integer
language plpgsql security definer set search_path = '' as $$
declare
  t public.tasks;
  n integer := 0;
  v_next public.task_status;
  v_reason text;
begin
  for t in
    select * from public.tasks
     where status in ('claimed', 'running', 'blocked', 'recovering') and lease_expires_at <= now()
     for update skip locked
  loop
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
    update public.tasks
       set status = v_next, reason = v_reason, lease_expires_at = null,
           worker_id = case when v_next = 'queued' then null else worker_id end,
           finished_at = case when v_next = 'queued' then null else now() end,
           output_seq = output_seq + 1
     where id = t.id;
    insert into public.task_output (task_id, seq, attempt, stream, data)
      values (t.id, t.output_seq + 1, t.attempt, 'system', v_reason || E'\n');
    perform realtime.send(jsonb_build_object('taskId', t.id, 'attempt', t.attempt, 'chunks', jsonb_build_array(
      jsonb_build_object('sequence', t.output_seq + 1, 'stream', 'system', 'data', v_reason || E'\n', 'timestamp', clock_timestamp()))),
      'realtime_output', 'task:' || t.id, true);
    n := n + 1;
  end loop;
  return n;
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

create function cogo.health() returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'liveWorkers', (select count(*) from public.workers w
                     where w.status = 'online' and w.last_heartbeat_at > now() - make_interval(secs => 2 * w.lease_ms / 1000.0)),
    'queueDepth', (select count(*) from public.tasks where status = 'queued'),
    'running', (select count(*) from public.tasks where status in ('claimed', 'running', 'blocked', 'recovering')),
    'oldestQueuedAgeMs', (select coalesce(floor(extract(epoch from now() - min(created_at)) * 1000), 0)::bigint
                            from public.tasks where status = 'queued'),
    'queuedWithoutWorker', (
      select coalesce(jsonb_agg(jsonb_build_object('kind', q.required_kind, 'labels', q.required_labels, 'count', q.n)), '[]')
        from (select required_kind, required_labels, count(*) n from public.tasks t where t.status = 'queued'
                 and not exists (select 1 from public.workers w
                                  where w.status = 'online' and w.kind = t.required_kind and t.required_labels <@ w.labels
                                    and w.last_heartbeat_at > now() - make_interval(secs => 2 * w.lease_ms / 1000.0))
               group by required_kind, required_labels) q)
  );
$$;

revoke execute on all functions in schema cogo from public;
grant execute on function cogo.enqueue_task(jsonb), cogo.cancel_task(uuid), cogo.write_stdin(uuid, text, boolean),
  cogo.owns_topic(text) to authenticated, service_role;
grant execute on function cogo.health() to anon, authenticated, service_role;
grant execute on all functions in schema cogo to service_role;
