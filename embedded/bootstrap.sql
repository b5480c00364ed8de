-- The parts of a Supabase database that our migrations and the embedded stack rely on.
-- Applied by the embedded default only (never on a real project, which already has them).
-- Definitions copied from supabase/postgres init scripts, supabase/auth and supabase/realtime
-- migrations (see ../shared/SUPABASE-FACTS.md §2). Idempotent: safe on every start.

-- Run as the superuser supabase_admin (embedded/postgres.ts), which owns every schema and object
-- below, as on hosted; migrations then run as `postgres`, which is not a superuser
-- (embedded/migrate.ts), so one that needs more than hosted gives fails here too
-- (tests/foundation/hosted-roles.test.ts).

-- Roles (supabase/postgres init-scripts 00000000000000-initial-schema.sql, migrations
-- 10000000000000_demote-postgres.sql, 20230713185014/20251215120934 supabase_superuser,
-- 20250605172253 grant_with_admin, 20250421084701 revoke_admin_roles_from_postgres).
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator noinherit login;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_realtime_admin') then
    create role supabase_realtime_admin nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_superuser') then
    create role supabase_superuser;
  end if;
  -- embedded/postgres.ts creates it with its password before this runs; here for a bare cluster.
  if not exists (select from pg_roles where rolname = 'postgres') then
    create role postgres login;
  end if;
end
$$;
alter role postgres nosuperuser createdb createrole login replication bypassrls;
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres with admin option;
grant pg_monitor, pg_signal_backend to supabase_superuser;
grant supabase_superuser to postgres;
grant anon, authenticated, service_role to supabase_realtime_admin;

-- `supabase db push` connects to the project's database as postgres, which can create schemas
-- there (hosted: GRANT ALL ON DATABASE postgres TO postgres) and tables in public. The database
-- is made by supabase_admin here (initdb's role, or `create database` of a scratch one), so
-- postgres is made its owner: since PG 15 that is what grants CREATE on schema public.
do $$
begin
  execute format('alter database %I owner to postgres', current_database());
end
$$;

grant usage on schema public to postgres, anon, authenticated, service_role;
-- Tables, functions and sequences that migrations (postgres) or supabase_admin create in public
-- are granted to the API roles, as on hosted.
alter default privileges for role postgres in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public grant all on sequences to postgres, anon, authenticated, service_role;

create schema if not exists extensions;
alter schema extensions owner to supabase_admin;
grant usage on schema extensions to anon, authenticated, service_role;
grant all on schema extensions to postgres;

-- auth helpers (supabase/auth migrations 20220224000811, 20220531120530)
-- Owned by supabase_admin; postgres may use it and run its functions but create nothing in it
-- (hosted revoked CREATE in 20250421084701).
create schema if not exists auth;
alter schema auth owner to supabase_admin;
grant usage on schema auth to postgres, anon, authenticated, service_role;

create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';

create or replace function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';

create or replace function auth.email() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';

create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
grant all on all routines in schema auth to postgres;

-- realtime (supabase/realtime lib/realtime/tenants/repo/migrations)
-- Owned by supabase_admin (init-scripts 00000000000003-realtime-schema.sql); postgres has USAGE
-- (with grant option, 20260506172403) and no CREATE.
create schema if not exists realtime;
alter schema realtime owner to supabase_admin;
grant usage on schema realtime to anon, authenticated, service_role;
grant usage on schema realtime to postgres with grant option;
grant all on schema realtime to supabase_realtime_admin with grant option;

create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp not null default now(),
  inserted_at timestamp not null default now(),
  id uuid not null default gen_random_uuid(),
  binary_payload bytea,
  constraint messages_payload_exclusive check (payload is null or binary_payload is null) not valid,
  primary key (id, inserted_at)
) partition by range (inserted_at);
create index if not exists messages_inserted_at_topic_index on realtime.messages (inserted_at desc, topic)
  where extension = 'broadcast' and private is true;
alter table realtime.messages enable row level security;
alter table realtime.messages owner to supabase_realtime_admin;
grant select, insert, update on realtime.messages to postgres, anon, authenticated, service_role;

-- Policies on realtime.messages, the way hosted allows them. There the table belongs to
-- supabase_realtime_admin and postgres is no member of it, yet `create policy … on realtime.messages`
-- works as postgres: the supautils extension runs policy commands of listed roles on listed tables
-- with raised privileges, and nothing else. Plain Postgres has no such hook; the narrowest stand-in
-- is an event trigger pair around CREATE/ALTER/DROP POLICY only: when the session user is postgres,
-- realtime.messages is lent to postgres for that one statement (same transaction: a failing
-- statement rolls the loan back) and given back at its end, with postgres's own grants restored.
-- Any other statement on realtime.* (alter table, drop, truncate, delete, create table) still
-- fails for postgres, as on hosted. Postgres's owner change takes the same ACCESS EXCLUSIVE lock
-- on realtime.messages that the policy statement itself takes on hosted.
create schema if not exists realtime_embedded;
alter schema realtime_embedded owner to supabase_admin;

create or replace function realtime_embedded.lend_policy_table() returns event_trigger
language plpgsql security definer set search_path = '' as $$
begin
  -- The target is not known before the statement runs; a statement text that never names
  -- "messages" cannot be about realtime.messages, and lending it would lock realtime.messages
  -- (ACCESS EXCLUSIVE, to commit) for a policy change on another table, which hosted does not.
  if session_user::text = 'postgres' and current_query() ~* 'messages'
     and (select c.relowner from pg_catalog.pg_class c where c.oid = 'realtime.messages'::regclass) <> 'postgres'::regrole then
    alter table realtime.messages owner to postgres;
  end if;
end;
$$;

create or replace function realtime_embedded.return_policy_table() returns event_trigger
language plpgsql security definer set search_path = '' as $$
begin
  if (select c.relowner from pg_catalog.pg_class c where c.oid = 'realtime.messages'::regclass) = 'postgres'::regrole then
    alter table realtime.messages owner to supabase_realtime_admin;
    -- The owner change folded postgres's grant into the owner's; give back exactly hosted's.
    grant select, insert, update on realtime.messages to postgres;
  end if;
end;
$$;
revoke all on function realtime_embedded.lend_policy_table(), realtime_embedded.return_policy_table() from public;

drop event trigger if exists realtime_embedded_lend_policy_table;
create event trigger realtime_embedded_lend_policy_table on ddl_command_start
  when tag in ('CREATE POLICY', 'ALTER POLICY', 'DROP POLICY')
  execute function realtime_embedded.lend_policy_table();
drop event trigger if exists realtime_embedded_return_policy_table;
create event trigger realtime_embedded_return_policy_table on ddl_command_end
  when tag in ('CREATE POLICY', 'ALTER POLICY', 'DROP POLICY')
  execute function realtime_embedded.return_policy_table();

create or replace function realtime.topic() returns text language sql stable as $$
  select nullif(current_setting('realtime.topic', true), '')::text;
$$;

create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void language plpgsql as $$
declare
  generated_id uuid;
  final_payload jsonb;
begin
  begin
    generated_id := gen_random_uuid();
    if payload ? 'id' then
      final_payload := payload;
    else
      final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
    end if;
    execute format('SET LOCAL realtime.topic TO %L', topic);
    insert into realtime.messages (id, payload, event, topic, private, extension)
    values (generated_id, final_payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'WarnSendingBroadcastMessage: %', SQLERRM;
  end;
end;
$$;

create or replace function realtime.send_binary(payload bytea, event text, topic text, private boolean default true)
returns void language plpgsql as $$
declare
  generated_id uuid;
begin
  begin
    generated_id := gen_random_uuid();
    execute format('SET LOCAL realtime.topic TO %L', topic);
    insert into realtime.messages (id, binary_payload, event, topic, private, extension)
    values (generated_id, payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'WarnSendingBroadcastMessage: %', SQLERRM;
  end;
end;
$$;

create or replace function realtime.broadcast_changes(
  topic_name text, event_name text, operation text, table_name text, table_schema text,
  new record, old record, level text default 'ROW'
) returns void language plpgsql as $$
declare
  row_data jsonb := '{}'::jsonb;
begin
  if level = 'STATEMENT' then
    raise exception 'function can only be triggered for each row, not for each statement';
  end if;
  if operation = 'INSERT' or operation = 'UPDATE' or operation = 'DELETE' then
    row_data := jsonb_build_object('old_record', old, 'record', new, 'operation', operation,
                                   'table', table_name, 'schema', table_schema);
    perform realtime.send(row_data, event_name, topic_name);
  else
    raise exception 'Unexpected operation type: %', operation;
  end if;
exception
  when others then
    raise exception 'Failed to process the row: %', SQLERRM;
end;
$$;

-- Embedded-only delivery path. As the hosted Realtime server does, the embedded Realtime endpoint
-- reads inserted realtime.messages rows through logical replication (embedded/realtime/database-feed.ts)
-- from this publication. An earlier version NOTIFYed each row from a trigger: Postgres serializes
-- the commits of every transaction that notifies, so each task transaction waited for the others.
drop trigger if exists notify_message on realtime.messages;
drop function if exists realtime_embedded.notify_message();
do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'realtime_embedded_messages') then
    create publication realtime_embedded_messages for table realtime.messages
      with (publish = 'insert', publish_via_partition_root = true);
  end if;
end;
$$;

-- Daily partitions, yesterday .. today+3, as the Realtime server keeps them (lib/realtime/tenants.ex
-- create_messages_partitions), run hourly by the embedded Realtime (embedded/realtime/index.ts).
-- Partitions of days before now - 72 hours are dropped, as the hosted Realtime's janitor does
-- (lib/realtime/messages.ex delete_old_messages): the retention migration (20261206000300) relies
-- on that on both stacks, and only deletes rows older than its policy where it may.
create or replace function realtime_embedded.maintain_partitions() returns void language plpgsql as $$
declare
  d date;
  part record;
  v_keep_from date := ((now() at time zone 'utc') - interval '72 hours')::date;
begin
  for d in select generate_series(current_date - 1, current_date + 3, interval '1 day')::date loop
    execute format(
      'create table if not exists realtime.%I partition of realtime.messages for values from (%L) to (%L)',
      'messages_' || to_char(d, 'YYYY_MM_DD'), d, d + 1);
  end loop;
  for part in
    select c.relname from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'realtime.messages'::regclass
      and c.relname ~ '^messages_\d{4}_\d{2}_\d{2}$'
      and c.relname < 'messages_' || to_char(v_keep_from, 'YYYY_MM_DD')
  loop
    execute format('drop table realtime.%I', part.relname);
  end loop;
end;
$$;
select realtime_embedded.maintain_partitions();
