-- Internal tasks are marked by the system, never by names a user picks (issue 16, found #3).
--
-- A user's plan step named `analysis-clone` of kind `analysis` was run as the clone step of a
-- repository analysis: the worker matched the kind and the step name. cogo.begin_analysis_clone
-- refused it with CG409, which the worker took for a lost lease, so it handed the task back,
-- claimed it again, and so on (attempt 483 of 3, the cancel never honoured, both analysis slots
-- held and analysis stopped for every tenant). Now:
--
--   * tasks.internal says which job of the system a task is ('analysis-clone', 'analysis-batch').
--     Only cogo.start_analysis and cogo.plan_analysis (redefined below) set it; every task a user
--     or the service key enqueues has null. Clients cannot insert or update tasks at all (revoked
--     in 20261125000100), so they cannot set it. Workers dispatch on it, not on the step name.
--   * What the system names its tasks is reserved: worker kind `analysis` and step names starting
--     with `analysis-` (any case). A task without the marker (trigger tasks_reserved_names) and a
--     plan step (trigger plan_steps_reserved_names) naming them is refused with SQLSTATE 22023,
--     whoever calls (the API, an RPC, the service role). The API refuses them first with a 400:
--     RESERVED_KINDS and RESERVED_STEP_PREFIX in functions/_shared/schemas.ts mirror this list.
--   * A clone step whose analysis is not in progress raises 55000: that is no lost lease. A retry
--     of a clone step that an earlier attempt had already planned finishes without cloning again.
--   * cogo.release_task respects max_attempts and a pending cancel, as cogo.requeue_expired and
--     cogo.requeue_for_recovery already do (docs/state-machine.md): the hand-back of the last
--     attempt fails the task saying the attempts ran out, and a cancel asked meanwhile ends it
--     cancelled. Every way back to `queued` now does both checks.

alter table public.tasks
  add column internal text check (internal in ('analysis-clone', 'analysis-batch'));
comment on column public.tasks.internal is
  'The system job this task is (set only by cogo.start_analysis / cogo.plan_analysis); null for user tasks.';

-- Analyses in flight keep running on the new workers.
update public.tasks t set internal = 'analysis-clone' from public.analyses a where a.clone_task_id = t.id;
update public.tasks t set internal = 'analysis-batch' from public.analysis_batches b where b.task_id = t.id;

-- ── reserved names ─────────────────────────────────────────────────────────────────────────────
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
  -- No exemption, not even for runs of plan steps accepted before these names were reserved: a
  -- direct cogo.enqueue_task call naming such a plan could otherwise reach the analysis workers.
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

-- ── the analysis functions that make internal tasks: as in 20261125000500, marking them ────────

-- Its clone task is marked internal.
create or replace function cogo.start_analysis(spec jsonb) returns public.analyses
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

-- A retried clone task whose analysis an earlier attempt already listed and planned (that attempt
-- lost its lease before it finished) has nothing left to clone: the analysis is returned as it is,
-- and the worker finalises it if it waits for that. No analysis, or a failed one, is 55000 (the
-- clone task fails with it), no longer the fence's CG409, which the worker takes for a lost lease.
create or replace function cogo.begin_analysis_clone(p_task uuid, p_attempt integer, p_worker uuid) returns public.analyses
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

-- Its batch tasks are marked internal; not an analysis being planned is 55000, as above.
create or replace function cogo.plan_analysis(p_task uuid, p_attempt integer, p_worker uuid, p_commit text, p_files jsonb,
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

-- ── hand-backs ─────────────────────────────────────────────────────────────────────────────────
-- Hands a task back to the queue (the worker shuts down before it finished, stopped it because its
-- heartbeats failed, lost the database, found no free sandbox). The attempt was counted when it
-- was claimed: the last one handed back fails the task, and a cancel asked meanwhile wins.
create or replace function cogo.release_task(p_task uuid, p_attempt integer, p_worker uuid, p_reason text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
  v_why text := regexp_replace(p_reason, '; re-queued$', '');
begin
  v_task := cogo.fence(p_task, p_attempt, p_worker);
  if v_task.cancel_requested_at is not null then
    update public.tasks
       set status = 'cancelled', reason = format('cancelled while its worker handed it back (%s)', v_why),
           finished_at = now(), lease_expires_at = null
     where id = p_task;
  elsif v_task.attempt >= v_task.max_attempts then
    update public.tasks
       set status = 'failed', finished_at = now(), lease_expires_at = null,
           reason = format('attempt %s of %s handed back (%s); no attempts left', v_task.attempt, v_task.max_attempts, v_why)
     where id = p_task;
  else
    update public.tasks set status = 'queued', worker_id = null, lease_expires_at = null, reason = p_reason
     where id = p_task;
  end if;
end;
$$;

-- Tasks the old release_task left queued with a cancel pending, or with no attempt left, end now.
update public.tasks set status = 'cancelled', reason = 'cancelled while its worker handed it back', finished_at = now()
 where status = 'queued' and cancel_requested_at is not null;
update public.tasks
   set status = 'failed', finished_at = now(),
       reason = format('attempt %s of %s handed back; no attempts left', attempt, max_attempts)
 where status = 'queued' and attempt >= max_attempts;

revoke execute on function cogo.reserved_kind(text), cogo.reserved_step(text), cogo.refuse_reserved_task(),
  cogo.refuse_reserved_step() from public;
grant execute on function cogo.reserved_kind(text), cogo.reserved_step(text) to service_role;
