-- Retention and tasks of unserved kinds (issue 18). Until now nothing was ever deleted, and a task
-- queued for a kind no worker serves waited forever and turned /health "degraded" for everyone.
--
--   * cogo.retention_policy: one row, the deployment's settings (defaults below), changed by the
--     operator with cogo.set_retention_policy (service role).
--   * cogo.purge_expired: one short pass of bounded work, run in a loop by the workers'
--     maintenance service (worker/maintenance/retention.ts, one runner at a time across the fleet):
--       1. ended tasks (cogo.final_states()) that finished longer than task_data_after ago are
--          marked purged (tasks.purged_at) and their submitted files and env cleared; the row stays
--          (status, exit code, reason, usage, times: the user's history), and the API says "deleted
--          after N days" instead of showing empty output;
--       2. their output, events, stdin and artifacts are deleted, p_batch rows per statement;
--       3. analyses that ended longer than analysis_after ago, except the newest completed one of
--          each repository (the base every later analysis reuses), are marked purged and their
--          files and imports deleted; then the blobs no remaining analysis of the repository
--          references are deleted (never while an analysis of it is in progress: its clone stores
--          blobs before it lists the files that reference them);
--       4. realtime.messages rows older than realtime_messages_after, where this role may delete
--          them (the embedded stack). On a Supabase project Realtime owns the table and drops its
--          daily partitions older than 72 hours (realtime lib/realtime/messages.ex,
--          delete_old_messages), which is what we rely on there; the embedded Realtime does the
--          same (embedded/bootstrap.sql realtime_embedded.maintain_partitions).
--     Every delete is a plain DELETE (per-tenant usage counters kept by row triggers stay right),
--     touches only rows of ended tasks, and locks task rows only with SKIP LOCKED: claims, which
--     lock queued rows, never wait for it.
--   * cogo.fail_unserved_task / cogo.fail_unserved_tasks: a queued task whose kind (with its
--     labels) has had no live worker for no_worker_fail_after fails with reason
--     `no_worker_for_kind: …` through a transition in the lifecycle's style.
--   * cogo.health(): lists only the caller's own tasks waiting for an unserved kind (all of them for
--     the service role, none for anon); the route turns "degraded" only for that user.

-- ── settings ──────────────────────────────────────────────────────────────────────────────────
create table cogo.retention_policy (
  id boolean primary key default true check (id),
  -- An ended task's output, events, stdin, artifacts, files and env are deleted this long after it finished.
  task_data_after interval not null default '7 days' check (task_data_after >= interval '1 second'),
  -- An ended analysis's files and imports (and then unreferenced blobs) this long after it ended.
  analysis_after interval not null default '7 days' check (analysis_after >= interval '1 second'),
  -- realtime.messages rows (a safety net under the Realtime server's own partition drops).
  realtime_messages_after interval not null default '3 days' check (realtime_messages_after >= interval '1 minute'),
  -- A queued task fails once no live worker has served its kind (and labels) for this long.
  no_worker_fail_after interval not null default '1 hour' check (no_worker_fail_after >= interval '1 second'),
  updated_at timestamptz not null default now()
);
insert into cogo.retention_policy default values;
alter table cogo.retention_policy enable row level security;
-- Read by the cogo.* functions, edited by the service role through cogo.set_retention_policy; no
-- client role reads or writes it, which this policy states (Supabase's linter, lint 0008).
create policy retention_policy_no_client_access on cogo.retention_policy
  for all to anon, authenticated using (false) with check (false);

-- The policy as JSON (intervals as Postgres prints them, e.g. "7 days", "01:00:00").
create function cogo.retention_policy() returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object('taskDataAfter', task_data_after::text, 'analysisAfter', analysis_after::text,
                            'realtimeMessagesAfter', realtime_messages_after::text,
                            'noWorkerFailAfter', no_worker_fail_after::text)
    from cogo.retention_policy;
$$;

-- Changes the policy from a JSON object of intervals ({"taskDataAfter": "14 days",
-- "noWorkerFailAfter": "30 minutes"}); keys left out keep their value, null goes back to the
-- default, unknown keys are refused. Service role only. Returns cogo.retention_policy().
create function cogo.set_retention_policy(p_policy jsonb) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_unknown text;
  v_keys constant text[] := array['taskDataAfter', 'analysisAfter', 'realtimeMessagesAfter', 'noWorkerFailAfter'];
begin
  if coalesce(auth.role(), 'service_role') <> 'service_role' then
    raise exception 'the retention policy is set by the operator (service role)' using errcode = '42501';
  end if;
  if p_policy is null or jsonb_typeof(p_policy) <> 'object' then
    raise exception 'set_retention_policy: the policy must be a JSON object such as {"taskDataAfter": "14 days"}' using errcode = '22023';
  end if;
  select k into v_unknown from jsonb_object_keys(p_policy) k where k <> all(v_keys) limit 1;
  if v_unknown is not null then
    raise exception 'set_retention_policy: unknown setting "%" (known: %)', v_unknown, array_to_string(v_keys, ', ') using errcode = '22023';
  end if;
  begin
    update cogo.retention_policy set
      task_data_after = case when p_policy ? 'taskDataAfter' then coalesce((p_policy ->> 'taskDataAfter')::interval, '7 days') else task_data_after end,
      analysis_after = case when p_policy ? 'analysisAfter' then coalesce((p_policy ->> 'analysisAfter')::interval, '7 days') else analysis_after end,
      realtime_messages_after = case when p_policy ? 'realtimeMessagesAfter' then coalesce((p_policy ->> 'realtimeMessagesAfter')::interval, '3 days') else realtime_messages_after end,
      no_worker_fail_after = case when p_policy ? 'noWorkerFailAfter' then coalesce((p_policy ->> 'noWorkerFailAfter')::interval, '1 hour') else no_worker_fail_after end,
      updated_at = now();
  exception when invalid_datetime_format or check_violation then
    raise exception 'set_retention_policy: %', sqlerrm using errcode = '22023';
  end;
  return cogo.retention_policy();
end;
$$;

-- ── what a purge leaves ───────────────────────────────────────────────────────────────────────
-- Set when the task's bulky data was deleted (or is being deleted, a batch at a time): the API
-- answers "output deleted after …" from here.
alter table public.tasks add column purged_at timestamptz;
comment on column public.tasks.purged_at is 'When retention deleted this ended task''s output, events, stdin, artifacts, files and env (cogo.purge_expired); the row itself stays.';
-- The ended tasks not purged yet, oldest first: what step 1 reads, without scanning history.
create index tasks_purge_due on public.tasks (finished_at) where purged_at is null and status = any(cogo.final_states());

alter table public.analyses add column purged_at timestamptz;
comment on column public.analyses.purged_at is 'When retention deleted this ended analysis''s files and imports (cogo.purge_expired); the row and its summary stay.';
create index analyses_purge_due on public.analyses (finished_at) where purged_at is null and phase in ('completed', 'failed');

-- Purged tasks and analyses whose rows are still being deleted, and repositories whose blobs are
-- to be swept: the work of step 2 and 3 between passes, so no pass scans the history for it.
create table cogo.purge_queue (
  kind text not null check (kind in ('task', 'analysis', 'repo')),
  id uuid not null,
  queued_at timestamptz not null default now(),
  primary key (kind, id)
);
alter table cogo.purge_queue enable row level security;
create policy purge_queue_no_client_access on cogo.purge_queue
  for all to anon, authenticated using (false) with check (false);

-- ── the purge ─────────────────────────────────────────────────────────────────────────────────
-- Deletes up to p_batch rows of each of a purged task's tables, for up to 50 queued tasks; a task
-- whose rows are all gone leaves the queue. Returns the rows deleted per table.
create function cogo.purge_task_rows(p_batch integer) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_ids uuid[];
  n_output integer;
  n_events integer;
  n_stdin integer;
  n_artifacts integer;
begin
  select array_agg(id) into v_ids from (
    select q.id from cogo.purge_queue q where q.kind = 'task' order by q.queued_at limit 50 for update skip locked) x;
  if v_ids is null then
    return jsonb_build_object('output', 0, 'events', 0, 'stdin', 0, 'artifacts', 0);
  end if;
  delete from public.task_output where ctid = any(array(
    select o.ctid from public.task_output o where o.task_id = any(v_ids) limit p_batch));
  get diagnostics n_output = row_count;
  delete from public.task_events where ctid = any(array(
    select e.ctid from public.task_events e where e.task_id = any(v_ids) limit p_batch));
  get diagnostics n_events = row_count;
  delete from public.task_stdin where ctid = any(array(
    select s.ctid from public.task_stdin s where s.task_id = any(v_ids) limit p_batch));
  get diagnostics n_stdin = row_count;
  -- Up to 64 MiB each: far fewer per statement than small rows.
  delete from public.task_artifacts where ctid = any(array(
    select a.ctid from public.task_artifacts a where a.task_id = any(v_ids) limit greatest(1, p_batch / 100)));
  get diagnostics n_artifacts = row_count;
  delete from cogo.purge_queue q where q.kind = 'task' and q.id = any(v_ids)
    and not exists (select 1 from public.task_output o where o.task_id = q.id)
    and not exists (select 1 from public.task_events e where e.task_id = q.id)
    and not exists (select 1 from public.task_stdin s where s.task_id = q.id)
    and not exists (select 1 from public.task_artifacts a where a.task_id = q.id);
  return jsonb_build_object('output', n_output, 'events', n_events, 'stdin', n_stdin, 'artifacts', n_artifacts);
end;
$$;

-- Deletes up to p_batch files and imports of queued purged analyses, then sweeps a repository's
-- blobs that no analysis of it references any more. Returns the rows deleted per table.
create function cogo.purge_analysis_rows(p_batch integer) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_ids uuid[];
  v_repo uuid;
  n_files integer;
  n_imports integer;
  n_blobs integer := 0;
begin
  select array_agg(id) into v_ids from (
    select q.id from cogo.purge_queue q where q.kind = 'analysis' order by q.queued_at limit 20 for update skip locked) x;
  if v_ids is not null then
    delete from public.analysis_files where ctid = any(array(
      select f.ctid from public.analysis_files f where f.analysis_id = any(v_ids) limit p_batch));
    get diagnostics n_files = row_count;
    delete from public.analysis_imports where ctid = any(array(
      select i.ctid from public.analysis_imports i where i.analysis_id = any(v_ids) limit p_batch));
    get diagnostics n_imports = row_count;
    -- An analysis whose rows are gone hands its repository to the blob sweep.
    with done as (
      delete from cogo.purge_queue q where q.kind = 'analysis' and q.id = any(v_ids)
        and not exists (select 1 from public.analysis_files f where f.analysis_id = q.id)
        and not exists (select 1 from public.analysis_imports i where i.analysis_id = q.id)
      returning q.id)
    insert into cogo.purge_queue (kind, id)
      select distinct 'repo', a.repo_id from done join public.analyses a on a.id = done.id
      on conflict do nothing;
  end if;

  -- One repository per pass. Its row lock orders this against cogo.start_analysis (whose upsert
  -- locks the same row): an analysis starting now waits for this sweep, and one that started
  -- before it is seen below, and then nothing is swept (its clone may be storing blobs that no
  -- file references yet).
  select q.id into v_repo from cogo.purge_queue q
    join public.analysis_repos r on r.id = q.id
   where q.kind = 'repo'
   order by q.queued_at limit 1
     for update of q, r skip locked;
  if v_repo is not null and not exists (
       select 1 from public.analyses a where a.repo_id = v_repo and a.phase not in ('completed', 'failed')) then
    delete from public.analysis_blobs where ctid = any(array(
      select b.ctid from public.analysis_blobs b
       where b.repo_id = v_repo
         and not exists (select 1 from public.analyses a join public.analysis_files f on f.analysis_id = a.id
                          where a.repo_id = v_repo and f.hash = b.hash and f.language = b.language)
       limit p_batch));
    get diagnostics n_blobs = row_count;
    if n_blobs < p_batch then
      delete from cogo.purge_queue where kind = 'repo' and id = v_repo;
    end if;
  elsif v_repo is null then
    -- A queued repository that no longer exists (deleted with its blobs).
    delete from cogo.purge_queue q where q.kind = 'repo'
      and not exists (select 1 from public.analysis_repos r where r.id = q.id);
  end if;
  return jsonb_build_object('analysisFiles', coalesce(n_files, 0), 'analysisImports', coalesce(n_imports, 0), 'analysisBlobs', n_blobs);
end;
$$;

-- One pass of retention: bounded work in one short transaction (up to p_batch / 10 tasks and
-- analyses marked, up to p_batch rows deleted per table); the maintenance service calls it
-- again while it reports work done (`more`). p_older_than overrides the policy's task and analysis
-- ages (null: the policy's). Returns the counts of what it marked and deleted.
create function cogo.purge_expired(p_older_than interval default null, p_batch integer default 1000) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  p cogo.retention_policy;
  v_tasks integer;
  v_analyses integer;
  v_rows jsonb;
  v_analysis_rows jsonb;
  v_messages integer;
  v_cutoff timestamp;
  -- Tasks (and analyses) marked per transaction: marking clears a task's submitted files, which
  -- may be megabytes each, so far fewer than the rows deleted per statement.
  v_mark integer := greatest(1, p_batch / 10);
begin
  if p_batch is null or p_batch < 1 or p_batch > 100000 then
    raise exception 'purge_expired: batch must be from 1 to 100000, got %', p_batch using errcode = '22023';
  end if;
  select * into p from cogo.retention_policy;

  -- 1. Ended tasks past the age: marked, files and env cleared, queued for their rows. SKIP LOCKED:
  -- a row someone holds (a cancel, a dashboard hook) is taken on a later pass.
  with due as (
    select t.id from public.tasks t
     where t.purged_at is null and t.status = any(cogo.final_states())
       and t.finished_at < now() - coalesce(p_older_than, p.task_data_after)
     order by t.finished_at
     limit v_mark
       for no key update skip locked),
  marked as (
    update public.tasks t set purged_at = now(), files = '[]', env = '{}'
      from due where t.id = due.id
    returning t.id)
  insert into cogo.purge_queue (kind, id) select 'task', id from marked on conflict do nothing;
  get diagnostics v_tasks = row_count;

  -- 3a. Ended analyses past the age, but never a repository's newest completed one.
  with due as (
    select a.id from public.analyses a
     where a.purged_at is null and a.phase in ('completed', 'failed')
       and a.finished_at < now() - coalesce(p_older_than, p.analysis_after)
       and a.id is distinct from (select n.id from public.analyses n where n.repo_id = a.repo_id and n.phase = 'completed'
                                   order by n.finished_at desc limit 1)
     order by a.finished_at
     limit v_mark
       for no key update skip locked),
  marked as (
    update public.analyses a set purged_at = now() from due where a.id = due.id returning a.id)
  insert into cogo.purge_queue (kind, id) select 'analysis', id from marked on conflict do nothing;
  get diagnostics v_analyses = row_count;

  -- 2. and 3b.
  v_rows := cogo.purge_task_rows(p_batch);
  v_analysis_rows := cogo.purge_analysis_rows(p_batch);

  -- 4. realtime.messages (inserted_at is a timestamp without time zone, written as now()).
  if has_table_privilege('realtime.messages', 'DELETE') then
    v_cutoff := (now() - p.realtime_messages_after)::timestamp;
    delete from realtime.messages m where (m.id, m.inserted_at) in (
      select x.id, x.inserted_at from realtime.messages x where x.inserted_at < v_cutoff limit p_batch);
    get diagnostics v_messages = row_count;
  end if;

  return jsonb_build_object('tasks', v_tasks, 'analyses', v_analyses) || v_rows || v_analysis_rows
      || jsonb_build_object('realtimeMessages', v_messages,
                            -- Another pass has work when any step filled its batch or rows are still queued.
                            'more', v_tasks = v_mark or v_analyses = v_mark or coalesce(v_messages, 0) = p_batch
                                    or exists (select 1 from cogo.purge_queue q where q.kind in ('task', 'analysis'))
                                    or (v_analysis_rows ->> 'analysisBlobs')::integer > 0);
end;
$$;

-- ── tasks of a kind no live worker serves ─────────────────────────────────────────────────────
-- Whether the task's kind (with its labels) has had a live worker within p_wait: a worker heard
-- from within it (now live, or gone since) served it.
create function cogo.kind_served_within(p_task public.tasks, p_wait interval) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.workers w
     where w.kind = p_task.required_kind and p_task.required_labels <@ w.labels
       and (cogo.worker_is_live(w) or w.last_heartbeat_at > now() - p_wait));
$$;

-- queued → failed (`no_worker_for_kind`), when the task has waited p_wait (since it was queued or
-- became claimable) and no live worker has served its kind and labels for as long. Writes a
-- `system` output line saying why, as cogo.expire_task does. Returns the task, or null when it is
-- not (any longer) such a task.
create function cogo.fail_unserved_task(p_task uuid, p_wait interval) returns public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  t public.tasks;
  v_task public.tasks;
  v_reason text;
  v_secs bigint := extract(epoch from p_wait)::bigint;
  -- "1 h", "30 min", "90 s": how long nobody served the kind, as a person reads it.
  v_wait text := case when v_secs % 3600 = 0 then (v_secs / 3600) || ' h'
                      when v_secs % 60 = 0 then (v_secs / 60) || ' min' else v_secs || ' s' end;
begin
  select * into t from public.tasks where id = p_task for update;
  if not found or t.status <> 'queued' or greatest(t.updated_at, t.run_after) > now() - p_wait
     or cogo.kind_served_within(t, p_wait) then
    return null;
  end if;
  v_reason := format('no_worker_for_kind: no live worker of kind "%s"%s for %s; failed instead of waiting longer',
                     t.required_kind,
                     case when cardinality(t.required_labels) > 0 then format(' with labels [%s]', array_to_string(t.required_labels, ',')) else '' end,
                     v_wait);
  update public.tasks
     set status = 'failed', reason = v_reason, finished_at = now(), output_seq = output_seq + 1,
         updated_at = now(), event_seq = event_seq + 1
   where id = t.id returning * into v_task;
  perform cogo.task_status_changed(v_task, t.status);
  insert into public.task_output (task_id, seq, attempt, stream, data)
    values (t.id, v_task.output_seq, t.attempt, 'system', v_reason || E'\n');
  perform realtime.send(jsonb_build_object('taskId', t.id, 'attempt', t.attempt, 'chunks', jsonb_build_array(
    jsonb_build_object('sequence', v_task.output_seq, 'stream', 'system', 'data', v_reason || E'\n', 'timestamp', clock_timestamp()))),
    'realtime_output', 'task:' || t.id, true);
  return v_task;
end;
$$;

-- The maintenance service's pass: up to p_batch queued tasks past the wait (null: the policy's
-- no_worker_fail_after) whose kind nobody served, each through cogo.fail_unserved_task. Skips rows
-- another transaction holds (a claim is taking it: served after all). Returns how many failed.
create function cogo.fail_unserved_tasks(p_wait interval default null, p_batch integer default 100) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  v_wait interval := coalesce(p_wait, (select no_worker_fail_after from cogo.retention_policy));
  v_id uuid;
  n integer := 0;
begin
  for v_id in
    select t.id from public.tasks t
     where t.status = 'queued' and greatest(t.updated_at, t.run_after) <= now() - v_wait
       and not cogo.kind_served_within(t, v_wait)
     order by t.created_at
     limit p_batch
       for update skip locked
  loop
    -- (A row `is not null` only when every field is: test its id.)
    if (cogo.fail_unserved_task(v_id, v_wait)).id is not null then
      n := n + 1;
    end if;
  end loop;
  return n;
end;
$$;

-- ── /health: one tenant's unserved kind is that tenant's problem ──────────────────────────────
-- As before (20261126000100), except `queuedWithoutWorker` lists only tasks the caller may use:
-- a user's own, every task for the service role, none for anon. The route says "degraded" for a
-- user with such tasks, never for everyone. `noWorkerFailAfterMs`: when they fail.
create or replace function cogo.health() returns jsonb
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
                 and cogo.caller_may_use(t.owner)
                 and not exists (select 1 from public.workers w
                                  where cogo.worker_is_live(w) and w.kind = t.required_kind and t.required_labels <@ w.labels)
               group by required_kind, required_labels) q),
    'noWorkerFailAfterMs', (select floor(extract(epoch from no_worker_fail_after) * 1000)::bigint from cogo.retention_policy)
  );
$$;

-- ── grants (as 20261126000800: PUBLIC nothing, the service role everything) ───────────────────
revoke all on cogo.retention_policy, cogo.purge_queue from public, anon, authenticated;
revoke execute on function
  cogo.retention_policy(), cogo.set_retention_policy(jsonb), cogo.purge_task_rows(integer),
  cogo.purge_analysis_rows(integer), cogo.purge_expired(interval, integer),
  cogo.kind_served_within(public.tasks, interval), cogo.fail_unserved_task(uuid, interval),
  cogo.fail_unserved_tasks(interval, integer)
  from public;
grant execute on function
  cogo.retention_policy(), cogo.set_retention_policy(jsonb), cogo.purge_task_rows(integer),
  cogo.purge_analysis_rows(integer), cogo.purge_expired(interval, integer),
  cogo.kind_served_within(public.tasks, interval), cogo.fail_unserved_task(uuid, interval),
  cogo.fail_unserved_tasks(interval, integer)
  to service_role;
