-- Tenant quotas and rate limits (issue 18): one tenant cannot flood the API or fill the database.
-- Per tenant (a user; ownerless requests are the operator's and are never limited):
--   * rate limits: a token bucket per route class (execute, plans, analyses, files), taken in the
--     transaction of the write, so a refused request writes nothing and an accepted one is counted
--     exactly once (429 + Retry-After, SQLSTATE CG429);
--   * queued tasks: at most maxQueuedTasks queued at once; a request (a plan counts all its
--     steps) that would pass it is refused whole (429, CGQ29);
--   * stored bytes: task files + env, stdin, output, artifacts, workspace files, analysis blobs, kept
--     in a per-tenant counter (cogo.tenant_usage) by triggers on those tables, so deletes (retention)
--     give the bytes back; a write that would take the tenant over is refused (413, CGQ13). Output a
--     running task writes past the quota is kept (a task's output is bounded already): the tenant's
--     next request is refused.
-- The four writing functions (enqueue_task, create_plan, start_analysis, write_files) and
-- write_stdin keep their bodies under a new name (`…_unmetered`, callable by the service role
-- only) and the public name becomes a wrapper: meter_begin (bucket, tenant lock, usage before) →
-- the write → meter_end.

-- ── limits: more columns on cogo.tenant_limits (null: the default) ─────────────────────────────
alter table cogo.tenant_limits
  add column execute_per_second double precision check (execute_per_second > 0 and execute_per_second <= 1000000),
  add column execute_burst integer check (execute_burst between 1 and 1000000),
  add column plans_per_second double precision check (plans_per_second > 0 and plans_per_second <= 1000000),
  add column plans_burst integer check (plans_burst between 1 and 1000000),
  add column analyses_per_second double precision check (analyses_per_second > 0 and analyses_per_second <= 1000000),
  add column analyses_burst integer check (analyses_burst between 1 and 1000000),
  add column files_per_second double precision check (files_per_second > 0 and files_per_second <= 1000000),
  add column files_burst integer check (files_burst between 1 and 1000000),
  add column max_queued_tasks integer check (max_queued_tasks between 0 and 100000000),
  add column max_stored_bytes bigint check (max_stored_bytes >= 0);

-- Every limit a tenant has, by its JSON key: the column, whether it is a whole number, and its range.
create function cogo.tenant_limit_keys() returns table (key text, col text, whole boolean, min_value double precision, max_value double precision)
language sql immutable set search_path = '' as $$
  values ('maxRunning', 'max_running', true, 1, 100000),
         ('executePerSecond', 'execute_per_second', false, 0, 1000000),
         ('executeBurst', 'execute_burst', true, 1, 1000000),
         ('plansPerSecond', 'plans_per_second', false, 0, 1000000),
         ('plansBurst', 'plans_burst', true, 1, 1000000),
         ('analysesPerSecond', 'analyses_per_second', false, 0, 1000000),
         ('analysesBurst', 'analyses_burst', true, 1, 1000000),
         ('filesPerSecond', 'files_per_second', false, 0, 1000000),
         ('filesBurst', 'files_burst', true, 1, 1000000),
         ('maxQueuedTasks', 'max_queued_tasks', true, 0, 100000000),
         ('maxStoredBytes', 'max_stored_bytes', true, 0, 9.0e18)
$$;

-- The defaults, one place (README "Tenant quotas and rate limits"). Bursts are generous so an agent
-- (or the test suite) submitting a batch of tens of tasks at once is never refused; the rates stop a
-- sustained flood. maxRunning null: a share of the kind's live capacity (cogo.default_running_share).
create function cogo.default_tenant_limits() returns jsonb
language sql immutable set search_path = '' as $$
  select '{"maxRunning": null,
           "executePerSecond": 20, "executeBurst": 200,
           "plansPerSecond": 5, "plansBurst": 50,
           "analysesPerSecond": 2, "analysesBurst": 20,
           "filesPerSecond": 20, "filesBurst": 200,
           "maxQueuedTasks": 1000, "maxStoredBytes": 10737418240}'::jsonb
$$;

-- Only what the operator set for a tenant, by key ({} when nothing).
create function cogo.tenant_limit_overrides(p_owner uuid) returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce((
    select jsonb_object_agg(k.key, to_jsonb(l) -> k.col) filter (where to_jsonb(l) -> k.col <> 'null'::jsonb)
      from cogo.tenant_limits l cross join cogo.tenant_limit_keys() k
     where l.owner = p_owner), '{}')
$$;

-- A tenant's limits in force: the defaults, overridden by what the operator set.
create function cogo.tenant_limits_of(p_owner uuid) returns jsonb
language sql stable security definer set search_path = '' as $$
  select cogo.default_tenant_limits() || cogo.tenant_limit_overrides(p_owner)
$$;

-- Same signature and behaviour as in 20261206000100_fair_claims.sql, with every key above.
create or replace function cogo.set_tenant_limits(p_owner uuid, p_limits jsonb) returns cogo.tenant_limits
language plpgsql security definer set search_path = '' as $$
declare
  v_row cogo.tenant_limits;
  v_unknown text;
  v_known text := (select string_agg(key, ', ') from cogo.tenant_limit_keys());
  k record;
  v jsonb;
  v_patch jsonb := '{}';
begin
  if coalesce(auth.role(), 'service_role') <> 'service_role' then
    raise exception 'tenant limits are set by the operator (service role)' using errcode = '42501';
  end if;
  if p_owner is null then
    raise exception 'set_tenant_limits: owner is required' using errcode = '22023';
  end if;
  if p_limits is null or jsonb_typeof(p_limits) <> 'object' then
    raise exception 'set_tenant_limits: limits must be a JSON object such as {"maxRunning": 8}' using errcode = '22023';
  end if;
  select j into v_unknown from jsonb_object_keys(p_limits) j
   where j not in (select key from cogo.tenant_limit_keys()) order by j limit 1;
  if v_unknown is not null then
    raise exception 'set_tenant_limits: unknown limit "%" (known: %)', v_unknown, v_known using errcode = '22023';
  end if;
  for k in select * from cogo.tenant_limit_keys() where p_limits ? key loop
    v := p_limits -> k.key;
    if jsonb_typeof(v) <> 'null' then
      if k.whole and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric < k.min_value::numeric
                      or (v #>> '{}')::numeric > k.max_value::numeric or (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric)) then
        raise exception 'set_tenant_limits: % is a whole number of at least % (at most %; null for the default), got %',
          k.key, k.min_value, k.max_value::numeric, v using errcode = '22023';
      end if;
      if not k.whole and (jsonb_typeof(v) <> 'number' or (v #>> '{}')::numeric <= k.min_value::numeric
                          or (v #>> '{}')::numeric > k.max_value::numeric) then
        raise exception 'set_tenant_limits: % is a number of requests per second greater than 0 (at most %; null for the default), got %',
          k.key, k.max_value, v using errcode = '22023';
      end if;
    end if;
    v_patch := v_patch || jsonb_build_object(k.col, v);
  end loop;
  insert into cogo.tenant_limits (owner) values (p_owner) on conflict (owner) do nothing;
  select * into v_row from cogo.tenant_limits where owner = p_owner for update;
  v_row := jsonb_populate_record(v_row, v_patch);
  update cogo.tenant_limits l
     set max_running = v_row.max_running,
         execute_per_second = v_row.execute_per_second, execute_burst = v_row.execute_burst,
         plans_per_second = v_row.plans_per_second, plans_burst = v_row.plans_burst,
         analyses_per_second = v_row.analyses_per_second, analyses_burst = v_row.analyses_burst,
         files_per_second = v_row.files_per_second, files_burst = v_row.files_burst,
         max_queued_tasks = v_row.max_queued_tasks, max_stored_bytes = v_row.max_stored_bytes,
         updated_at = now()
   where l.owner = p_owner
  returning * into v_row;
  return v_row;
end;
$$;

-- ── rate limits: token buckets ────────────────────────────────────────────────────────────────
-- The route each class limits, for messages and GET /usage.
create function cogo.rate_classes() returns table (class text, route text)
language sql immutable set search_path = '' as $$
  values ('execute', '/execute'), ('plans', '/plans'), ('analyses', '/analyze/repository'), ('files', '/files')
$$;

-- One row per (tenant, class) that has made a request: the tokens left when it was last refilled.
-- Tokens refill continuously at the class's rate up to its burst; a request takes one.
create table cogo.rate_buckets (
  owner uuid not null,
  class text not null check (class in ('execute', 'plans', 'analyses', 'files')),
  tokens double precision not null,
  refilled_at timestamptz not null,
  primary key (owner, class)
);
alter table cogo.rate_buckets enable row level security;
create policy rate_buckets_no_client_access on cogo.rate_buckets
  for all to anon, authenticated using (false) with check (false);

-- Takes one token of the caller's bucket for p_class, or raises CG429 (DETAIL: JSON naming the limit
-- and retryAfterSeconds). One upsert: the bucket's row stays locked until the request's transaction
-- ends, so concurrent requests of one tenant take tokens one after another and a bucket of k lets
-- exactly k through; a request that fails later gives its token back with its rollback.
create function cogo.take_rate_token(p_class text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_owner uuid := auth.uid();
  v_limits jsonb;
  v_rate double precision;
  v_burst double precision;
  v_tokens double precision;
  v_wait integer;
  v_route text := (select route from cogo.rate_classes() where class = p_class);
begin
  if v_owner is null then
    return; -- the operator (service role, direct SQL): not rate limited
  end if;
  v_limits := cogo.tenant_limits_of(v_owner);
  v_rate := (v_limits ->> (p_class || 'PerSecond'))::double precision;
  v_burst := (v_limits ->> (p_class || 'Burst'))::double precision;
  -- clock_timestamp() in the statement, not before it: a request that waited for the row lock is
  -- credited up to the moment it got it.
  insert into cogo.rate_buckets as b (owner, class, tokens, refilled_at)
  values (v_owner, p_class, v_burst - 1, clock_timestamp())
  on conflict (owner, class) do update
     set tokens = least(v_burst, b.tokens + v_rate * greatest(0, extract(epoch from clock_timestamp() - b.refilled_at))) - 1,
         refilled_at = greatest(b.refilled_at, clock_timestamp())
   where least(v_burst, b.tokens + v_rate * greatest(0, extract(epoch from clock_timestamp() - b.refilled_at))) >= 1
  returning tokens into v_tokens;
  if found then
    return;
  end if;
  select least(v_burst, b.tokens + v_rate * greatest(0, extract(epoch from clock_timestamp() - b.refilled_at))) into v_tokens
    from cogo.rate_buckets b where b.owner = v_owner and b.class = p_class;
  v_wait := greatest(1, ceil((1 - coalesce(v_tokens, 0)) / v_rate))::integer;
  raise exception 'rate limit for %: % requests per second (burst %) exceeded; retry after % s', v_route, v_rate, v_burst, v_wait
    using errcode = 'CG429',
          detail = jsonb_build_object('limit', p_class || 'PerSecond', 'route', v_route, 'perSecond', v_rate,
                                      'burst', v_burst, 'retryAfterSeconds', v_wait)::text;
end;
$$;

-- ── stored bytes: one counter row per tenant, kept by triggers ─────────────────────────────────
-- Summing task_output etc. per request would read a tenant's whole history; the triggers below keep
-- these sums in the transaction of every insert and delete instead. Ownerless rows are not counted.
create table cogo.tenant_usage (
  owner uuid primary key,
  task_bytes bigint not null default 0,      -- tasks.files + tasks.env (as JSON text)
  stdin_bytes bigint not null default 0,     -- task_stdin.data
  output_bytes bigint not null default 0,    -- task_output.data
  artifact_bytes bigint not null default 0,  -- task_artifacts.content
  workspace_bytes bigint not null default 0, -- workspaces.bytes (its files' sizes)
  analysis_bytes bigint not null default 0,  -- analysis_blobs.content of the tenant's repositories
  updated_at timestamptz not null default now()
);
alter table cogo.tenant_usage enable row level security;
create policy tenant_usage_no_client_access on cogo.tenant_usage
  for all to anon, authenticated using (false) with check (false);

create function cogo.stored_bytes(u cogo.tenant_usage) returns bigint
language sql immutable set search_path = '' as $$
  select coalesce(u.task_bytes + u.stdin_bytes + u.output_bytes + u.artifact_bytes + u.workspace_bytes + u.analysis_bytes, 0)
$$;

-- The size a task's own inputs count for (their JSON text: deterministic, unlike the stored size).
create function cogo.task_input_bytes(p_files jsonb, p_env jsonb) returns bigint
language sql immutable set search_path = '' as $$
  select coalesce(octet_length(p_files::text), 0)::bigint + coalesce(octet_length(p_env::text), 0)
$$;

-- Adds deltas to one tenant's counters (row triggers; statement triggers upsert many at once, in
-- owner order so two statements never lock two tenants' rows in opposite orders).
create function cogo.add_usage(p_owner uuid, p_task bigint, p_stdin bigint, p_output bigint, p_artifact bigint,
                               p_workspace bigint, p_analysis bigint) returns void
language sql security definer set search_path = '' as $$
  insert into cogo.tenant_usage as u (owner, task_bytes, stdin_bytes, output_bytes, artifact_bytes, workspace_bytes, analysis_bytes)
  select p_owner, p_task, p_stdin, p_output, p_artifact, p_workspace, p_analysis where p_owner is not null
  on conflict (owner) do update
    set task_bytes = u.task_bytes + excluded.task_bytes, stdin_bytes = u.stdin_bytes + excluded.stdin_bytes,
        output_bytes = u.output_bytes + excluded.output_bytes, artifact_bytes = u.artifact_bytes + excluded.artifact_bytes,
        workspace_bytes = u.workspace_bytes + excluded.workspace_bytes, analysis_bytes = u.analysis_bytes + excluded.analysis_bytes,
        updated_at = now()
$$;

-- tasks: inputs on insert (statement level: plan_analysis inserts batches), on a change of files/env,
-- and before a delete everything the task holds (its output, stdin and artifacts go with it by
-- cascade, when the task row is already gone and their own triggers can no longer find the owner).
create function cogo.usage_tasks_inserted() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into cogo.tenant_usage as u (owner, task_bytes)
  select n.owner, sum(cogo.task_input_bytes(n.files, n.env)) from new_rows n where n.owner is not null group by n.owner order by n.owner
  on conflict (owner) do update set task_bytes = u.task_bytes + excluded.task_bytes, updated_at = now();
  return null;
end;
$$;
create trigger tasks_usage_insert after insert on public.tasks
  referencing new table as new_rows for each statement execute function cogo.usage_tasks_inserted();

create function cogo.usage_task_changed() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.add_usage(new.owner, cogo.task_input_bytes(new.files, new.env) - cogo.task_input_bytes(old.files, old.env), 0, 0, 0, 0, 0);
  return null;
end;
$$;
create trigger tasks_usage_update after update of files, env on public.tasks
  for each row when (new.owner is not null) execute function cogo.usage_task_changed();

create function cogo.usage_task_deleting() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.add_usage(old.owner,
    -cogo.task_input_bytes(old.files, old.env),
    -(select coalesce(sum(octet_length(s.data)), 0) from public.task_stdin s where s.task_id = old.id),
    -(select coalesce(sum(octet_length(o.data)), 0) from public.task_output o where o.task_id = old.id),
    -(select coalesce(sum(octet_length(a.content)), 0) from public.task_artifacts a where a.task_id = old.id),
    0, 0);
  return old;
end;
$$;
create trigger tasks_usage_delete before delete on public.tasks
  for each row when (old.owner is not null) execute function cogo.usage_task_deleting();

-- task_output, task_stdin, task_artifacts: per statement (output arrives in batches, retention
-- deletes in batches), owner through the task. p_sign is +1 for inserts, -1 for deletes.
create function cogo.usage_task_rows() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_sign integer := case when tg_op = 'INSERT' then 1 else -1 end;
begin
  if tg_table_name = 'task_output' then
    insert into cogo.tenant_usage as u (owner, output_bytes)
    select t.owner, v_sign * sum(octet_length(r.data)) from changed r join public.tasks t on t.id = r.task_id
     where t.owner is not null group by t.owner order by t.owner
    on conflict (owner) do update set output_bytes = u.output_bytes + excluded.output_bytes, updated_at = now();
  elsif tg_table_name = 'task_stdin' then
    insert into cogo.tenant_usage as u (owner, stdin_bytes)
    select t.owner, v_sign * sum(octet_length(r.data)) from changed r join public.tasks t on t.id = r.task_id
     where t.owner is not null group by t.owner order by t.owner
    on conflict (owner) do update set stdin_bytes = u.stdin_bytes + excluded.stdin_bytes, updated_at = now();
  else
    insert into cogo.tenant_usage as u (owner, artifact_bytes)
    select t.owner, v_sign * coalesce(sum(octet_length(r.content)), 0) from changed r join public.tasks t on t.id = r.task_id
     where t.owner is not null group by t.owner order by t.owner
    on conflict (owner) do update set artifact_bytes = u.artifact_bytes + excluded.artifact_bytes, updated_at = now();
  end if;
  return null;
end;
$$;
create trigger task_output_usage_insert after insert on public.task_output
  referencing new table as changed for each statement execute function cogo.usage_task_rows();
create trigger task_output_usage_delete after delete on public.task_output
  referencing old table as changed for each statement execute function cogo.usage_task_rows();
create trigger task_stdin_usage_insert after insert on public.task_stdin
  referencing new table as changed for each statement execute function cogo.usage_task_rows();
create trigger task_stdin_usage_delete after delete on public.task_stdin
  referencing old table as changed for each statement execute function cogo.usage_task_rows();
create trigger task_artifacts_usage_insert after insert on public.task_artifacts
  referencing new table as changed for each statement execute function cogo.usage_task_rows();
create trigger task_artifacts_usage_delete after delete on public.task_artifacts
  referencing old table as changed for each statement execute function cogo.usage_task_rows();

-- An artifact collected again (cogo.store_artifact upserts) replaces its bytes.
create function cogo.usage_artifact_changed() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.add_usage((select owner from public.tasks where id = new.task_id), 0, 0, 0,
                         coalesce(octet_length(new.content), 0)::bigint - coalesce(octet_length(old.content), 0), 0, 0);
  return null;
end;
$$;
create trigger task_artifacts_usage_update after update of content on public.task_artifacts
  for each row execute function cogo.usage_artifact_changed();

-- workspaces.bytes is its files' total (cogo.put_files_unchecked keeps it); its changes are the usage.
create function cogo.usage_workspace_changed() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op = 'DELETE' then
    perform cogo.add_usage(old.owner, 0, 0, 0, 0, -old.bytes, 0);
  elsif tg_op = 'INSERT' then
    perform cogo.add_usage(new.owner, 0, 0, 0, 0, new.bytes, 0);
  else
    perform cogo.add_usage(new.owner, 0, 0, 0, 0, new.bytes - old.bytes, 0);
  end if;
  return null;
end;
$$;
create trigger workspaces_usage_insert after insert on public.workspaces
  for each row when (new.owner is not null and new.bytes <> 0) execute function cogo.usage_workspace_changed();
create trigger workspaces_usage_update after update of bytes on public.workspaces
  for each row when (new.owner is not null and new.bytes is distinct from old.bytes) execute function cogo.usage_workspace_changed();
create trigger workspaces_usage_delete after delete on public.workspaces
  for each row when (old.owner is not null) execute function cogo.usage_workspace_changed();

-- analysis_blobs: owner through the repository; a repository's delete takes its blobs' bytes first
-- (they go by cascade once the repository row is gone).
create function cogo.usage_blob_rows() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_sign integer := case when tg_op = 'INSERT' then 1 else -1 end;
begin
  insert into cogo.tenant_usage as u (owner, analysis_bytes)
  select r.owner, v_sign * coalesce(sum(octet_length(b.content)), 0) from changed b join public.analysis_repos r on r.id = b.repo_id
   where r.owner is not null group by r.owner order by r.owner
  on conflict (owner) do update set analysis_bytes = u.analysis_bytes + excluded.analysis_bytes, updated_at = now();
  return null;
end;
$$;
create trigger analysis_blobs_usage_insert after insert on public.analysis_blobs
  referencing new table as changed for each statement execute function cogo.usage_blob_rows();
create trigger analysis_blobs_usage_delete after delete on public.analysis_blobs
  referencing old table as changed for each statement execute function cogo.usage_blob_rows();

create function cogo.usage_blob_changed() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.add_usage((select owner from public.analysis_repos where id = new.repo_id), 0, 0, 0, 0, 0,
                         coalesce(octet_length(new.content), 0)::bigint - coalesce(octet_length(old.content), 0));
  return null;
end;
$$;
create trigger analysis_blobs_usage_update after update of content on public.analysis_blobs
  for each row execute function cogo.usage_blob_changed();

create function cogo.usage_repo_deleting() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.add_usage(old.owner, 0, 0, 0, 0, 0,
    -(select coalesce(sum(octet_length(b.content)), 0) from public.analysis_blobs b where b.repo_id = old.id));
  return old;
end;
$$;
create trigger analysis_repos_usage_delete before delete on public.analysis_repos
  for each row when (old.owner is not null) execute function cogo.usage_repo_deleting();

-- What the counters should hold, summed from the tables: the backfill below, and tests compare.
create function cogo.tenant_usage_recount(p_owner uuid) returns cogo.tenant_usage
language sql stable security definer set search_path = '' as $$
  select p_owner,
         (select coalesce(sum(cogo.task_input_bytes(t.files, t.env)), 0) from public.tasks t where t.owner = p_owner)::bigint,
         (select coalesce(sum(octet_length(s.data)), 0) from public.task_stdin s join public.tasks t on t.id = s.task_id where t.owner = p_owner)::bigint,
         (select coalesce(sum(octet_length(o.data)), 0) from public.task_output o join public.tasks t on t.id = o.task_id where t.owner = p_owner)::bigint,
         (select coalesce(sum(octet_length(a.content)), 0) from public.task_artifacts a join public.tasks t on t.id = a.task_id where t.owner = p_owner)::bigint,
         (select coalesce(sum(w.bytes), 0) from public.workspaces w where w.owner = p_owner)::bigint,
         (select coalesce(sum(octet_length(b.content)), 0) from public.analysis_blobs b join public.analysis_repos r on r.id = b.repo_id where r.owner = p_owner)::bigint,
         now()
$$;

insert into cogo.tenant_usage
select (cogo.tenant_usage_recount(o.owner)).*
  from (select owner from public.tasks where owner is not null
        union select owner from public.workspaces where owner is not null
        union select owner from public.analysis_repos where owner is not null) o;

-- ── queued tasks ──────────────────────────────────────────────────────────────────────────────
-- A tenant's queued count reads at most its quota's worth of entries of this index.
create index tasks_queued_by_owner on public.tasks (owner) where status = 'queued' and owner is not null;

-- ── the meter around each write ───────────────────────────────────────────────────────────────
-- Before a write: the bucket (none for a null class), then the tenant's lock (a tenant's metered writes run one at a time,
-- so two requests cannot both pass the quota checks), then its queued tasks and stored bytes.
create function cogo.meter_begin(p_class text, out queued bigint, out stored bigint)
language plpgsql security definer set search_path = '' as $$
declare
  v_owner uuid := auth.uid();
begin
  if v_owner is null then
    return;
  end if;
  if p_class is not null then
    perform cogo.take_rate_token(p_class);
  end if;
  perform pg_advisory_xact_lock(hashtextextended('cogo.tenant_quota:' || v_owner::text, 0));
  select count(*) into queued from public.tasks where owner = v_owner and status = 'queued';
  select cogo.stored_bytes(u) into stored from cogo.tenant_usage u where u.owner = v_owner;
  stored := coalesce(stored, 0);
end;
$$;

-- After a write, in its transaction: refuses it (and so all of it) when it took the tenant past a
-- quota. p_pending: tasks it will queue later (a plan's waiting steps); p_added_bytes: whether it
-- stored bytes (a write that only frees space is never refused). Only growth caused past the quota
-- is refused: a tenant already over it (output of running tasks) may still delete and cancel.
create function cogo.meter_end(p_queued_before bigint, p_stored_before bigint, p_pending integer, p_added_bytes boolean) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_owner uuid := auth.uid();
  v_limits jsonb;
  v_queued bigint;
  v_stored bigint;
  v_max bigint;
begin
  if v_owner is null then
    return;
  end if;
  v_limits := cogo.tenant_limits_of(v_owner);
  select count(*) + coalesce(p_pending, 0) into v_queued from public.tasks where owner = v_owner and status = 'queued';
  v_max := (v_limits ->> 'maxQueuedTasks')::bigint;
  if v_queued > v_max and v_queued > p_queued_before then
    raise exception 'queued-task quota: at most % queued tasks; you have % and this request would make it %', v_max, p_queued_before, v_queued
      using errcode = 'CGQ29',
            detail = jsonb_build_object('quota', 'maxQueuedTasks', 'limit', v_max, 'queued', p_queued_before, 'requested', v_queued - p_queued_before)::text;
  end if;
  if p_added_bytes then
    select cogo.stored_bytes(u) into v_stored from cogo.tenant_usage u where u.owner = v_owner;
    v_max := (v_limits ->> 'maxStoredBytes')::bigint;
    if v_stored > v_max and v_stored > p_stored_before then
      raise exception 'stored-bytes quota: at most % bytes; you store % and this request would make it %', v_max, p_stored_before, v_stored
        using errcode = 'CGQ13',
              detail = jsonb_build_object('quota', 'maxStoredBytes', 'limit', v_max, 'storedBytes', p_stored_before, 'wouldBe', v_stored)::text;
    end if;
  end if;
end;
$$;

-- ── the metered writes ────────────────────────────────────────────────────────────────────────
alter function cogo.enqueue_task(jsonb) rename to enqueue_task_unmetered;
alter function cogo.create_plan(jsonb) rename to create_plan_unmetered;
alter function cogo.start_analysis(jsonb) rename to start_analysis_unmetered;
alter function cogo.write_files(uuid, jsonb, text[]) rename to write_files_unmetered;
alter function cogo.write_stdin(uuid, text, boolean) rename to write_stdin_unmetered;

create function cogo.enqueue_task(spec jsonb) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  m record;
  v_task public.tasks;
begin
  select * into m from cogo.meter_begin('execute');
  v_task := cogo.enqueue_task_unmetered(spec);
  -- A new row was created now; an idempotent replay returns an older one and adds nothing.
  perform cogo.meter_end(m.queued, m.stored, 0, v_task.created_at = now());
  return v_task;
end;
$$;

create function cogo.create_plan(p_spec jsonb) returns public.plans
language plpgsql security definer set search_path = '' as $$
declare
  m record;
  p public.plans;
  v_new boolean;
begin
  select * into m from cogo.meter_begin('plans');
  p := cogo.create_plan_unmetered(p_spec);
  v_new := p.created_at = now();
  -- Every step counts: those not queued yet will be, so a plan over the quota is refused whole.
  perform cogo.meter_end(m.queued, m.stored,
    case when v_new then (select count(*)::integer from public.plan_steps s where s.plan_id = p.id and s.status = 'waiting') else 0 end,
    v_new);
  return p;
end;
$$;

create function cogo.start_analysis(spec jsonb) returns public.analyses
language plpgsql security definer set search_path = '' as $$
declare
  m record;
  a public.analyses;
begin
  select * into m from cogo.meter_begin('analyses');
  a := cogo.start_analysis_unmetered(spec);
  perform cogo.meter_end(m.queued, m.stored, 0, a.created_at = now());
  return a;
end;
$$;

create function cogo.write_files(p_ws uuid, p_files jsonb, p_deletes text[]) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  m record;
  v_before bigint;
  v_result jsonb;
begin
  select * into m from cogo.meter_begin('files');
  select bytes into v_before from public.workspaces where id = p_ws;
  v_result := cogo.write_files_unmetered(p_ws, p_files, p_deletes);
  perform cogo.meter_end(m.queued, m.stored, 0, (v_result ->> 'bytes')::bigint > coalesce(v_before, 0));
  return v_result;
end;
$$;

-- Stdin has no rate limit of its own (a task's stdin_mode "pipe" bounds who may write), but its
-- bytes are stored: data past the stored-bytes quota is refused; an empty write or EOF never is.
create function cogo.write_stdin(p_task uuid, p_data text, p_eof boolean) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  m record;
  v_seq bigint;
begin
  select * into m from cogo.meter_begin(null);
  v_seq := cogo.write_stdin_unmetered(p_task, p_data, p_eof);
  perform cogo.meter_end(m.queued, m.stored, 0, coalesce(octet_length(p_data), 0) > 0);
  return v_seq;
end;
$$;

-- ── visibility ────────────────────────────────────────────────────────────────────────────────
-- GET /usage: one tenant's consumption against its limits. A user reads only its own.
-- Volatile: the tokens are refilled to clock_timestamp().
create function cogo.tenant_usage_report(p_owner uuid) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_limits jsonb;
  u cogo.tenant_usage;
begin
  if coalesce(auth.role(), 'service_role') <> 'service_role' and p_owner is distinct from auth.uid() then
    raise exception 'a user reads only its own usage' using errcode = '42501';
  end if;
  if p_owner is null then
    raise exception 'tenant_usage_report: owner is required' using errcode = '22023';
  end if;
  v_limits := cogo.tenant_limits_of(p_owner);
  select * into u from cogo.tenant_usage where owner = p_owner;
  return jsonb_build_object(
    'tenant', p_owner,
    'limits', v_limits,
    'running', (
      select coalesce(jsonb_agg(jsonb_build_object('kind', k.kind, 'running', k.running, 'cap', k.cap) order by k.kind), '[]')
        from (select x.kind, x.running,
                     coalesce((v_limits ->> 'maxRunning')::integer,
                              greatest(1, floor(coalesce((select sum(w.capacity) from public.workers w
                                                           where w.kind = x.kind and cogo.worker_is_live(w)), 0)
                                                * cogo.default_running_share(x.kind)))::integer) as cap
                from (select required_kind as kind, count(*) filter (where status = any(cogo.active_states())) as running
                        from public.tasks
                       where owner = p_owner and (status = any(cogo.active_states()) or status = 'queued')
                       group by required_kind) x) k),
    'queued', jsonb_build_object(
      'count', (select count(*) from public.tasks where owner = p_owner and status = 'queued'),
      'max', (v_limits -> 'maxQueuedTasks')),
    'storedBytes', jsonb_build_object(
      'total', coalesce(cogo.stored_bytes(u), 0),
      'max', (v_limits -> 'maxStoredBytes'),
      'byClass', jsonb_build_object(
        'taskInputs', coalesce(u.task_bytes, 0), 'stdin', coalesce(u.stdin_bytes, 0), 'output', coalesce(u.output_bytes, 0),
        'artifacts', coalesce(u.artifact_bytes, 0), 'workspaces', coalesce(u.workspace_bytes, 0), 'analysis', coalesce(u.analysis_bytes, 0))),
    'rateLimits', (
      select jsonb_agg(jsonb_build_object(
               'class', c.class, 'route', c.route,
               'perSecond', (v_limits -> (c.class || 'PerSecond')), 'burst', (v_limits -> (c.class || 'Burst')),
               'tokens', round(coalesce(least((v_limits ->> (c.class || 'Burst'))::double precision,
                                              b.tokens + (v_limits ->> (c.class || 'PerSecond'))::double precision
                                                         * greatest(0, extract(epoch from clock_timestamp() - b.refilled_at))),
                                        (v_limits ->> (c.class || 'Burst'))::double precision)::numeric, 2))
             order by c.class)
        from cogo.rate_classes() c
        left join cogo.rate_buckets b on b.owner = p_owner and b.class = c.class));
end;
$$;

-- GET /metrics: the top tenants by running tasks and by stored bytes (service role).
create function cogo.tenant_metrics(p_top integer) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'byRunning', (select coalesce(jsonb_agg(jsonb_build_object('tenant', r.owner, 'running', r.n) order by r.n desc, r.owner), '[]')
                    from (select owner, count(*) n from public.tasks
                           where status = any(cogo.active_states()) and owner is not null
                           group by owner order by count(*) desc, owner limit p_top) r),
    'byStoredBytes', (select coalesce(jsonb_agg(jsonb_build_object('tenant', s.owner, 'bytes', s.bytes) order by s.bytes desc, s.owner), '[]')
                        from (select u.owner, cogo.stored_bytes(u) bytes from cogo.tenant_usage u
                               where cogo.stored_bytes(u) > 0 order by 2 desc, 1 limit p_top) s)
  );
$$;

-- ── grants (as 20261126000800_grants.sql: PUBLIC nothing, the service role everything) ─────────
revoke all on cogo.rate_buckets, cogo.tenant_usage from public, anon, authenticated;
grant all on cogo.rate_buckets, cogo.tenant_usage to service_role;
revoke execute on function
  cogo.tenant_limit_keys(), cogo.default_tenant_limits(), cogo.tenant_limit_overrides(uuid), cogo.tenant_limits_of(uuid), cogo.rate_classes(),
  cogo.take_rate_token(text), cogo.stored_bytes(cogo.tenant_usage), cogo.task_input_bytes(jsonb, jsonb),
  cogo.add_usage(uuid, bigint, bigint, bigint, bigint, bigint, bigint),
  cogo.usage_tasks_inserted(), cogo.usage_task_changed(), cogo.usage_task_deleting(), cogo.usage_task_rows(),
  cogo.usage_artifact_changed(), cogo.usage_workspace_changed(), cogo.usage_blob_rows(), cogo.usage_blob_changed(),
  cogo.usage_repo_deleting(), cogo.tenant_usage_recount(uuid),
  cogo.meter_begin(text), cogo.meter_end(bigint, bigint, integer, boolean),
  cogo.enqueue_task(jsonb), cogo.create_plan(jsonb), cogo.start_analysis(jsonb), cogo.write_files(uuid, jsonb, text[]),
  cogo.write_stdin(uuid, text, boolean), cogo.tenant_usage_report(uuid), cogo.tenant_metrics(integer)
  from public;
grant execute on function
  cogo.tenant_limit_keys(), cogo.default_tenant_limits(), cogo.tenant_limit_overrides(uuid), cogo.tenant_limits_of(uuid), cogo.rate_classes(),
  cogo.take_rate_token(text), cogo.stored_bytes(cogo.tenant_usage), cogo.task_input_bytes(jsonb, jsonb),
  cogo.add_usage(uuid, bigint, bigint, bigint, bigint, bigint, bigint),
  cogo.usage_tasks_inserted(), cogo.usage_task_changed(), cogo.usage_task_deleting(), cogo.usage_task_rows(),
  cogo.usage_artifact_changed(), cogo.usage_workspace_changed(), cogo.usage_blob_rows(), cogo.usage_blob_changed(),
  cogo.usage_repo_deleting(), cogo.tenant_usage_recount(uuid),
  cogo.meter_begin(text), cogo.meter_end(bigint, bigint, integer, boolean),
  cogo.enqueue_task(jsonb), cogo.create_plan(jsonb), cogo.start_analysis(jsonb), cogo.write_files(uuid, jsonb, text[]),
  cogo.write_stdin(uuid, text, boolean), cogo.tenant_usage_report(uuid), cogo.tenant_metrics(integer)
  to service_role;
-- Users call the metered writes (each checks its caller) and read their own usage; the bodies
-- behind them are the service role's only, so nothing skips the meter.
revoke execute on function
  cogo.enqueue_task_unmetered(jsonb), cogo.create_plan_unmetered(jsonb), cogo.start_analysis_unmetered(jsonb),
  cogo.write_files_unmetered(uuid, jsonb, text[]), cogo.write_stdin_unmetered(uuid, text, boolean)
  from anon, authenticated;
grant execute on function
  cogo.enqueue_task(jsonb), cogo.create_plan(jsonb), cogo.start_analysis(jsonb), cogo.write_files(uuid, jsonb, text[]),
  cogo.write_stdin(uuid, text, boolean), cogo.tenant_usage_report(uuid)
  to authenticated;
