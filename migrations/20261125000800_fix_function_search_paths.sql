-- Supabase's database linter (security advisors, lint 0011 function_search_path_mutable) flags
-- functions without a fixed search_path; tests/faults/tenants.test.ts runs it on every migration.
-- These two return constants, so an empty search_path changes nothing else.
alter function cogo.workspace_limits() set search_path = '';
alter function cogo.rerun_priority() set search_path = '';
