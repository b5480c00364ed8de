-- Analysis batches store their results in parts while they parse (issue 8: Postgres stores one
-- part on its core while the worker parses the next, instead of the whole batch after parsing).
-- `store_analysis_batch_results` writes results on the blobs without finishing the batch;
-- `complete_analysis_batch` now stores its (last) part through it, so there is one UPDATE.
-- Writing a blob's results twice (a retried batch) writes the same values.
-- The clone step stores blob chunks on two connections at once: cogo.fence locks the task row FOR
-- UPDATE, which ran them one after the other, so store_analysis_blobs now checks the same lease
-- under a share lock (a claim or release of the task still waits for every chunk in flight).

-- cogo.fence's check (20261125000100), holding the task row FOR SHARE instead of FOR UPDATE.
create function cogo.fence_shared(p_task uuid, p_attempt integer, p_worker uuid) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform 1 from public.tasks
   where id = p_task and attempt = p_attempt and worker_id = p_worker
     and status in ('claimed', 'running', 'blocked', 'recovering') and lease_expires_at > now()
     for share;
  if not found then
    raise exception 'lease lost: task % attempt % no longer belongs to worker %', p_task, p_attempt, p_worker
      using errcode = 'CG409';
  end if;
end;
$$;

-- As in 20261125000500, fenced by cogo.fence_shared.
create or replace function cogo.store_analysis_blobs(p_task uuid, p_attempt integer, p_worker uuid, p_repo uuid,
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

-- Stores `p_results` ([{hash, language, code, comment, blank, symbols, imports, parser, parseError,
-- terms}], see complete_analysis_batch) of the caller's batch task. Returns the blobs updated, 0
-- when the batch is already done or its analysis no longer analysing.
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

-- As in 20261125000500, with the UPDATE moved into store_analysis_batch_results; the progress
-- message counts the batch's blobs (its results may have landed in several parts).
create or replace function cogo.complete_analysis_batch(p_task uuid, p_attempt integer, p_worker uuid, p_results jsonb)
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

revoke execute on function cogo.store_analysis_batch_results(uuid, integer, uuid, jsonb), cogo.fence_shared(uuid, integer, uuid) from public;
grant execute on function cogo.store_analysis_batch_results(uuid, integer, uuid, jsonb), cogo.fence_shared(uuid, integer, uuid) to service_role;
