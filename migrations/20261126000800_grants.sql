-- Who may read what and call which function, in one place (schema.sql lists the result).
--
-- Tables: clients read through RLS (the policies sit beside each table) and never write; every
-- write goes through a cogo.* function. Functions: PUBLIC gets nothing; the service role (the edge
-- function with the service key, workers, operators) may call every one; signed-in users the
-- user-facing ones, each of which checks the caller itself (cogo.caller_may_use); anon only what
-- GET /health shows. Supabase's database linter (security advisors) reports nothing on this
-- schema: tests/faults/tenants.test.ts runs it.

revoke all on schema cogo from public;
grant usage on schema cogo to anon, authenticated, service_role;

-- ── tables ────────────────────────────────────────────────────────────────────────────────────
revoke insert, update, delete, truncate on
  public.workers, public.tasks, public.task_output, public.task_events, public.task_stdin, public.task_artifacts,
  public.workspaces, public.workspace_files, public.plans, public.plan_steps, public.plan_events,
  public.analysis_repos, public.analyses, public.analysis_blobs, public.analysis_files, public.analysis_batches,
  public.analysis_imports
  from anon, authenticated;
grant select on public.analysis_repos, public.analyses, public.analysis_blobs, public.analysis_files,
  public.analysis_batches, public.analysis_imports to authenticated, service_role;

-- A worker's name, version and host facts are for the service role: users may select the public
-- columns only (what cogo.worker_public_summary shows), anon nothing.
revoke select on public.workers from anon, authenticated;
grant select (id, kind, labels, capacity, status, lease_ms, last_heartbeat_at, created_at) on public.workers to authenticated;

-- ── functions ─────────────────────────────────────────────────────────────────────────────────
revoke execute on all functions in schema cogo from public;
grant execute on all functions in schema cogo to service_role;

-- The state lists: immutable constants, in index predicates and in policies' plans, so every
-- role that reads tasks needs them.
grant execute on function cogo.active_states(), cogo.final_states() to anon, authenticated;

-- GET /health, for anyone.
grant execute on function cogo.health(), cogo.live_worker_kinds(), cogo.block_health()
  to anon, authenticated;

-- The user-facing functions (each checks its caller) and the topic checks of the Realtime policies.
grant execute on function
  cogo.enqueue_task(jsonb), cogo.cancel_task(uuid), cogo.write_stdin(uuid, text, boolean),
  cogo.set_block_options(uuid, jsonb, jsonb), cogo.request_sandbox_options(uuid, text[], boolean),
  cogo.request_recovery(uuid, jsonb),
  cogo.create_plan(jsonb), cogo.cancel_plan(uuid), cogo.write_files(uuid, jsonb, text[]), cogo.workspace_limits(),
  cogo.start_analysis(jsonb), cogo.analysis_policy(),
  cogo.task_summary(public.tasks), cogo.queue_depth(), cogo.fleet_workers(boolean),
  cogo.owns_topic(text), cogo.owns_plan_topic(text), cogo.owns_analysis_topic(text)
  to authenticated;
