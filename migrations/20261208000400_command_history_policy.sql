-- cogo.command_history (20261208000200) is the workers' alone: RLS on, no grant to clients. An
-- explicit deny-all policy says so, as cogo.outcome_targets does, and keeps Supabase's database
-- linter (rls_enabled_no_policy) quiet about it (tests/faults/tenants.test.ts).
create policy command_history_no_client_access on cogo.command_history
  for all to anon, authenticated using (false) with check (false);
