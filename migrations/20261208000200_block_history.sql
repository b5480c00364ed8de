-- What a command's successful runs looked like, for the block windows of its next runs (README
-- "Block detection and recovery"). One row per owner and command key (a hash of the normalized
-- command, or of a plan step's name and command: worker/blocks/history.ts): the longest silent-busy
-- and silent-idle stretches any successful run showed. Bounded: a row per key, two maxima, a count.
-- Workers write it (cogo.record_command_history) when a task succeeds without a block, and read it
-- when they start one; users neither read nor write it.

create table cogo.command_history (
  owner uuid,
  command_key text not null check (length(command_key) <= 128),
  runs integer not null default 0 check (runs >= 0),
  max_busy_ms integer not null default 0 check (max_busy_ms >= 0),
  max_quiet_ms integer not null default 0 check (max_quiet_ms >= 0),
  updated_at timestamptz not null default now(),
  -- Ownerless tasks (the operator's) share one history per command.
  constraint command_history_key unique nulls not distinct (owner, command_key)
);
alter table cogo.command_history enable row level security;

comment on table cogo.command_history is
  'Longest silent stretches of each command''s successful runs; the worker derives the loop and stall windows from them';

-- A successful run's stretches folded in: the maxima only grow (a run that once needed a long
-- silent spell may need it again), capped at a day so one odd value cannot overflow the window.
create function cogo.record_command_history(p_owner uuid, p_key text, p_busy_ms integer, p_quiet_ms integer)
returns void
language sql security definer set search_path = '' as $$
  insert into cogo.command_history as h (owner, command_key, runs, max_busy_ms, max_quiet_ms)
  values (p_owner, p_key, 1, least(greatest(p_busy_ms, 0), 86400000), least(greatest(p_quiet_ms, 0), 86400000))
  on conflict on constraint command_history_key do update
     set runs = h.runs + 1,
         max_busy_ms = greatest(h.max_busy_ms, excluded.max_busy_ms),
         max_quiet_ms = greatest(h.max_quiet_ms, excluded.max_quiet_ms),
         updated_at = now();
$$;

-- ── grants (as 20261126000800_grants.sql: PUBLIC nothing, the service role everything) ─────────
revoke all on cogo.command_history from public, anon, authenticated;
grant select, insert, update, delete on cogo.command_history to service_role;
revoke execute on function cogo.record_command_history(uuid, text, integer, integer) from public;
grant execute on function cogo.record_command_history(uuid, text, integer, integer) to service_role;
