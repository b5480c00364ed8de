-- Findings of Supabase's database linter (security advisors), which tests/faults/tenants.test.ts
-- runs on every migration and expects to report nothing.

-- Lint 0011 function_search_path_mutable: functions without a fixed search_path. These two return
-- constants, so an empty search_path changes nothing else.
alter function cogo.workspace_limits() set search_path = '';
alter function cogo.rerun_priority() set search_path = '';

-- Lint 0008 rls_enabled_no_policy: the operator's analysis policy row is read through
-- cogo.analysis_policy() and edited by the service role (which bypasses RLS); no client role
-- reads or writes it, which this policy states.
create policy analysis_policy_no_client_access on cogo.analysis_policy
  for all to anon, authenticated using (false) with check (false);
