-- Repository analysis (SPEC §3.2): an analysis is one clone task that lists the repository's
-- files with their git blob hashes and stores new contents, then batch tasks that parse those
-- contents in parallel on any number of workers. Parse results are kept per (repository, blob
-- hash, language), so re-analysing at a new ref parses only blobs never seen. Progress is
-- broadcast as `progress_update` on the private topic `analysis:<id>`.
--
-- Its tasks are internal (tasks.internal = 'analysis-clone' | 'analysis-batch', kind `analysis`):
-- only cogo.start_analysis and cogo.plan_analysis make them, and workers dispatch on the marker,
-- never on a kind or step name a user chose (those names are reserved, 20261126000100). A clone
-- step whose analysis is not in progress raises 55000 (not the fence's CG409, which a worker takes
-- for a lost lease); a retry of a clone step an earlier attempt already planned finishes without
-- cloning again. The lifecycle's analysis hook fails an analysis whose task failed.

create type public.analysis_phase as enum ('queued', 'cloning', 'analyzing', 'finalizing', 'completed', 'failed');

-- Operator policy, one row: what sources the deployment accepts. Read by the edge function (to
-- refuse a request with a 4xx) and by the worker (checked again before cloning).
create table cogo.analysis_policy (
  id boolean primary key default true check (id),
  allow_private_hosts boolean not null default false,
  local_roots text[] not null default '{}',
  updated_at timestamptz not null default now()
);
insert into cogo.analysis_policy default values;

-- One row per (owner, normalised source): blobs are shared by every analysis of it.
create table public.analysis_repos (
  id uuid primary key default gen_random_uuid(),
  owner uuid,
  source text not null check (length(source) between 1 and 4096),
  created_at timestamptz not null default now(),
  unique nulls not distinct (owner, source)
);

create table public.analyses (
  id uuid primary key default gen_random_uuid(),
  owner uuid,
  repo_id uuid not null references public.analysis_repos (id) on delete cascade,
  source text not null,
  ref text not null default 'HEAD',
  commit_sha text,
  include text[] not null default '{}',
  exclude text[] not null default '{}',
  options jsonb not null default '{}',
  phase public.analysis_phase not null default 'queued',
  error text,
  files_total integer,
  bytes_total bigint,
  files_skipped integer,
  blobs_to_parse integer,
  blobs_parsed integer not null default 0,
  files_reused integer,
  batches_total integer,
  batches_done integer not null default 0,
  clone_task_id uuid references public.tasks (id) on delete set null,
  previous_id uuid references public.analyses (id) on delete set null,
  changes jsonb,
  idempotency_key text check (idempotency_key is null or length(idempotency_key) between 1 and 200),
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz
);
create index analyses_repo_finished on public.analyses (repo_id, finished_at desc) where phase = 'completed';
create unique index analyses_owner_idempotency_key on public.analyses (coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key)
  where idempotency_key is not null;

-- Content and results per blob. `content` is null for binary or over-size files; `parsed_at` is
-- null until a batch has counted lines and extracted symbols and imports.
create table public.analysis_blobs (
  repo_id uuid not null references public.analysis_repos (id) on delete cascade,
  hash text not null check (hash ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
  language text not null default '',
  size bigint not null,
  is_binary boolean not null default false,
  content text,
  code integer,
  comment integer,
  blank integer,
  symbols jsonb,
  imports jsonb,
  parser text,
  parse_error text,
  parsed_at timestamptz,
  search tsvector,
  primary key (repo_id, hash, language)
);
create index analysis_blobs_search on public.analysis_blobs using gin (search);

create table public.analysis_files (
  analysis_id uuid not null references public.analyses (id) on delete cascade,
  path text not null,
  hash text not null,
  language text not null default '',
  size bigint not null,
  -- the batch that parsed it in this analysis; null when its blob was parsed before (reused)
  batch integer,
  primary key (analysis_id, path)
);
-- Planning joins the files just inserted (no statistics yet) to their blobs: without this index
-- that join is a nested loop over every file for every blob.
create index analysis_files_blob on public.analysis_files (analysis_id, hash, language);

create table public.analysis_batches (
  analysis_id uuid not null references public.analyses (id) on delete cascade,
  batch integer not null,
  task_id uuid not null references public.tasks (id) on delete cascade,
  blobs integer not null,
  bytes bigint not null,
  done_at timestamptz,
  done_by uuid,
  done_attempt integer,
  primary key (analysis_id, batch)
);
create unique index analysis_batches_task on public.analysis_batches (task_id);

-- Import edges of an analysis, resolved to a file of the same analysis where possible.
create table public.analysis_imports (
  analysis_id uuid not null references public.analyses (id) on delete cascade,
  path text not null,
  specifier text not null,
  kind text not null,
  line integer not null,
  resolved_path text,
  primary key (analysis_id, path, line, specifier)
);

alter table cogo.analysis_policy enable row level security;
alter table public.analysis_repos enable row level security;
alter table public.analyses enable row level security;
alter table public.analysis_blobs enable row level security;
alter table public.analysis_files enable row level security;
alter table public.analysis_batches enable row level security;
alter table public.analysis_imports enable row level security;

create policy "owners read their repos" on public.analysis_repos for select to authenticated
  using (owner = (select auth.uid()));
create policy "owners read their analyses" on public.analyses for select to authenticated
  using (owner = (select auth.uid()));
create policy "owners read their blobs" on public.analysis_blobs for select to authenticated
  using (exists (select 1 from public.analysis_repos r where r.id = repo_id and r.owner = (select auth.uid())));
create policy "owners read their files" on public.analysis_files for select to authenticated
  using (exists (select 1 from public.analyses a where a.id = analysis_id and a.owner = (select auth.uid())));
create policy "owners read their batches" on public.analysis_batches for select to authenticated
  using (exists (select 1 from public.analyses a where a.id = analysis_id and a.owner = (select auth.uid())));
create policy "owners read their imports" on public.analysis_imports for select to authenticated
  using (exists (select 1 from public.analyses a where a.id = analysis_id and a.owner = (select auth.uid())));

-- The operator's analysis policy row is read through cogo.analysis_policy() and edited by the
-- service role (which bypasses RLS); no client role reads or writes it, which this policy states
-- (Supabase's linter, lint 0008 rls_enabled_no_policy).
create policy analysis_policy_no_client_access on cogo.analysis_policy
  for all to anon, authenticated using (false) with check (false);

-- Realtime: `analysis:<id>` is private to the analysis's owner.
create function cogo.owns_analysis_topic(topic text) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.analyses a
    where topic ~ '^analysis:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      and a.id = substr(topic, 10)::uuid
      and a.owner = (select auth.uid())
  );
$$;
create policy "analysis owners receive their analysis topics" on realtime.messages for select to authenticated
  using (cogo.owns_analysis_topic((select realtime.topic())));

create function cogo.analysis_policy() returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object('allowPrivateHosts', allow_private_hosts, 'localRoots', to_jsonb(local_roots))
    from cogo.analysis_policy;
$$;

-- Starts an analysis: its row and its clone task, in one transaction. The caller (edge function)
-- has validated the request and the source against the policy.
create function cogo.start_analysis(spec jsonb) returns public.analyses
language plpgsql security definer set search_path = '' as $$
declare
  v_owner uuid := auth.uid();
  v_repo uuid;
  v_analysis public.analyses;
  v_task public.tasks;
  v_key text := spec ->> 'idempotencyKey';
begin
  if not cogo.caller_may_use(v_owner) then
    raise exception 'a user token or the service key is required to analyse a repository' using errcode = 'CG401';
  end if;
  -- A workspace of the files API is analysed only by its owner (or the service role).
  if spec ->> 'source' like 'workspace:%' and not exists (
       select 1 from public.workspaces w
        where w.id::text = substr(spec ->> 'source', 11) and cogo.caller_may_use(w.owner)) then
    raise exception 'workspace % not found', substr(spec ->> 'source', 11) using errcode = 'CG404';
  end if;
  if v_key is not null then
    select * into v_analysis from public.analyses
      where coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(v_owner, '00000000-0000-0000-0000-000000000000'::uuid)
        and idempotency_key = v_key;
    if found then return v_analysis; end if;
  end if;
  insert into public.analysis_repos (owner, source) values (v_owner, spec ->> 'source')
    on conflict (owner, source) do update set source = excluded.source
    returning id into v_repo;
  insert into public.analyses (owner, repo_id, source, ref, include, exclude, options, idempotency_key)
  values (v_owner, v_repo, spec ->> 'source', coalesce(spec ->> 'ref', 'HEAD'),
          coalesce(array(select jsonb_array_elements_text(spec -> 'include')), '{}'),
          coalesce(array(select jsonb_array_elements_text(spec -> 'exclude')), '{}'),
          coalesce(spec -> 'options', '{}'), v_key)
  returning * into v_analysis;
  insert into public.tasks (owner, step, argv, required_kind, timeout_ms, max_attempts, limits, internal)
  values (v_owner, 'analysis-clone', array['cogo-analysis', 'clone', v_analysis.id::text], 'analysis',
          coalesce((spec #>> '{options,cloneTimeoutMs}')::integer, 600000), 3, '{}', 'analysis-clone')
  returning * into v_task;
  update public.analyses set clone_task_id = v_task.id where id = v_analysis.id returning * into v_analysis;
  return v_analysis;
end;
$$;

-- Sends a progress_update on the analysis topic with files done, percentage and an ETA from the
-- rate so far.
create function cogo.analysis_progress(p_analysis uuid, p_message text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  a public.analyses;
  v_pct numeric;
  v_eta bigint;
  v_elapsed numeric;
begin
  select * into a from public.analyses where id = p_analysis;
  if a.blobs_to_parse is null then
    v_pct := null;
  elsif a.blobs_to_parse = 0 then
    v_pct := 100;
  else
    v_pct := round(100.0 * a.blobs_parsed / a.blobs_to_parse, 1);
  end if;
  v_elapsed := extract(epoch from clock_timestamp() - coalesce(a.started_at, a.created_at)) * 1000;
  if a.blobs_parsed > 0 and a.blobs_to_parse > a.blobs_parsed then
    v_eta := round(v_elapsed / a.blobs_parsed * (a.blobs_to_parse - a.blobs_parsed));
  elsif a.phase in ('completed', 'failed') or (a.blobs_to_parse is not null and a.blobs_parsed >= a.blobs_to_parse) then
    v_eta := 0;
  end if;
  perform realtime.send(jsonb_build_object(
      'analysisId', a.id, 'phase', a.phase, 'percentage', v_pct, 'stage', 'analyzing', 'message', p_message,
      'etaMs', v_eta, 'source', 'plan', 'filesTotal', a.files_total, 'blobsParsed', a.blobs_parsed,
      'blobsToParse', a.blobs_to_parse, 'batchesDone', a.batches_done, 'batchesTotal', a.batches_total,
      'timestamp', clock_timestamp()),
    'progress_update', 'analysis:' || a.id, true);
end;
$$;

-- The clone task has begun (fenced by its lease). A retried clone task whose analysis an earlier
-- attempt already listed and planned (that attempt lost its lease before it finished) has nothing
-- left to clone: the analysis is returned as it is, and the worker finalises it if it waits for
-- that. No analysis, or a failed one, is 55000 (the clone task fails with it).
create function cogo.begin_analysis_clone(p_task uuid, p_attempt integer, p_worker uuid) returns public.analyses
language plpgsql security definer set search_path = '' as $$
declare
  a public.analyses;
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  update public.analyses set phase = 'cloning', started_at = coalesce(started_at, now())
   where clone_task_id = p_task and phase in ('queued', 'cloning') returning * into a;
  if a.id is null then
    select * into a from public.analyses where clone_task_id = p_task;
    if a.id is null or a.phase = 'failed' then
      raise exception 'task % is not the clone task of an analysis in progress', p_task using errcode = '55000';
    end if;
    return a;
  end if;
  perform cogo.analysis_progress(a.id, 'cloning ' || a.source);
  return a;
end;
$$;

-- Stores blob contents the clone produced (new ones only; a blob seen before keeps its results).
-- The clone step stores chunks on two connections at once, so this holds the lease under a share
-- lock (cogo.fence_shared) rather than cogo.fence's FOR UPDATE, which would run them one by one.
create function cogo.store_analysis_blobs(p_task uuid, p_attempt integer, p_worker uuid, p_repo uuid,
                                                     p_hashes text[], p_languages text[], p_sizes bigint[],
                                                     p_binary boolean[], p_contents text[]) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  n integer;
begin
  perform cogo.fence_shared(p_task, p_attempt, p_worker);
  insert into public.analysis_blobs (repo_id, hash, language, size, is_binary, content)
    -- A blob seen before under another language keeps its content (the clone did not fetch it again).
    select p_repo, h, l, s, b, coalesce(c, (select b2.content from public.analysis_blobs b2
                                              where b2.repo_id = p_repo and b2.hash = h and b2.content is not null limit 1))
      from unnest(p_hashes, p_languages, p_sizes, p_binary, p_contents) as t(h, l, s, b, c)
    on conflict do nothing;
  get diagnostics n = row_count;
  return n;
end;
$$;

-- Plans the analysis once the clone task listed its files (`p_files`: [{path, hash, language, size}]):
-- records the files, what changed since the last completed analysis of the same repository, and
-- splits the blobs not yet parsed into batches of at most p_batch_bytes / p_batch_blobs, each an
-- `analysis` task. With nothing to parse the analysis goes straight to finalizing, and the
-- function returns 0 batches so the clone task's worker finalises it.
-- Its batch tasks are marked internal; not an analysis being planned is 55000.
create function cogo.plan_analysis(p_task uuid, p_attempt integer, p_worker uuid, p_commit text, p_files jsonb,
                                   p_skipped integer, p_batch_bytes bigint, p_batch_blobs integer) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  a public.analyses;
  v_prev uuid;
  v_batches integer;
  v_to_parse integer;
  b record;
  v_task public.tasks;
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  select * into a from public.analyses where clone_task_id = p_task for update;
  if a.id is null or a.phase not in ('queued', 'cloning') then
    raise exception 'task % is not the clone task of an analysis being planned', p_task using errcode = '55000';
  end if;
  -- A retried clone task replans from scratch.
  delete from public.analysis_files where analysis_id = a.id;
  insert into public.analysis_files (analysis_id, path, hash, language, size)
    select a.id, f.path, f.hash, f.language, f.size
      from jsonb_to_recordset(p_files) as f(path text, hash text, language text, size bigint);

  select id into v_prev from public.analyses
   where repo_id = a.repo_id and phase = 'completed' and id <> a.id order by finished_at desc limit 1;

  -- Blobs of this analysis still unparsed, packed greedily in path order into batches.
  -- Keyed and analysed, so the joins below are hash or index joins, not nested loops.
  create temporary table pending (hash text, language text, size bigint, first_path text, batch integer,
                                  primary key (hash, language)) on commit drop;
  -- Driven from this analysis's files, each probing its blob by primary key: statistics of tables
  -- that just grew cannot turn this into a nested loop over sequential scans.
  insert into pg_temp.pending (hash, language, size, first_path)
    select f.hash, f.language, min(f.size), min(f.path)
      from public.analysis_files f
     where f.analysis_id = a.id
       and exists (select 1 from public.analysis_blobs bl
                    where bl.repo_id = a.repo_id and bl.hash = f.hash and bl.language = f.language and bl.parsed_at is null)
     group by f.hash, f.language;
  analyze pg_temp.pending;
  declare
    v_batch integer := 0;
    v_bytes bigint := 0;
    v_count integer := 0;
    v_hashes text[] := '{}';
    v_langs text[] := '{}';
    v_nums integer[] := '{}';
    r record;
  begin
    for r in select p.hash, p.language, p.size from pg_temp.pending p order by p.first_path loop
      if v_count > 0 and (v_bytes + r.size > p_batch_bytes or v_count >= p_batch_blobs) then
        v_batch := v_batch + 1;
        v_bytes := 0;
        v_count := 0;
      end if;
      v_hashes := v_hashes || r.hash;
      v_langs := v_langs || r.language;
      v_nums := v_nums || v_batch;
      v_bytes := v_bytes + r.size;
      v_count := v_count + 1;
    end loop;
    update pg_temp.pending p set batch = x.b
      from unnest(v_hashes, v_langs, v_nums) as x(h, l, b) where p.hash = x.h and p.language = x.l;
  end;
  select count(*), count(distinct p.batch) into v_to_parse, v_batches from pg_temp.pending p;
  update public.analysis_files f set batch = p.batch
    from pg_temp.pending p where f.analysis_id = a.id and f.hash = p.hash and f.language = p.language;

  delete from public.analysis_batches where analysis_id = a.id;
  for b in select p.batch, count(*)::integer as blobs, sum(p.size)::bigint as bytes from pg_temp.pending p group by p.batch order by p.batch loop
    insert into public.tasks (owner, step, argv, required_kind, timeout_ms, max_attempts, internal)
    values (a.owner, 'analysis-batch', array['cogo-analysis', 'batch', a.id::text, b.batch::text], 'analysis', 600000, 3, 'analysis-batch')
    returning * into v_task;
    insert into public.analysis_batches (analysis_id, batch, task_id, blobs, bytes) values (a.id, b.batch, v_task.id, b.blobs, b.bytes);
  end loop;

  update public.analyses set
    commit_sha = p_commit,
    phase = case when v_batches = 0 then 'finalizing'::public.analysis_phase else 'analyzing'::public.analysis_phase end,
    files_total = (select count(*) from public.analysis_files where analysis_id = a.id),
    bytes_total = (select coalesce(sum(size), 0) from public.analysis_files where analysis_id = a.id),
    files_skipped = p_skipped,
    files_reused = (select count(*) from public.analysis_files where analysis_id = a.id and batch is null),
    blobs_to_parse = v_to_parse,
    blobs_parsed = 0,
    batches_total = v_batches,
    batches_done = 0,
    previous_id = v_prev,
    changes = case when v_prev is null then null else (
      with cur as (select path, hash from public.analysis_files where analysis_id = a.id),
           old as (select path, hash from public.analysis_files where analysis_id = v_prev),
           d as (
             select coalesce(cur.path, old.path) as path,
                    case when old.path is null then 'added' when cur.path is null then 'deleted'
                         when cur.hash <> old.hash then 'modified' else 'unchanged' end as change
               from cur full join old on cur.path = old.path)
      select jsonb_build_object(
        'previousAnalysisId', v_prev,
        'added', coalesce((select jsonb_agg(path order by path) from (select path from d where change = 'added' order by path limit 1000) x), '[]'),
        'modified', coalesce((select jsonb_agg(path order by path) from (select path from d where change = 'modified' order by path limit 1000) x), '[]'),
        'deleted', coalesce((select jsonb_agg(path order by path) from (select path from d where change = 'deleted' order by path limit 1000) x), '[]'),
        'counts', (select jsonb_object_agg(change, n) from (select change, count(*) n from d group by change) c))
    ) end
  where id = a.id;
  perform cogo.analysis_progress(a.id, format('%s files listed; %s blobs to parse in %s batches', jsonb_array_length(p_files), v_to_parse, v_batches));
  return v_batches;
end;
$$;

-- Stores `p_results` ([{hash, language, code, comment, blank, symbols, imports, parser, parseError,
-- terms}], terms being the file's distinct words, indexed at weight B under the symbol names' A)
-- of the caller's batch task on the blobs, without finishing the batch: a batch stores its results
-- in parts while it parses (Postgres stores one part while the worker parses the next). Writing a
-- blob's results twice (a retried batch) writes the same values. Returns the blobs updated, 0 when
-- the batch is already done or its analysis no longer analysing.
create function cogo.store_analysis_batch_results(p_task uuid, p_attempt integer, p_worker uuid, p_results jsonb)
returns integer
language plpgsql security definer set search_path = '' as $$
declare
  v_repo uuid;
  n integer;
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  select a.repo_id into v_repo
    from public.analysis_batches b join public.analyses a on a.id = b.analysis_id
   where b.task_id = p_task and b.done_at is null and a.phase = 'analyzing';
  if v_repo is null then
    if not exists (select 1 from public.analysis_batches where task_id = p_task) then
      raise exception 'task % is not an analysis batch', p_task using errcode = 'CG409';
    end if;
    return 0;
  end if;
  update public.analysis_blobs bl set
      code = r.code, comment = r.comment, blank = r.blank, symbols = r.symbols, imports = r.imports,
      parser = r.parser, parse_error = r."parseError", parsed_at = now(),
      search = setweight(to_tsvector('simple', coalesce((select string_agg(s ->> 'name', ' ') from jsonb_array_elements(r.symbols) s), '')), 'A')
            || setweight(to_tsvector('simple', coalesce(r.terms, '')), 'B')
    from jsonb_to_recordset(p_results) as r(hash text, language text, code integer, comment integer, blank integer,
                                            symbols jsonb, imports jsonb, parser text, "parseError" text, terms text)
   where bl.repo_id = v_repo and bl.hash = r.hash and bl.language = r.language;
  get diagnostics n = row_count;
  return n;
end;
$$;

-- A batch's last results land (through store_analysis_batch_results): the batch marked done,
-- progress broadcast. Returns true when this was the last batch, and the analysis moves to
-- finalizing.
create function cogo.complete_analysis_batch(p_task uuid, p_attempt integer, p_worker uuid, p_results jsonb)
returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  bt public.analysis_batches;
  a public.analyses;
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  select * into bt from public.analysis_batches where task_id = p_task for update;
  if bt.analysis_id is null then
    raise exception 'task % is not an analysis batch', p_task using errcode = 'CG409';
  end if;
  -- The analysis row is locked only for the counters at the end: batches landing from several
  -- workers store their results concurrently.
  select * into a from public.analyses where id = bt.analysis_id;
  if bt.done_at is not null or a.phase <> 'analyzing' then
    return false;
  end if;
  perform cogo.store_analysis_batch_results(p_task, p_attempt, p_worker, p_results);
  update public.analysis_batches set done_at = now(), done_by = p_worker, done_attempt = p_attempt where task_id = p_task;
  update public.analyses set
      blobs_parsed = blobs_parsed + bt.blobs,
      batches_done = batches_done + 1,
      phase = case when batches_done + 1 >= batches_total then 'finalizing'::public.analysis_phase else phase end
   where id = a.id returning * into a;
  perform cogo.analysis_progress(a.id, format('batch %s done (%s blobs)', bt.batch, bt.blobs));
  return a.phase = 'finalizing';
end;
$$;

-- The finalising worker stores the resolved import graph and completes the analysis.
create function cogo.finish_analysis(p_task uuid, p_attempt integer, p_worker uuid, p_analysis uuid, p_imports jsonb)
returns public.analyses
language plpgsql security definer set search_path = '' as $$
declare
  a public.analyses;
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  select * into a from public.analyses where id = p_analysis for update;
  if a.phase <> 'finalizing' then
    return a;
  end if;
  delete from public.analysis_imports where analysis_id = p_analysis;
  insert into public.analysis_imports (analysis_id, path, specifier, kind, line, resolved_path)
    select p_analysis, i.path, i.specifier, i.kind, i.line, i."resolvedPath"
      from jsonb_to_recordset(p_imports) as i(path text, specifier text, kind text, line integer, "resolvedPath" text)
    on conflict do nothing;
  update public.analyses set phase = 'completed', finished_at = now() where id = p_analysis returning * into a;
  perform cogo.analysis_progress(a.id, 'analysis complete');
  return a;
end;
$$;

create function cogo.fail_analysis(p_analysis uuid, p_error text) returns void
language plpgsql security definer set search_path = '' as $$
begin
  update public.analyses set phase = 'failed', error = left(p_error, 4000), finished_at = now()
   where id = p_analysis and phase not in ('completed', 'failed');
  if found then
    perform cogo.analysis_progress(p_analysis, 'analysis failed: ' || left(p_error, 500));
  end if;
end;
$$;

-- The analysis hook (cogo.task_status_changed): a clone or batch task that ends without success
-- (its worker gave up, it timed out, attempts ran out after lost leases) fails its analysis,
-- whoever moved it there.
create function cogo.on_task_status_analysis(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_analysis uuid;
begin
  if p_task.internal is null or p_task.status not in ('failed', 'cancelled', 'timed_out') then
    return;
  end if;
  select id into v_analysis from public.analyses where clone_task_id = p_task.id;
  if v_analysis is null then
    select analysis_id into v_analysis from public.analysis_batches where task_id = p_task.id;
  end if;
  if v_analysis is not null then
    perform cogo.fail_analysis(v_analysis, coalesce(p_task.step, 'task') || ' ' || p_task.status || ': ' || coalesce(p_task.reason, 'no reason given'));
  end if;
end;
$$;
