-- The SQL entry point (issue 21): a row landing in a user's table (a trigger) or a client's
-- `supabase.rpc('submit_task', …)` starts a task, and the task's outcome can come back into a row.
--
--   public.submit_task(spec jsonb, notify jsonb default null, owner uuid default null) returns uuid
--
-- * In `public` because that is the schema Supabase's Data API exposes (PostgREST serves
--   `POST /rest/v1/rpc/submit_task` there); `cogo` is not exposed. The embedded stack has no
--   PostgREST: locally it is called from SQL (a trigger, psql, a service's connection).
-- * SECURITY INVOKER: it runs as its caller, so `current_user` says who is calling (a definer
--   function would always see its owner). The writes go through cogo.* functions that check the
--   caller themselves, as the HTTP path does.
-- * Validation: POST /execute validates with zod (functions/_shared/schemas.ts), which SQL cannot
--   run. cogo.check_task_spec repeats its checks in SQL with the same bounds (cogo.task_spec_bounds,
--   compared with the TypeScript constants by tests/sql/submit-task.test.ts) and names the field
--   the same way ("limits.memoryBytes: …"), SQLSTATE 22023. Differences (docs: README "From SQL"):
--   lengths count characters, not UTF-16 units; `blockDetection`, `recovery` and `artifacts` are
--   refused (use POST /execute); workspace paths get the same rules as validateWorkspacePath
--   except that "a/./b" is not normalised to "a/b" (the worker normalises it).
-- * Quotas and rate limits: cogo.enqueue_task is the metered one (execute bucket, queued-task
--   and stored-bytes quotas), exactly as POST /execute; the memory admission POST /execute does
--   in TypeScript (functions/_shared/admission.ts) is repeated here against cogo.kind_memory_budgets.
-- * Owner: auth.uid(). `owner` may name someone else only when the caller is privileged: the
--   service role, or a role that owns tables (postgres; a SECURITY DEFINER trigger function of the
--   table's owner runs as it). A signed-in user passing another owner gets 42501; anon cannot
--   execute it. A privileged caller submitting for an owner is metered as that owner.
--
-- The outcome. The simplest safe design we found: the owner of a table registers it once as an
-- outcome target (cogo.register_outcome_target: which column is the row key, which holds the row's
-- owner, and which get status, exit code and output tail); a submit names `notify: {table, key}`;
-- every status change of the task writes that row (the final one with exit code and output tail).
-- Why not "any table the user can write under RLS": the transition runs in the worker's
-- transaction as the functions' owner, and Postgres refuses SET ROLE inside a SECURITY DEFINER
-- function, so the write cannot take the user's privileges; and a table where users could write
-- their own `status` is exactly the table a grader must not use. So the table's owner decides, and
-- the write is confined to rows whose owner column equals the task's owner: a task never writes
-- another tenant's row, whatever key it names (tests/sql/submit-task.test.ts tries). A failing
-- write (table dropped, a trigger on it raising) is a WARNING, never a failed transition.

-- ── bounds and validation ─────────────────────────────────────────────────────────────────────
-- What ExecuteRequestSchema (functions/_shared/schemas.ts) allows, from functions/_shared/limits.ts,
-- plans/limits.ts USER_PRIORITY, MAX_FILES/MAX_FILES_BYTES; a test compares the two.
create function cogo.task_spec_bounds() returns jsonb
language sql immutable set search_path = '' as $$
  select '{
    "commandChars": 100000, "argvItems": 1000, "argChars": 100000,
    "files": 1000, "filesChars": 33554432, "envVars": 256, "envValueChars": 32768,
    "priority": [-1000, 899], "timeoutMs": [100, 3600000], "maxAttempts": [1, 20],
    "labels": 32, "idempotencyKeyChars": 200,
    "defaultMemoryBytes": 1073741824, "maxMemoryBytes": 8589934592,
    "limits": {
      "cpuTimeMs": [100, 3600000], "memoryBytes": [16777216, 1099511627776], "processes": [1, 4096],
      "openFiles": [16, 65536], "fileSizeBytes": [1024, 4294967296], "workspaceBytes": [1048576, 8589934592],
      "outputBytes": [1024, 268435456]
    }
  }'::jsonb
$$;

-- Raises 22023 "<field>: <problem>" unless v is a whole JSON number within [lo, hi].
create function cogo.check_spec_int(p_field text, v jsonb, lo numeric, hi numeric) returns void
language plpgsql immutable set search_path = '' as $$
begin
  if v is null then
    return;
  end if;
  if jsonb_typeof(v) <> 'number' or v::text::numeric <> trunc(v::text::numeric) then
    raise exception '%: expected a whole number, got %', p_field, left(v::text, 100) using errcode = '22023';
  end if;
  if v::text::numeric < lo or v::text::numeric > hi then
    raise exception '%: % is outside %…%', p_field, v::text, lo, hi using errcode = '22023';
  end if;
end;
$$;

-- A workspace path, by validateWorkspacePath's rules (functions/_shared/paths.ts).
create function cogo.check_spec_path(p_field text, p text) returns void
language plpgsql immutable set search_path = '' as $$
declare
  v_parts text[];
begin
  if p ~ '[\x01-\x1f\x7f]' then
    raise exception '%: workspace path contains a control character', p_field using errcode = '22023';
  elsif position('\' in p) > 0 then
    raise exception '%: workspace path contains a backslash', p_field using errcode = '22023';
  elsif left(p, 1) = '/' then
    raise exception '%: workspace path is absolute', p_field using errcode = '22023';
  elsif octet_length(p) > 4095 then
    raise exception '%: workspace path is longer than 4095 bytes', p_field using errcode = '22023';
  end if;
  v_parts := array(select x from unnest(string_to_array(p, '/')) x where x not in ('', '.'));
  if cardinality(v_parts) = 0 then
    raise exception '%: workspace path is empty', p_field using errcode = '22023';
  elsif '..' = any(v_parts) then
    raise exception '%: workspace path contains ''..''', p_field using errcode = '22023';
  elsif cardinality(v_parts) > 64 then
    raise exception '%: workspace path is deeper than 64 components', p_field using errcode = '22023';
  elsif exists (select 1 from unnest(v_parts) x where octet_length(x) > 255) then
    raise exception '%: workspace path has a component longer than 255 bytes', p_field using errcode = '22023';
  end if;
end;
$$;

-- POST /execute's checks of a task spec, in SQL (see the header for what differs). The first
-- problem found raises 22023 naming its field; a valid spec returns nothing. SECURITY DEFINER
-- only so a signed-in caller needs no grant on the helpers it uses; it reads the fleet's budgets
-- (cogo.kind_memory_budgets, granted to users anyway) and nothing else.
create function cogo.check_task_spec(spec jsonb) returns void
language plpgsql stable security definer set search_path = '' as $$
declare
  b jsonb := cogo.task_spec_bounds();
  v_key text;
  v jsonb;
  i integer;
  v_paths text[] := '{}';
  v_chars bigint := 0;
  v_kind text;
  v_budget jsonb;
  v_mem numeric;
  v_max numeric;
begin
  if spec is null or jsonb_typeof(spec) <> 'object' then
    raise exception 'spec: expected a JSON object such as {"command": "npm test"}' using errcode = '22023';
  end if;
  select k into v_key from jsonb_object_keys(spec) k
   where k not in ('command', 'argv', 'files', 'env', 'stdin', 'priority', 'timeoutMs', 'maxAttempts', 'limits',
                   'requirements', 'idempotencyKey', 'network')
   order by k limit 1;
  if v_key in ('blockDetection', 'recovery', 'artifacts') then
    raise exception '%: not supported by submit_task (use POST /execute)', v_key using errcode = '22023';
  elsif v_key is not null then
    raise exception '%: unknown field (known: command, argv, files, env, stdin, priority, timeoutMs, maxAttempts, limits, requirements, idempotencyKey, network)', v_key
      using errcode = '22023';
  end if;

  -- command xor argv, bounded, no NUL (jsonb cannot hold a NUL character at all)
  if (spec ? 'command') = (spec ? 'argv') then
    raise exception 'command: give exactly one of command (run by /bin/sh -c in the sandbox) or argv' using errcode = '22023';
  end if;
  if spec ? 'command' then
    if jsonb_typeof(spec -> 'command') <> 'string' then
      raise exception 'command: expected a string' using errcode = '22023';
    elsif length(spec ->> 'command') not between 1 and (b ->> 'commandChars')::integer then
      raise exception 'command: % characters; a command has 1 to % characters', length(spec ->> 'command'), b ->> 'commandChars' using errcode = '22023';
    end if;
  else
    if jsonb_typeof(spec -> 'argv') <> 'array' then
      raise exception 'argv: expected an array of strings' using errcode = '22023';
    elsif jsonb_array_length(spec -> 'argv') not between 1 and (b ->> 'argvItems')::integer then
      raise exception 'argv: % items; argv has 1 to % items', jsonb_array_length(spec -> 'argv'), b ->> 'argvItems' using errcode = '22023';
    end if;
    for i in 0 .. jsonb_array_length(spec -> 'argv') - 1 loop
      v := spec -> 'argv' -> i;
      if jsonb_typeof(v) <> 'string' then
        raise exception 'argv.%: expected a string', i using errcode = '22023';
      elsif length(v #>> '{}') > (b ->> 'argChars')::integer then
        raise exception 'argv.%: longer than % characters', i, b ->> 'argChars' using errcode = '22023';
      end if;
    end loop;
  end if;

  -- files
  if spec ? 'files' then
    if jsonb_typeof(spec -> 'files') <> 'array' then
      raise exception 'files: expected an array of {path, content}' using errcode = '22023';
    elsif jsonb_array_length(spec -> 'files') > (b ->> 'files')::integer then
      raise exception 'files: % files; at most %', jsonb_array_length(spec -> 'files'), b ->> 'files' using errcode = '22023';
    end if;
    for i in 0 .. jsonb_array_length(spec -> 'files') - 1 loop
      v := spec -> 'files' -> i;
      if jsonb_typeof(v) <> 'object' then
        raise exception 'files.%: expected {path, content, encoding?, executable?}', i using errcode = '22023';
      end if;
      select k into v_key from jsonb_object_keys(v) k where k not in ('path', 'content', 'encoding', 'executable') limit 1;
      if v_key is not null then
        raise exception 'files.%.%: unknown field', i, v_key using errcode = '22023';
      elsif jsonb_typeof(v -> 'path') is distinct from 'string' then
        raise exception 'files.%.path: expected a string', i using errcode = '22023';
      elsif jsonb_typeof(v -> 'content') is distinct from 'string' then
        raise exception 'files.%.content: expected a string', i using errcode = '22023';
      elsif v ? 'encoding' and (v ->> 'encoding') is distinct from 'utf8' and (v ->> 'encoding') is distinct from 'base64' then
        raise exception 'files.%.encoding: utf8 or base64', i using errcode = '22023';
      elsif v ? 'executable' and jsonb_typeof(v -> 'executable') <> 'boolean' then
        raise exception 'files.%.executable: expected true or false', i using errcode = '22023';
      end if;
      perform cogo.check_spec_path(format('files.%s.path', i), v ->> 'path');
      v_paths := v_paths || (v ->> 'path');
      v_chars := v_chars + length(v ->> 'content');
    end loop;
    if v_chars > (b ->> 'filesChars')::bigint then
      raise exception 'files: files total more than % bytes', b ->> 'filesChars' using errcode = '22023';
    elsif cardinality(v_paths) <> (select count(distinct p) from unnest(v_paths) p) then
      raise exception 'files: two files have the same path' using errcode = '22023';
    end if;
  end if;

  -- env
  if spec ? 'env' then
    if jsonb_typeof(spec -> 'env') <> 'object' then
      raise exception 'env: expected an object of NAME: value strings' using errcode = '22023';
    end if;
    for v_key, v in select * from jsonb_each(spec -> 'env') loop
      if v_key !~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$' then
        raise exception 'env.%: env names are letters, digits and _, not starting with a digit', left(v_key, 130) using errcode = '22023';
      elsif jsonb_typeof(v) <> 'string' then
        raise exception 'env.%: expected a string', v_key using errcode = '22023';
      elsif length(v #>> '{}') > (b ->> 'envValueChars')::integer then
        raise exception 'env.%: longer than % characters', v_key, b ->> 'envValueChars' using errcode = '22023';
      end if;
    end loop;
    if (select count(*) from jsonb_object_keys(spec -> 'env')) > (b ->> 'envVars')::integer then
      raise exception 'env: at most % env variables', b ->> 'envVars' using errcode = '22023';
    end if;
  end if;

  if spec ? 'stdin' and (spec ->> 'stdin') is distinct from 'closed' and (spec ->> 'stdin') is distinct from 'pipe' then
    raise exception 'stdin: "closed" or "pipe"' using errcode = '22023';
  end if;
  perform cogo.check_spec_int('priority', spec -> 'priority', (b #>> '{priority,0}')::numeric, (b #>> '{priority,1}')::numeric);
  perform cogo.check_spec_int('timeoutMs', spec -> 'timeoutMs', (b #>> '{timeoutMs,0}')::numeric, (b #>> '{timeoutMs,1}')::numeric);
  perform cogo.check_spec_int('maxAttempts', spec -> 'maxAttempts', (b #>> '{maxAttempts,0}')::numeric, (b #>> '{maxAttempts,1}')::numeric);
  if spec ? 'idempotencyKey' and (jsonb_typeof(spec -> 'idempotencyKey') <> 'string'
                                  or length(spec ->> 'idempotencyKey') not between 1 and (b ->> 'idempotencyKeyChars')::integer) then
    raise exception 'idempotencyKey: a string of 1 to % characters', b ->> 'idempotencyKeyChars' using errcode = '22023';
  end if;
  if spec ? 'network' and jsonb_typeof(spec -> 'network') <> 'boolean' then
    raise exception 'network: expected true or false' using errcode = '22023';
  end if;

  -- limits
  if spec ? 'limits' then
    if jsonb_typeof(spec -> 'limits') <> 'object' then
      raise exception 'limits: expected an object' using errcode = '22023';
    end if;
    for v_key, v in select * from jsonb_each(spec -> 'limits') loop
      if v_key = 'wallTimeMs' then
        raise exception 'limits.wallTimeMs: the wall-time limit is timeoutMs (beside limits), not limits.wallTimeMs' using errcode = '22023';
      elsif v_key = 'onOutputLimit' then
        if (v #>> '{}') is distinct from 'stop' and (v #>> '{}') is distinct from 'truncate' then
          raise exception 'limits.onOutputLimit: "stop" or "truncate"' using errcode = '22023';
        end if;
      elsif b -> 'limits' ? v_key then
        perform cogo.check_spec_int('limits.' || v_key, v, (b #>> array['limits', v_key, '0'])::numeric, (b #>> array['limits', v_key, '1'])::numeric);
      else
        raise exception 'limits.%: unknown limit (known: %, onOutputLimit)', left(v_key, 100),
          (select string_agg(k, ', ') from jsonb_object_keys(b -> 'limits') k) using errcode = '22023';
      end if;
    end loop;
  end if;

  -- requirements: a kind name that is not reserved, bounded labels
  if spec ? 'requirements' then
    if jsonb_typeof(spec -> 'requirements') <> 'object' then
      raise exception 'requirements: expected {kind?, labels?}' using errcode = '22023';
    end if;
    select k into v_key from jsonb_object_keys(spec -> 'requirements') k where k not in ('kind', 'labels') limit 1;
    if v_key is not null then
      raise exception 'requirements.%: unknown field', v_key using errcode = '22023';
    end if;
    if spec -> 'requirements' ? 'kind' then
      if jsonb_typeof(spec #> '{requirements,kind}') <> 'string' or (spec #>> '{requirements,kind}') !~ '^[a-z][a-z0-9_-]{0,31}$' then
        raise exception 'requirements.kind: kind must be lower-case letters, digits, _ or - (e.g. basic, flutter)' using errcode = '22023';
      elsif cogo.reserved_kind(spec #>> '{requirements,kind}') then
        raise exception 'requirements.kind: "%" is reserved for the system''s own tasks (repository analysis: POST /analyze/repository)',
          spec #>> '{requirements,kind}' using errcode = '22023';
      end if;
    end if;
    if spec -> 'requirements' ? 'labels' then
      if jsonb_typeof(spec #> '{requirements,labels}') <> 'array' then
        raise exception 'requirements.labels: expected an array of strings' using errcode = '22023';
      elsif jsonb_array_length(spec #> '{requirements,labels}') > (b ->> 'labels')::integer then
        raise exception 'requirements.labels: at most % labels', b ->> 'labels' using errcode = '22023';
      end if;
      for i in 0 .. jsonb_array_length(spec #> '{requirements,labels}') - 1 loop
        v := spec #> array['requirements', 'labels', i::text];
        if jsonb_typeof(v) <> 'string' or (v #>> '{}') !~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' then
          raise exception 'requirements.labels.%: labels are letters, digits and . _ : -', i using errcode = '22023';
        end if;
      end loop;
    end if;
  end if;

  -- Host admission, as functions/_shared/admission.ts memoryRefusals: at most what the largest
  -- live worker of the kind can give (8 GiB while none is live).
  v_kind := coalesce(spec #>> '{requirements,kind}', 'basic');
  v_mem := coalesce((spec #>> '{limits,memoryBytes}')::numeric, (b ->> 'defaultMemoryBytes')::numeric);
  v_budget := cogo.kind_memory_budgets(array[v_kind]) -> v_kind;
  if v_budget is null or (v_budget ->> 'live')::integer = 0 then
    v_max := (b ->> 'maxMemoryBytes')::numeric;
    if v_mem > v_max then
      raise exception 'limits.memoryBytes: % is more than a task may ask while no worker of kind % is live (max %)',
        v_mem || case when spec #> '{limits,memoryBytes}' is null then ' (the default)' else '' end, v_kind, v_max using errcode = '22023';
    end if;
  else
    v_max := greatest(coalesce((v_budget ->> 'maxBudgetBytes')::numeric, 0),
                      case when (v_budget ->> 'unbudgeted')::integer > 0 then (b ->> 'maxMemoryBytes')::numeric else 0 end);
    if v_mem > v_max then
      raise exception 'limits.memoryBytes: % is more than any worker of kind % can give (max %)',
        v_mem || case when spec #> '{limits,memoryBytes}' is null then ' (the default)' else '' end, v_kind, v_max using errcode = '22023';
    end if;
  end if;
end;
$$;

-- ── outcome targets ───────────────────────────────────────────────────────────────────────────
-- Tables whose owner let tasks write their outcome into them (see the header). Column names, not
-- numbers, so the dynamic UPDATE reads as written; types are checked when registered.
create table cogo.outcome_targets (
  target regclass primary key,
  key_column name not null,
  key_type text not null,
  owner_column name not null,
  status_column name not null,
  exit_code_column name,
  output_column name,
  tail_chars integer not null default 4000 check (tail_chars between 1 and 65536),
  created_at timestamptz not null default now()
);
alter table cogo.outcome_targets enable row level security;
create policy outcome_targets_no_client_access on cogo.outcome_targets
  for all to anon, authenticated using (false) with check (false);

-- A task's target row: one per task, gone with the task.
create table cogo.task_outcomes (
  task_id uuid primary key references public.tasks (id) on delete cascade,
  target regclass not null references cogo.outcome_targets (target) on delete cascade,
  key text not null check (length(key) between 1 and 200)
);
alter table cogo.task_outcomes enable row level security;
create policy task_outcomes_no_client_access on cogo.task_outcomes
  for all to anon, authenticated using (false) with check (false);

-- Lets tasks write their outcome into p_table's rows: p_key_column finds the row (notify.key),
-- p_owner_column (uuid) must equal the task's owner, p_status_column (text) gets the status on
-- every change, p_exit_code_column (integer) and p_output_column (text, the last p_tail_chars of
-- stdout+stderr of the last attempt) when it ends; null columns are not written. The operator's
-- (a migration as postgres, or the service role): who owns the table decides. Re-registering
-- replaces the columns.
create function cogo.register_outcome_target(p_table regclass, p_key_column text, p_owner_column text, p_status_column text,
                                             p_exit_code_column text default null, p_output_column text default null,
                                             p_tail_chars integer default 4000)
returns cogo.outcome_targets language plpgsql security definer set search_path = '' as $$
declare
  v_row cogo.outcome_targets;
  v_type text;
  c record;
begin
  if coalesce(auth.role(), 'service_role') <> 'service_role' then
    raise exception 'outcome targets are registered by the table''s owner (a migration) or the service role' using errcode = '42501';
  end if;
  for c in select * from (values ('key', p_key_column, null::text[]), ('owner', p_owner_column, array['uuid']),
                                 ('status', p_status_column, array['text', 'character varying']),
                                 ('exit code', p_exit_code_column, array['integer', 'bigint', 'smallint']),
                                 ('output', p_output_column, array['text', 'character varying'])) x(what, col, types)
            where col is not null loop
    select format_type(a.atttypid, a.atttypmod) into v_type from pg_catalog.pg_attribute a
     where a.attrelid = p_table and a.attname = c.col and a.attnum > 0 and not a.attisdropped;
    if v_type is null then
      raise exception 'register_outcome_target: % has no column % (the % column)', p_table, c.col, c.what using errcode = '22023';
    end if;
    if c.types is not null and not (regexp_replace(v_type, '\(.*\)$', '') = any(c.types)) then
      raise exception 'register_outcome_target: %.% is %, the % column must be %', p_table, c.col, v_type, c.what, array_to_string(c.types, ' or ')
        using errcode = '22023';
    end if;
  end loop;
  if p_key_column is null or p_owner_column is null or p_status_column is null then
    raise exception 'register_outcome_target: the key, owner and status columns are required' using errcode = '22023';
  end if;
  insert into cogo.outcome_targets (target, key_column, key_type, owner_column, status_column, exit_code_column, output_column, tail_chars)
  values (p_table, p_key_column,
          (select format_type(a.atttypid, a.atttypmod) from pg_catalog.pg_attribute a where a.attrelid = p_table and a.attname = p_key_column),
          p_owner_column, p_status_column, p_exit_code_column, p_output_column, p_tail_chars)
  on conflict (target) do update
     set key_column = excluded.key_column, key_type = excluded.key_type, owner_column = excluded.owner_column,
         status_column = excluded.status_column, exit_code_column = excluded.exit_code_column,
         output_column = excluded.output_column, tail_chars = excluded.tail_chars
  returning * into v_row;
  return v_row;
end;
$$;

-- notify = {"table": "public.submissions", "key": <the row's key>} for the caller's own task.
-- A replayed submit (same idempotencyKey) keeps the first target.
create function cogo.attach_outcome(p_task uuid, p_notify jsonb) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks := cogo.lock_callers_task(p_task);
  v_target cogo.outcome_targets;
  v_rel regclass;
begin
  if jsonb_typeof(p_notify) is distinct from 'object' or jsonb_typeof(p_notify -> 'table') is distinct from 'string'
     or not (p_notify ? 'key') or jsonb_typeof(p_notify -> 'key') not in ('string', 'number') then
    raise exception 'notify: expected {"table": "<schema>.<table>", "key": <the row''s key>}' using errcode = '22023';
  end if;
  if v_task.owner is null then
    raise exception 'notify: an ownerless task cannot write a row (pass owner)' using errcode = '22023';
  end if;
  v_rel := to_regclass(p_notify ->> 'table'); -- search_path is empty: the name must be schema-qualified
  select * into v_target from cogo.outcome_targets where target = v_rel;
  if v_rel is null or not found then
    raise exception 'notify.table: % is not an outcome target (its owner registers it: cogo.register_outcome_target; name it with its schema)',
      p_notify ->> 'table' using errcode = '22023';
  end if;
  if length(p_notify ->> 'key') not between 1 and 200 then
    raise exception 'notify.key: 1 to 200 characters' using errcode = '22023';
  end if;
  begin
    execute format('select cast($1 as %s)', v_target.key_type) using p_notify ->> 'key';
  exception when others then
    raise exception 'notify.key: % is not a % (the type of %.%)', p_notify ->> 'key', v_target.key_type, v_rel, v_target.key_column
      using errcode = '22023';
  end;
  insert into cogo.task_outcomes (task_id, target, key) values (p_task, v_rel, p_notify ->> 'key')
  on conflict (task_id) do nothing;
end;
$$;

-- The lifecycle hook (after sandboxes, before the dashboard's): writes the task's status, and when
-- it ends its exit code and output tail, into its target row, if it has one and the row is its
-- owner's. A failed write is a warning: the transition (a worker finishing) must not fail for it,
-- nor wait long on a row someone holds locked.
create function cogo.on_task_status_outcome(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
declare
  o record;
  v_tail text;
  v_lock_timeout text := current_setting('lock_timeout');
begin
  select t.*, x.key into o from cogo.task_outcomes x join cogo.outcome_targets t on t.target = x.target where x.task_id = p_task.id;
  if not found then
    return;
  end if;
  if o.output_column is not null and p_task.status = any(cogo.final_states()) then
    select right(string_agg(data, '' order by seq), o.tail_chars) into v_tail
      from (select seq, data from public.task_output
             where task_id = p_task.id and attempt = p_task.attempt and stream <> 'system'
             order by seq desc limit 1000) last_chunks;
  end if;
  begin
    -- Whoever holds the row's lock cannot hold the worker's transition (and its slot) with it: the
    -- write waits 1 s at most. Set inside the block, so its rollback or the reset below undoes it.
    perform set_config('lock_timeout', '1s', true);
    execute format('update %s set %I = $1%s%s where %I = cast($2 as %s) and %I = $3',
                   o.target, o.status_column,
                   case when o.exit_code_column is not null then format(', %I = $4', o.exit_code_column) else '' end,
                   case when o.output_column is not null then format(', %I = $5', o.output_column) else '' end,
                   o.key_column, o.key_type, o.owner_column)
      using p_task.status::text, o.key, p_task.owner, p_task.exit_code, v_tail;
    perform set_config('lock_timeout', v_lock_timeout, true);
  exception when others then
    raise warning 'cogo: the outcome of task % was not written to % (key %): % (SQLSTATE %)', p_task.id, o.target, o.key, sqlerrm, sqlstate;
  end;
end;
$$;

-- task_status_changed as in 20261207000100_sandboxes.sql, with the outcome hook before the dashboard's.
create or replace function cogo.task_status_changed(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
begin
  perform cogo.insert_event(p_task.id, p_task.event_seq, p_task.attempt, 'task_status', jsonb_strip_nulls(jsonb_build_object(
    'status', p_task.status, 'previous', p_previous, 'attempt', p_task.attempt, 'workerId', p_task.worker_id,
    'exitCode', p_task.exit_code, 'signal', p_task.signal, 'reason', p_task.reason)));
  perform cogo.on_task_status_plans(p_task, p_previous);
  perform cogo.on_task_status_analysis(p_task, p_previous);
  perform cogo.on_task_status_sandboxes(p_task, p_previous);
  perform cogo.on_task_status_outcome(p_task, p_previous);
  perform cogo.on_task_status_dashboard(p_task, p_previous);
end;
$$;

-- ── the entry point ───────────────────────────────────────────────────────────────────────────
create function public.submit_task(spec jsonb, notify jsonb default null, owner uuid default null) returns uuid
language plpgsql security invoker set search_path = '' as $$
declare
  v_uid uuid := auth.uid();
  v_owner uuid := coalesce(owner, v_uid);
  v_claims text[] := array[current_setting('request.jwt.claims', true), current_setting('request.jwt.claim.sub', true),
                           current_setting('request.jwt.claim.role', true)];
  -- Who is calling, not whose token the session carries: a trigger function owned by postgres
  -- (SECURITY DEFINER) runs as postgres while a user's claims are set.
  v_privileged boolean := current_user::text in ('postgres', 'service_role', 'supabase_admin')
    or exists (select 1 from pg_catalog.pg_roles r where r.rolname = current_user and (r.rolsuper or r.rolbypassrls));
  v_task public.tasks;
begin
  if owner is not null and owner is distinct from v_uid and not v_privileged then
    raise exception 'owner: only the service role or a table owner''s trigger may submit for another user (you are %); leave owner out to submit as yourself',
      coalesce(v_uid::text, current_user::text) using errcode = '42501';
  end if;
  if v_owner is null and not v_privileged then
    raise exception 'submit_task needs a signed-in user (auth.uid()) or the service role' using errcode = '42501';
  end if;
  perform cogo.check_task_spec(spec);
  if notify is not null and v_owner is null then
    raise exception 'notify: an ownerless task cannot write a row (pass owner)' using errcode = '22023';
  end if;
  -- Submitting for another owner: the task is theirs and their quotas and rate limits apply.
  if v_owner is distinct from v_uid then
    perform set_config('request.jwt.claims', jsonb_build_object('sub', v_owner, 'role', 'authenticated')::text, true),
            set_config('request.jwt.claim.sub', v_owner::text, true), set_config('request.jwt.claim.role', 'authenticated', true);
  end if;
  v_task := cogo.enqueue_task(spec);
  if coalesce((spec ->> 'network')::boolean, false) then
    perform cogo.request_sandbox_options(v_task.id, '{}', true);
  end if;
  if notify is not null then
    perform cogo.attach_outcome(v_task.id, notify);
  end if;
  if v_owner is distinct from v_uid then
    perform set_config('request.jwt.claims', coalesce(v_claims[1], ''), true),
            set_config('request.jwt.claim.sub', coalesce(v_claims[2], ''), true), set_config('request.jwt.claim.role', coalesce(v_claims[3], ''), true);
  end if;
  return v_task.id;
end;
$$;
comment on function public.submit_task(jsonb, jsonb, uuid) is
  'Starts a task like POST /execute (same checks, quotas and rate limits) and returns its id. notify: {"table": "public.t", "key": …} writes status, exit code and output tail into that row of a registered outcome target (cogo.register_outcome_target). owner: only for the service role or a table owner''s trigger. README "From SQL".';

-- ── grants ────────────────────────────────────────────────────────────────────────────────────
-- Supabase grants every new function in public to anon by default: not this one.
revoke execute on function public.submit_task(jsonb, jsonb, uuid) from public, anon;
grant execute on function public.submit_task(jsonb, jsonb, uuid) to authenticated, service_role;
revoke execute on function
  cogo.task_spec_bounds(), cogo.check_spec_int(text, jsonb, numeric, numeric), cogo.check_spec_path(text, text),
  cogo.check_task_spec(jsonb), cogo.register_outcome_target(regclass, text, text, text, text, text, integer),
  cogo.attach_outcome(uuid, jsonb), cogo.on_task_status_outcome(public.tasks, public.task_status)
  from public;
grant execute on function
  cogo.task_spec_bounds(), cogo.check_spec_int(text, jsonb, numeric, numeric), cogo.check_spec_path(text, text),
  cogo.check_task_spec(jsonb), cogo.register_outcome_target(regclass, text, text, text, text, text, integer),
  cogo.attach_outcome(uuid, jsonb), cogo.on_task_status_outcome(public.tasks, public.task_status)
  to service_role;
-- What submit_task (SECURITY INVOKER) calls as a signed-in user; attach_outcome checks its caller.
grant execute on function cogo.task_spec_bounds(), cogo.check_task_spec(jsonb), cogo.attach_outcome(uuid, jsonb)
  to authenticated;
