-- Artifacts: files a task names (paths or globs, `artifacts` in the execute request) are collected
-- from its workspace after it exits (worker/sandbox/artifacts.ts: no symlinks, no devices, size
-- caps) and stored here, one row per path: the bytes, or why they were refused.
-- Served by GET /tasks/:id/artifacts and GET /tasks/:id/artifacts/<path>.
-- The task's own columns (artifact_patterns, and network: only workers started with
-- --allow-network grant it) are in 20261126000100.

create table public.task_artifacts (
  task_id uuid not null references public.tasks (id) on delete cascade,
  path text not null,
  attempt integer not null,
  size_bytes bigint,
  sha256 text,
  content bytea,
  -- Why the file was not collected (a symlink, too large, ...); null when content is set.
  error text,
  created_at timestamptz not null default clock_timestamp(),
  primary key (task_id, path),
  check ((content is null) <> (error is null))
);

alter table public.task_artifacts enable row level security;
create policy "owners read their artifacts" on public.task_artifacts for select to authenticated
  using (exists (select 1 from public.tasks t where t.id = task_id and t.owner = (select auth.uid())));

-- Sets the sandbox options enqueue_task does not know of, for a task still queued, in the
-- transaction that enqueued it (the API does both). A replay of an idempotent request finds the
-- task already set up or claimed: no-op.
create function cogo.request_sandbox_options(p_task uuid, p_artifacts text[], p_network boolean) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  v_task := cogo.lock_callers_task(p_task);
  if v_task.status = 'queued' and v_task.artifact_patterns = '{}' and not v_task.network then
    update public.tasks set artifact_patterns = p_artifacts, network = p_network where id = p_task;
  end if;
end;
$$;

-- Stores one collected artifact (or why it was refused) for the worker holding the attempt.
-- An attempt's artifacts replace those of earlier attempts.
create function cogo.store_artifact(p_task uuid, p_attempt integer, p_worker uuid, p_path text, p_content bytea, p_error text)
returns void language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.fence(p_task, p_attempt, p_worker);
  delete from public.task_artifacts where task_id = p_task and attempt <> p_attempt;
  insert into public.task_artifacts (task_id, path, attempt, size_bytes, sha256, content, error)
  values (p_task, p_path, p_attempt, octet_length(p_content), encode(sha256(p_content), 'hex'), p_content, p_error)
  on conflict (task_id, path) do update
    set attempt = excluded.attempt, size_bytes = excluded.size_bytes, sha256 = excluded.sha256,
        content = excluded.content, error = excluded.error, created_at = clock_timestamp();
end;
$$;
