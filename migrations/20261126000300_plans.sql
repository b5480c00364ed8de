-- Plans: a DAG of steps over one shared workspace (docs/plans.md). Each run of a step is a task
-- (tasks.plan_id, tasks.step). The lifecycle's plans hook (cogo.on_task_status_plans, called by
-- every transition of 20261126000200) moves the step, releases the steps whose dependencies all
-- succeeded, stops the dependents of a failed step, and publishes step status and plan progress
-- on the private topic `plan:<id>`. No polling anywhere: everything happens in the transaction
-- that finishes a task, creates a plan, cancels it, or changes a workspace file.
--
-- Lock order, everywhere: the plan's task rows, then the plan row, then the workspace row, then
-- step rows. A worker's finish_task (and its save) already holds its task row when it locks the
-- plan, so paths that start from the plan or the workspace (cancel, file change) lock the plan's
-- active tasks first.

-- ── workspaces: files stored in Postgres, restored into each step's sandbox ────────────────────
create table public.workspaces (
  id uuid primary key default gen_random_uuid(),
  owner uuid,
  revision bigint not null default 0,
  bytes bigint not null default 0,
  file_count integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table public.workspace_files (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  path text not null check (length(path) between 1 and 4095),
  content bytea not null,
  executable boolean not null default false,
  size integer generated always as (octet_length(content)) stored,
  -- The workspace revision that last wrote this file: a step saves a file only if it is unchanged
  -- since the step restored it, so a save never overwrites a newer edit made through the files API.
  version bigint not null,
  updated_at timestamptz not null default now(),
  primary key (workspace_id, path)
);

-- ── plans and steps ────────────────────────────────────────────────────────────────────────────
create table public.plans (
  id uuid primary key default gen_random_uuid(),
  owner uuid,
  name text check (name is null or length(name) between 1 and 200),
  workspace_id uuid not null references public.workspaces (id),
  status text not null default 'running' check (status in ('running', 'succeeded', 'failed', 'cancelled')),
  reason text,
  step_count integer not null check (step_count between 1 and 100),
  event_seq bigint not null default 0,
  idempotency_key text check (idempotency_key is null or length(idempotency_key) between 1 and 200),
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  updated_at timestamptz not null default now()
);
create unique index plans_owner_idempotency_key on public.plans (coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key)
  where idempotency_key is not null;
create index plans_workspace on public.plans (workspace_id) where status <> 'cancelled';
create index plans_owner_created on public.plans (owner, created_at desc);

-- waiting: dependencies not all succeeded yet · queued/running: its current task is · stopped: a
-- dependency failed or was cancelled, so it will not run (reason says which) · succeeded/failed/
-- cancelled: its current task ended so.
create table public.plan_steps (
  plan_id uuid not null references public.plans (id) on delete cascade,
  name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
  position integer not null,
  depends_on text[] not null default '{}',
  -- The task fields each run of the step gets (an /execute request, validated by the API).
  spec jsonb not null,
  stage text check (stage in ('compiling', 'building', 'testing', 'analyzing')),
  -- Regexes (from the step's `inputs` globs) over workspace paths; null: re-run on any change
  -- when the stage is compiling, building or testing.
  input_patterns text[],
  priority integer not null default 0,
  status text not null default 'waiting'
    check (status in ('waiting', 'queued', 'running', 'succeeded', 'failed', 'stopped', 'cancelled')),
  task_id uuid references public.tasks (id) on delete set null,
  runs integer not null default 0,
  -- Set when a file change re-arms the step: its next run goes at high priority.
  boosted boolean not null default false,
  reason text,
  updated_at timestamptz not null default now(),
  primary key (plan_id, name)
);

create table public.plan_events (
  plan_id uuid not null references public.plans (id) on delete cascade,
  seq bigint not null,
  type text not null check (type ~ '^[a-z][a-z_]{0,63}$'),
  data jsonb not null default '{}',
  created_at timestamptz not null default clock_timestamp(),
  primary key (plan_id, seq)
);

create index tasks_plan_step on public.tasks (plan_id, step) where plan_id is not null;
create index tasks_step_history on public.tasks (owner, step, finished_at desc) where status = 'succeeded' and step is not null;

alter table public.workspaces enable row level security;
alter table public.workspace_files enable row level security;
alter table public.plans enable row level security;
alter table public.plan_steps enable row level security;
alter table public.plan_events enable row level security;

create policy "owners read their workspaces" on public.workspaces for select to authenticated
  using (owner = (select auth.uid()));
create policy "owners read their workspace files" on public.workspace_files for select to authenticated
  using (exists (select 1 from public.workspaces w where w.id = workspace_id and w.owner = (select auth.uid())));
create policy "owners read their plans" on public.plans for select to authenticated
  using (owner = (select auth.uid()));
create policy "owners read their plan steps" on public.plan_steps for select to authenticated
  using (exists (select 1 from public.plans p where p.id = plan_id and p.owner = (select auth.uid())));
create policy "owners read their plan events" on public.plan_events for select to authenticated
  using (exists (select 1 from public.plans p where p.id = plan_id and p.owner = (select auth.uid())));

-- Realtime: `plan:<id>`, private, readable by the plan's owner only.
create function cogo.owns_plan_topic(topic text) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.plans p
    where topic ~ '^plan:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      and p.id = substr(topic, 6)::uuid
      and p.owner = (select auth.uid())
  );
$$;

create policy "plan owners receive their plan topics" on realtime.messages for select to authenticated
  using (cogo.owns_plan_topic((select realtime.topic())));

-- ── limits of a stored workspace ───────────────────────────────────────────────────────────────
-- Mirrored by WORKSPACE_LIMITS in functions/_shared/plans/limits.ts.
create function cogo.workspace_limits() returns jsonb language sql immutable set search_path = '' as $$
  select '{"fileBytes": 8388608, "totalBytes": 67108864, "files": 5000}'::jsonb;
$$;

-- Writes files (each {path, content (base64), executable}) and deletes paths, all or nothing, at
-- the workspace's next revision. Paths arrive validated (functions/_shared/paths.ts). Returns the
-- paths that really changed (same content is no change).
create function cogo.put_files_unchecked(p_ws uuid, p_files jsonb, p_deletes text[], p_only_if jsonb default null)
returns text[] language plpgsql security definer set search_path = '' as $$
declare
  v_rev bigint;
  v_changed text[] := '{}';
  v_limits jsonb := cogo.workspace_limits();
  w public.workspaces;
  f jsonb;
  v_content bytea;
  v_exec boolean;
  v_path text;
  v_old public.workspace_files;
begin
  update public.workspaces set revision = revision + 1, updated_at = now() where id = p_ws returning revision into v_rev;
  for f in select * from jsonb_array_elements(coalesce(p_files, '[]')) loop
    v_path := f ->> 'path';
    v_content := decode(f ->> 'content', 'base64');
    v_exec := coalesce((f ->> 'executable')::boolean, false);
    if octet_length(v_content) > (v_limits ->> 'fileBytes')::bigint then
      raise exception 'files: % is % bytes, more than the % a workspace file may hold', v_path, octet_length(v_content), v_limits ->> 'fileBytes'
        using errcode = 'CG413';
    end if;
    select * into v_old from public.workspace_files where workspace_id = p_ws and path = v_path;
    -- A step's save names the version it restored: skip files changed since (p_only_if: path → version, 0 = absent).
    if p_only_if is not null and coalesce(v_old.version, 0) <> coalesce((p_only_if ->> v_path)::bigint, 0) then
      continue;
    end if;
    if v_old.path is not null and v_old.content = v_content and v_old.executable = v_exec then
      continue;
    end if;
    insert into public.workspace_files (workspace_id, path, content, executable, version)
      values (p_ws, v_path, v_content, v_exec, v_rev)
      on conflict (workspace_id, path) do update
        set content = excluded.content, executable = excluded.executable, version = excluded.version, updated_at = now();
    v_changed := v_changed || v_path;
  end loop;
  for v_path in select unnest(coalesce(p_deletes, '{}')) loop
    delete from public.workspace_files
     where workspace_id = p_ws and path = v_path
       and (p_only_if is null or version = coalesce((p_only_if ->> v_path)::bigint, 0));
    if found then v_changed := v_changed || v_path; end if;
  end loop;
  update public.workspaces w2
     set bytes = s.bytes, file_count = s.n
    from (select coalesce(sum(size), 0) bytes, count(*)::integer n from public.workspace_files where workspace_id = p_ws) s
   where w2.id = p_ws returning w2.* into w;
  if w.bytes > (v_limits ->> 'totalBytes')::bigint then
    raise exception 'files: the workspace would hold % bytes, more than its limit of %', w.bytes, v_limits ->> 'totalBytes' using errcode = 'CG413';
  end if;
  if w.file_count > (v_limits ->> 'files')::integer then
    raise exception 'files: the workspace would hold % files, more than its limit of %', w.file_count, v_limits ->> 'files' using errcode = 'CG413';
  end if;
  return v_changed;
end;
$$;

-- ── plan events ────────────────────────────────────────────────────────────────────────────────
create function cogo.append_plan_event(p_plan uuid, p_type text, p_data jsonb) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  v_seq bigint;
  v_at timestamptz := clock_timestamp();
begin
  update public.plans set event_seq = event_seq + 1 where id = p_plan returning event_seq into v_seq;
  insert into public.plan_events (plan_id, seq, type, data, created_at) values (p_plan, v_seq, p_type, p_data, v_at);
  perform realtime.send(jsonb_build_object('planId', p_plan, 'seq', v_seq, 'type', p_type, 'data', p_data, 'timestamp', v_at),
                        p_type, 'plan:' || p_plan, true);
  return v_seq;
end;
$$;

-- Expected duration of a step: the median of the owner's last 20 successful runs of the same step
-- name, command and argv (the rule of cogo.estimate_duration_ms, for a step that has no task yet).
create function cogo.step_eta_ms(p_owner uuid, p_step public.plan_steps) returns bigint
language sql stable security definer set search_path = '' as $$
  select percentile_cont(0.5) within group (order by h.d)::bigint
    from (select extract(epoch from t.finished_at - t.started_at) * 1000 as d from public.tasks t
           where t.owner is not distinct from p_owner and t.step = p_step.name and t.status = 'succeeded'
             and t.command is not distinct from p_step.spec ->> 'command'
             and t.argv is not distinct from (case when p_step.spec ? 'argv' then array(select jsonb_array_elements_text(p_step.spec -> 'argv')) end)
             and t.started_at is not null
           order by t.finished_at desc limit 20) h;
$$;

-- Plan-derived progress: how many steps succeeded of how many, and the summed estimate of the rest.
create function cogo.plan_progress(p_plan uuid, p_current text) returns jsonb
language plpgsql stable security definer set search_path = '' as $$
declare
  p public.plans;
  v_done integer;
  v_eta bigint;
  v_stage text;
begin
  select * into p from public.plans where id = p_plan;
  select count(*) filter (where status = 'succeeded'),
         sum(cogo.step_eta_ms(p.owner, s)) filter (where status <> 'succeeded')
    into v_done, v_eta from public.plan_steps s where s.plan_id = p_plan;
  select stage into v_stage from public.plan_steps where plan_id = p_plan and name = p_current;
  return jsonb_build_object(
    'percentage', round(100.0 * v_done / p.step_count, 1),
    'stage', coalesce(v_stage, 'building'),
    'message', case when v_done >= p.step_count then format('all %s steps succeeded', p.step_count)
                    else format('step %s of %s: %s', least(v_done + 1, p.step_count), p.step_count, p_current) end,
    'etaMs', v_eta,
    'source', 'plan');
end;
$$;

-- ── running steps ──────────────────────────────────────────────────────────────────────────────
-- Creates the next run of a step as a task of the plan's owner. Caller holds the plan row.
create function cogo.enqueue_step(p_plan public.plans, p_step public.plan_steps, p_priority integer) returns uuid
language plpgsql security definer set search_path = '' as $$
declare
  s jsonb := p_step.spec;
  v_task uuid;
begin
  insert into public.tasks (owner, plan_id, step, command, argv, env, priority, required_kind, required_labels,
                            limits, timeout_ms, max_attempts)
  values (
    p_plan.owner, p_plan.id, p_step.name,
    s ->> 'command',
    case when s ? 'argv' then array(select jsonb_array_elements_text(s -> 'argv')) end,
    coalesce(s -> 'env', '{}'),
    p_priority,
    coalesce(s #>> '{requirements,kind}', 'basic'),
    coalesce(array(select jsonb_array_elements_text(s #> '{requirements,labels}')), '{}'),
    coalesce(s -> 'limits', '{}'),
    coalesce((s ->> 'timeoutMs')::integer, 600000),
    coalesce((s ->> 'maxAttempts')::integer, 3)
  ) returning id into v_task;
  update public.plan_steps
     set status = 'queued', task_id = v_task, runs = runs + 1, boosted = false, reason = null, updated_at = now()
   where plan_id = p_plan.id and name = p_step.name;
  perform cogo.append_plan_event(p_plan.id, 'step_status', jsonb_build_object(
    'step', p_step.name, 'status', 'queued', 'previous', p_step.status, 'taskId', v_task, 'run', p_step.runs + 1,
    'priority', p_priority));
  return v_task;
end;
$$;

-- Steps whose position in the re-run priority order is "high": a file change re-runs at this.
create function cogo.rerun_priority() returns integer language sql immutable set search_path = '' as $$ select 900 $$;

-- Queues every waiting step whose dependencies all succeeded. Caller holds the plan row.
create function cogo.release_ready_steps(p_plan public.plans) returns void
language plpgsql security definer set search_path = '' as $$
declare
  s public.plan_steps;
begin
  if p_plan.status = 'cancelled' then return; end if;
  for s in
    select * from public.plan_steps w
     where w.plan_id = p_plan.id and w.status = 'waiting'
       and not exists (select 1 from public.plan_steps d
                        where d.plan_id = w.plan_id and d.name = any(w.depends_on) and d.status <> 'succeeded')
     order by w.position
  loop
    perform cogo.enqueue_step(p_plan, s, case when s.boosted then greatest(s.priority, cogo.rerun_priority()) else s.priority end);
  end loop;
end;
$$;

-- The steps that depend on p_step, directly or not.
create function cogo.step_dependents(p_plan uuid, p_steps text[]) returns setof text
language sql stable security definer set search_path = '' as $$
  with recursive down(name) as (
    select s.name from public.plan_steps s where s.plan_id = p_plan and s.depends_on && p_steps
    union
    select s.name from public.plan_steps s join down on s.plan_id = p_plan and down.name = any(s.depends_on)
  )
  select name from down;
$$;

-- Recomputes the plan's status from its steps; publishes plan_status when it changes.
create function cogo.refresh_plan(p_plan uuid) returns void
language plpgsql security definer set search_path = '' as $$
declare
  p public.plans;
  v_status text;
  v_reason text;
begin
  select * into p from public.plans where id = p_plan;
  if p.status = 'cancelled' then return; end if;
  select case
           when bool_or(status in ('waiting', 'queued', 'running')) then 'running'
           when bool_and(status = 'succeeded') then 'succeeded'
           else 'failed' end,
         string_agg(format('%s %s%s', name, status, coalesce(': ' || reason, '')), '; ' order by position)
           filter (where status in ('failed', 'cancelled'))
    into v_status, v_reason from public.plan_steps where plan_id = p_plan;
  if v_status = p.status and (v_status <> 'failed' or v_reason is not distinct from p.reason) then return; end if;
  update public.plans
     set status = v_status, reason = case when v_status = 'failed' then v_reason end,
         finished_at = case when v_status = 'running' then null else now() end, updated_at = now()
   where id = p_plan;
  perform cogo.append_plan_event(p_plan, 'plan_status', jsonb_strip_nulls(jsonb_build_object(
    'status', v_status, 'previous', p.status, 'reason', case when v_status = 'failed' then v_reason end)));
end;
$$;

-- The plans hook (cogo.task_status_changed): a run of a step changed status. Stale runs (a file
-- change replaced them) and tasks of no plan are ignored.
create function cogo.on_task_status_plans(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
declare
  p public.plans;
  s public.plan_steps;
  v_status text;
  v_reason text;
  v_n integer;
  v_progress jsonb;
begin
  if p_task.plan_id is null then return; end if;
  select * into p from public.plans where id = p_task.plan_id for update;
  select * into s from public.plan_steps where plan_id = p_task.plan_id and name = p_task.step for update;
  if not found or s.task_id is distinct from p_task.id then return; end if;
  v_status := case p_task.status
    when 'queued' then 'queued' when 'claimed' then 'queued'
    when 'running' then 'running' when 'blocked' then 'running' when 'recovering' then 'running'
    when 'succeeded' then 'succeeded' when 'cancelled' then 'cancelled' else 'failed' end;
  if v_status = s.status then return; end if;
  v_reason := case when v_status in ('failed', 'cancelled') then coalesce(p_task.reason, p_task.status::text) end;
  update public.plan_steps set status = v_status, reason = v_reason, updated_at = now()
   where plan_id = s.plan_id and name = s.name;
  perform cogo.append_plan_event(p.id, 'step_status', jsonb_strip_nulls(jsonb_build_object(
    'step', s.name, 'status', v_status, 'previous', s.status, 'taskId', p_task.id, 'run', s.runs,
    'exitCode', p_task.exit_code, 'reason', v_reason)));

  if v_status = 'running' then
    -- "step k of n" on the plan topic and on the step's own task topic.
    v_progress := cogo.plan_progress(p.id, s.name);
    perform cogo.append_plan_event(p.id, 'progress_update', v_progress);
    perform cogo.append_event_unchecked(p_task.id, 'progress_update', v_progress);
  elsif v_status = 'succeeded' then
    perform cogo.release_ready_steps(p);
    perform cogo.append_plan_event(p.id, 'progress_update', cogo.plan_progress(p.id,
      coalesce((select name from public.plan_steps where plan_id = p.id and status in ('queued', 'running') order by position limit 1), s.name)));
  elsif v_status in ('failed', 'cancelled') and p.status <> 'cancelled' then
    with stopped as (
      update public.plan_steps d
         set status = 'stopped', updated_at = now(),
             reason = format('not run: dependency %s %s (%s)', s.name, case v_status when 'failed' then 'failed' else 'was cancelled' end, v_reason)
       where d.plan_id = p.id and d.status = 'waiting' and d.name in (select cogo.step_dependents(p.id, array[s.name]))
      returning d.name, d.reason
    )
    select count(*) into v_n from (
      select cogo.append_plan_event(p.id, 'step_status', jsonb_build_object('step', name, 'status', 'stopped', 'previous', 'waiting', 'reason', reason))
        from stopped) e;
  end if;
  perform cogo.refresh_plan(p.id);
  return;
end;
$$;

-- A step's diagnostics and test results also go to the plan topic (with the step's name), so one
-- subscription follows a whole plan's feedback. Only the step's current run is forwarded. Called
-- by cogo.insert_event for events of those types.
create function cogo.forward_step_feedback(p_task uuid, p_type text, p_data jsonb) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_plan uuid;
  v_step text;
begin
  select t.plan_id, t.step into v_plan, v_step from public.tasks t where t.id = p_task;
  if v_plan is null
     or not exists (select 1 from public.plan_steps s where s.plan_id = v_plan and s.name = v_step and s.task_id = p_task) then
    return;
  end if;
  perform cogo.append_plan_event(v_plan, p_type, p_data || jsonb_build_object('step', v_step, 'taskId', p_task));
end;
$$;

-- Step names and kinds the system reserves for its own tasks (cogo.reserved_step, reserved_kind)
-- are refused for plan steps, whoever creates the plan: SQLSTATE 22023.
create function cogo.refuse_reserved_step() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if cogo.reserved_step(new.name) then
    raise exception 'steps.%.name: step names starting with "analysis-" are reserved for the system''s own tasks (got %)',
      new.position, new.name using errcode = '22023';
  end if;
  if cogo.reserved_kind(new.spec #>> '{requirements,kind}') then
    raise exception 'steps.%.requirements.kind: "%" is reserved for the system''s own tasks (repository analysis: POST /analyze/repository)',
      new.position, new.spec #>> '{requirements,kind}' using errcode = '22023';
  end if;
  return new;
end;
$$;
create trigger plan_steps_reserved_names before insert on public.plan_steps
  for each row execute function cogo.refuse_reserved_step();

-- ── user-facing functions ──────────────────────────────────────────────────────────────────────
-- spec: {name?, workspaceId?, files?: [{path, content (base64), executable}], idempotencyKey?,
--        steps: [{name, dependsOn[], spec, stage, inputPatterns, priority}]} (validated and
-- normalised by functions/_shared/plans/spec.ts: names unique, dependencies known, no cycle).
create function cogo.create_plan(p_spec jsonb) returns public.plans
language plpgsql security definer set search_path = '' as $$
declare
  v_owner uuid := auth.uid();
  v_ws uuid := (p_spec ->> 'workspaceId')::uuid;
  p public.plans;
  st jsonb;
  i integer := 0;
begin
  if not cogo.caller_may_use(v_owner) then
    raise exception 'a user token or the service key is required to create plans' using errcode = 'CG401';
  end if;
  if p_spec ? 'idempotencyKey' then
    -- Requests with one key wait for each other, so the second finds the first's plan.
    perform pg_advisory_xact_lock(hashtextextended('cogo.plan:' || coalesce(v_owner::text, '') || ':' || (p_spec ->> 'idempotencyKey'), 0));
    select * into p from public.plans
     where coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(v_owner, '00000000-0000-0000-0000-000000000000'::uuid)
       and idempotency_key = p_spec ->> 'idempotencyKey';
    if found then return p; end if;
  end if;
  if v_ws is null then
    insert into public.workspaces (owner) values (v_owner) returning id into v_ws;
  else
    perform 1 from public.workspaces where id = v_ws and owner is not distinct from v_owner for update;
    if not found then raise exception 'workspaceId: no workspace % (or it belongs to someone else)', v_ws using errcode = 'CG404'; end if;
  end if;
  if jsonb_array_length(coalesce(p_spec -> 'files', '[]')) > 0 then
    perform cogo.put_files_unchecked(v_ws, p_spec -> 'files', null);
  end if;
  insert into public.plans (owner, name, workspace_id, step_count, idempotency_key)
    values (v_owner, p_spec ->> 'name', v_ws, jsonb_array_length(p_spec -> 'steps'), p_spec ->> 'idempotencyKey')
    returning * into p;
  for st in select * from jsonb_array_elements(p_spec -> 'steps') loop
    insert into public.plan_steps (plan_id, name, position, depends_on, spec, stage, input_patterns, priority)
    values (p.id, st ->> 'name', i,
            array(select jsonb_array_elements_text(st -> 'dependsOn')),
            st -> 'spec', st ->> 'stage',
            case when st ? 'inputPatterns' then array(select jsonb_array_elements_text(st -> 'inputPatterns')) end,
            coalesce((st ->> 'priority')::integer, 0));
    i := i + 1;
  end loop;
  perform cogo.append_plan_event(p.id, 'plan_status', jsonb_build_object('status', 'running', 'steps', p.step_count));
  perform cogo.release_ready_steps(p);
  select * into p from public.plans where id = p.id;
  return p;
end;
$$;

-- Cancels a plan: waiting steps at once, queued and running runs through cancel_task.
create function cogo.cancel_plan(p_plan uuid) returns public.plans
language plpgsql security definer set search_path = '' as $$
declare
  p public.plans;
  v_task uuid;
  v_n integer;
begin
  perform 1 from public.tasks where plan_id = p_plan and not (status = any(cogo.final_states()))
    order by id for update;
  select * into p from public.plans where id = p_plan for update;
  if not found or not cogo.caller_may_use(p.owner) then return null; end if;
  if p.status = 'cancelled' then return p; end if;
  update public.plans set status = 'cancelled', reason = 'cancelled by its owner', finished_at = now(), updated_at = now()
   where id = p_plan returning * into p;
  perform cogo.append_plan_event(p_plan, 'plan_status', jsonb_build_object('status', 'cancelled', 'reason', p.reason));
  with c as (
    update public.plan_steps set status = 'cancelled', reason = 'plan cancelled before the step started', updated_at = now()
     where plan_id = p_plan and status = 'waiting' returning name
  )
  select count(*) into v_n from (
    select cogo.append_plan_event(p_plan, 'step_status', jsonb_build_object('step', name, 'status', 'cancelled', 'previous', 'waiting',
                                                                            'reason', 'plan cancelled before the step started')) from c) e;
  for v_task in select task_id from public.plan_steps where plan_id = p_plan and status in ('queued', 'running') loop
    perform cogo.cancel_task(v_task);
  end loop;
  return p;
end;
$$;

-- Waiting steps that can never run (a dependency failed, was cancelled or stopped, and is not
-- re-armed) become stopped, repeatedly, so that stopping flows down the DAG. Caller holds the plan.
create function cogo.stop_blocked_steps(p_plan uuid) returns void
language plpgsql security definer set search_path = '' as $$
declare
  r record;
  v_more boolean := true;
begin
  while v_more loop
    v_more := false;
    for r in
      select w.name, w.status, d.name as dep, d.status as dep_status, d.reason as dep_reason
        from public.plan_steps w
        join lateral (select * from public.plan_steps d
                       where d.plan_id = w.plan_id and d.name = any(w.depends_on) and d.status in ('failed', 'stopped', 'cancelled')
                       order by d.position limit 1) d on true
       where w.plan_id = p_plan and w.status = 'waiting'
    loop
      update public.plan_steps
         set status = 'stopped', updated_at = now(),
             reason = format('not run: dependency %s %s (%s)', r.dep,
                             case r.dep_status when 'failed' then 'failed' when 'cancelled' then 'was cancelled' else 'was not run' end, r.dep_reason)
       where plan_id = p_plan and name = r.name;
      perform cogo.append_plan_event(p_plan, 'step_status', jsonb_build_object('step', r.name, 'status', 'stopped', 'previous', 'waiting',
        'reason', format('not run: dependency %s %s', r.dep, r.dep_status)));
      v_more := true;
    end loop;
  end loop;
end;
$$;

-- Takes the locks a file change needs in the global order (tasks, plans, then the workspace row,
-- which put_files_unchecked updates): a worker saving a step's files holds its task and plan
-- before the workspace, so taking the workspace first here could deadlock with it.
create function cogo.lock_workspace_plans(p_ws uuid) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform 1 from public.tasks t join public.plans pl on pl.id = t.plan_id
    where pl.workspace_id = p_ws and pl.status <> 'cancelled' and not (t.status = any(cogo.final_states()))
    order by t.id for update of t;
  perform 1 from public.plans where workspace_id = p_ws and status <> 'cancelled' order by id for update;
end;
$$;

-- Re-arms the steps a change of `p_paths` affects in every live plan on the workspace: those whose
-- inputs match, or (no inputs given) whose stage is compiling, building or testing; and everything
-- downstream of them. Stale runs are cancelled; a re-armed step whose dependencies all succeeded
-- is queued at once at high priority, the others wait for it. Returns [{planId, step, status, taskId}].
create function cogo.rerun_for_changes(p_ws uuid, p_paths text[]) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  p public.plans;
  pp public.plans;
  v_hit text[];
  v_all text[];
  s public.plan_steps;
  v_out jsonb := '[]';
  v_task uuid;
begin
  if cardinality(p_paths) = 0 then return v_out; end if;
  perform cogo.lock_workspace_plans(p_ws);
  for p in select * from public.plans where workspace_id = p_ws and status <> 'cancelled' order by created_at for update loop
    select coalesce(array_agg(ps.name), '{}') into v_hit from public.plan_steps ps
     where ps.plan_id = p.id
       and case when ps.input_patterns is null then ps.stage in ('compiling', 'building', 'testing')
                else exists (select 1 from unnest(p_paths) c, unnest(ps.input_patterns) r where c ~ r) end;
    if cardinality(v_hit) = 0 then continue; end if;
    v_all := v_hit || array(select cogo.step_dependents(p.id, v_hit));
    for s in select * from public.plan_steps where plan_id = p.id and name = any(v_all) order by position for update loop
      -- Detach the run first, so the plans hook takes its cancellation for a stale run.
      update public.plan_steps set status = 'waiting', task_id = null, boosted = true, reason = null, updated_at = now()
       where plan_id = p.id and name = s.name;
      if s.task_id is not null and s.status in ('queued', 'running') then
        perform cogo.cancel_task(s.task_id);
      end if;
      if s.status <> 'waiting' then
        perform cogo.append_plan_event(p.id, 'step_status', jsonb_build_object(
          'step', s.name, 'status', 'waiting', 'previous', s.status, 'reason', 'workspace changed: ' || array_to_string(p_paths[1:5], ', ')));
      end if;
    end loop;
    update public.plans set status = 'running', reason = null, finished_at = null, updated_at = now() where id = p.id and status <> 'running';
    if found then
      perform cogo.append_plan_event(p.id, 'plan_status', jsonb_build_object('status', 'running', 'previous', p.status, 'reason', 'workspace changed'));
    end if;
    select * into pp from public.plans where id = p.id;
    perform cogo.release_ready_steps(pp);
    -- A re-armed step behind a dependency that failed and was not re-armed would wait forever.
    perform cogo.stop_blocked_steps(p.id);
    perform cogo.refresh_plan(p.id);
    for s in select * from public.plan_steps where plan_id = p.id and name = any(v_all) order by position loop
      v_out := v_out || jsonb_build_object('planId', p.id, 'step', s.name, 'status', s.status, 'taskId', s.task_id);
    end loop;
  end loop;
  return v_out;
end;
$$;

-- Files API: write and delete (all or nothing), then re-run what the change affects.
create function cogo.write_files(p_ws uuid, p_files jsonb, p_deletes text[]) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  w public.workspaces;
  v_changed text[];
begin
  select * into w from public.workspaces where id = p_ws;
  if not found or not cogo.caller_may_use(w.owner) then
    raise exception 'workspace % not found', p_ws using errcode = 'CG404';
  end if;
  perform cogo.lock_workspace_plans(p_ws);
  v_changed := cogo.put_files_unchecked(p_ws, p_files, p_deletes);
  select * into w from public.workspaces where id = p_ws;
  return jsonb_build_object('workspaceId', p_ws, 'revision', w.revision, 'bytes', w.bytes, 'files', w.file_count,
                            'changed', to_jsonb(v_changed), 'reruns', cogo.rerun_for_changes(p_ws, v_changed));
end;
$$;

-- ── worker functions: restore before a step, save after it (fenced like every worker write) ───
create function cogo.task_workspace_files(p_task uuid, p_attempt integer, p_worker uuid)
returns table (path text, content bytea, executable boolean, version bigint)
language plpgsql security definer set search_path = '' as $$
declare
  t public.tasks;
begin
  t := cogo.fence(p_task, p_attempt, p_worker);
  return query select f.path, f.content, f.executable, f.version
    from public.workspace_files f join public.plans p on p.workspace_id = f.workspace_id
   where p.id = t.plan_id order by f.path;
end;
$$;

-- Saves what a step changed: p_files as in put_files_unchecked, each only if the stored file is
-- still at the version the step restored (p_base: path → version, 0 = did not exist).
create function cogo.save_task_files(p_task uuid, p_attempt integer, p_worker uuid, p_files jsonb, p_deletes text[], p_base jsonb)
returns text[] language plpgsql security definer set search_path = '' as $$
declare
  t public.tasks;
  v_ws uuid;
begin
  t := cogo.fence(p_task, p_attempt, p_worker);
  select workspace_id into v_ws from public.plans where id = t.plan_id for update;
  if v_ws is null then return '{}'; end if;
  return cogo.put_files_unchecked(v_ws, p_files, p_deletes, p_base);
end;
$$;
