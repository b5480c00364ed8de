-- Files of a live sandbox (issue 19, docs/design/persistent-sandboxes.md §3.6): list, read, write,
-- remove, and tar upload/download, served by the worker holding the sandbox. The transport is
-- request rows in Postgres, not a worker endpoint: on hosted Supabase an edge function cannot
-- reach a worker, and both already share the database.
--   1. the function calls cogo.request_sandbox_op as the caller: ownership and `ready` are checked
--      there, at most cogo.max_sandbox_ops() ops are in flight per sandbox (else CGS29 → 429 with
--      retryAfterSeconds), the op row is inserted, and pg_notify('cogo_sandbox', 'op:<holder>')
--      wakes the holder; in the same transaction its input follows in ≤ 1 MiB chunks
--      (cogo.put_sandbox_op_input), so the holder sees the op only whole;
--   2. the holder claims ops of the sandboxes it holds (cogo.claim_sandbox_ops, fenced by its
--      worker id), which counts as activity (last_activity_at), reads the input chunks
--      (cogo.sandbox_op_input), runs the op inside the sandbox, and in one transaction writes the
--      output chunks (cogo.put_sandbox_op_output) and the outcome (cogo.finish_sandbox_op), fenced
--      the same way;
--   3. the function waits in one SQL call (cogo.await_sandbox_op: a volatile loop re-reading the
--      row, pg_sleep 1 → 10 ms), which works through any pooler, then takes the output
--      (cogo.take_sandbox_op_output deletes it as it returns it).
-- Bytes travel as one 1 MiB chunk per call or row, never as one large value: measured on
-- postgres.js, 32 × 1 MiB went in 1.7 s and out in 0.9 s where one 32 MiB value took 3.2 s and 2.6 s.
-- Ops are never tasks: they make no tasks rows. Ended ops are deleted 5 min after they end by the
-- maintenance service (cogo.purge_sandbox_ops).

create table cogo.sandbox_ops (
  id bigint generated always as identity primary key,
  sandbox_id uuid not null references public.sandboxes (id) on delete cascade,
  owner uuid,
  -- The holder when requested: only it may claim and finish the op.
  worker_id uuid not null,
  op text not null check (op in ('list', 'read', 'write', 'remove', 'tar_get', 'tar_put')),
  path text not null check (length(path) <= 4096),
  args jsonb not null default '{}',
  status text not null default 'pending' check (status in ('pending', 'running', 'done', 'failed')),
  result jsonb,
  error jsonb,
  created_at timestamptz not null default now(),
  claimed_at timestamptz,
  done_at timestamptz
);
create index sandbox_ops_in_flight on cogo.sandbox_ops (sandbox_id) where status in ('pending', 'running');
create index sandbox_ops_pending_by_worker on cogo.sandbox_ops (worker_id, id) where status = 'pending';
create index sandbox_ops_ended on cogo.sandbox_ops (done_at) where status in ('done', 'failed');
comment on table cogo.sandbox_ops is
  'File operations on a live sandbox, served by the worker holding it (migrations/20261207000200_sandbox_files.sql). Not tasks.';

create table cogo.sandbox_op_chunks (
  op_id bigint not null references cogo.sandbox_ops (id) on delete cascade,
  dir text not null check (dir in ('in', 'out')),
  seq integer not null,
  data bytea not null check (length(data) <= 1048576),
  primary key (op_id, dir, seq)
);

alter table cogo.sandbox_ops enable row level security;
alter table cogo.sandbox_op_chunks enable row level security;
create policy sandbox_ops_no_client_access on cogo.sandbox_ops for all to anon, authenticated using (false) with check (false);
create policy sandbox_op_chunks_no_client_access on cogo.sandbox_op_chunks for all to anon, authenticated using (false) with check (false);

-- Ops in flight (pending or running) per sandbox; one more is refused with 429.
create function cogo.max_sandbox_ops() returns integer
language sql immutable set search_path = '' as $$ select 8 $$;

-- Bytes of one op's input or output (the API's cap per PUT and GET).
create function cogo.max_sandbox_op_bytes() returns bigint
language sql immutable set search_path = '' as $$ select 33554432::bigint $$;

-- A new op on the caller's ready sandbox; its id. CG404 for a sandbox the caller may not use (or
-- none), CG409 for one not ready, CG429 over the tenant's files rate limit, CGS29 when
-- max_sandbox_ops() are already in flight, CG413 when the input it announces (p_size bytes) is over
-- the cap.
create function cogo.request_sandbox_op(p_sandbox uuid, p_op text, p_path text, p_args jsonb, p_size bigint) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
  s public.sandboxes := cogo.lock_callers_sandbox(p_sandbox);
  v_in_flight integer;
  v_id bigint;
begin
  if s.status <> 'ready' or s.worker_id is null then
    raise exception 'sandbox % is %: %', s.id, s.status,
      coalesce(s.reason, case when s.status = 'starting' then 'its files can be reached once it is ready' else 'it has ended' end)
      using errcode = 'CG409';
  end if;
  -- A file call is a request like PUT /files: it takes a token of the tenant's files bucket
  -- (CG429 with retryAfterSeconds), so a tenant cannot flood workers and the database with them.
  perform cogo.take_rate_token('files');
  if coalesce(p_size, 0) > cogo.max_sandbox_op_bytes() then
    raise exception 'a file operation carries at most % bytes, got %', cogo.max_sandbox_op_bytes(), p_size
      using errcode = 'CG413';
  end if;
  -- Serialises the count and the insert per sandbox (the row lock above is shared).
  perform pg_advisory_xact_lock(hashtextextended('cogo.sandbox_ops:' || s.id::text, 0));
  select count(*) into v_in_flight from cogo.sandbox_ops
   where sandbox_id = s.id and status in ('pending', 'running');
  if v_in_flight >= cogo.max_sandbox_ops() then
    raise exception 'sandbox %: % file operations in flight, the most; retry after 1 s', s.id, v_in_flight
      using errcode = 'CGS29',
            detail = jsonb_build_object('limit', 'sandboxOpsInFlight', 'max', cogo.max_sandbox_ops(), 'retryAfterSeconds', 1)::text;
  end if;
  insert into cogo.sandbox_ops (sandbox_id, owner, worker_id, op, path, args)
    values (s.id, s.owner, s.worker_id, p_op, p_path, coalesce(p_args, '{}'))
    returning id into v_id;
  perform pg_notify('cogo_sandbox', 'op:' || s.worker_id::text);
  return v_id;
end;
$$;

-- Chunk p_seq (0, 1, …) of the input of the caller's op, not yet claimed; at most 1 MiB each and
-- max_sandbox_op_bytes() in all (CG413).
create function cogo.put_sandbox_op_input(p_op bigint, p_seq integer, p_data bytea) returns void
language plpgsql security definer set search_path = '' as $$
declare
  o cogo.sandbox_ops;
begin
  select * into o from cogo.sandbox_ops where id = p_op for update;
  if not found or not cogo.caller_may_use(o.owner) then
    raise exception 'file operation % not found', p_op using errcode = 'CG404';
  end if;
  if o.status <> 'pending' then
    raise exception 'file operation % is %: its input is closed', p_op, o.status using errcode = 'CG409';
  end if;
  if coalesce((select sum(length(c.data)) from cogo.sandbox_op_chunks c where c.op_id = p_op and c.dir = 'in'), 0)
     + length(p_data) > cogo.max_sandbox_op_bytes() then
    raise exception 'a file operation carries at most % bytes', cogo.max_sandbox_op_bytes() using errcode = 'CG413';
  end if;
  insert into cogo.sandbox_op_chunks (op_id, dir, seq, data) values (p_op, 'in', p_seq, p_data);
end;
$$;

-- Waits up to p_timeout_ms for the caller's op to end; its status, result and error. Each
-- statement of a volatile plpgsql function reads a fresh snapshot, so the loop sees the worker's
-- commit. An op whose sandbox ended meanwhile is failed here (its worker will never answer).
create function cogo.await_sandbox_op(p_op bigint, p_timeout_ms integer)
returns table (status text, result jsonb, error jsonb)
language plpgsql volatile security definer set search_path = '' as $$
#variable_conflict use_column
declare
  o cogo.sandbox_ops;
  v_deadline timestamptz := clock_timestamp() + make_interval(secs => least(greatest(p_timeout_ms, 0), 120000) / 1000.0);
  v_sleep double precision := 0.001;
  v_sandbox public.sandbox_status;
begin
  loop
    select * into o from cogo.sandbox_ops where id = p_op;
    if not found or not cogo.caller_may_use(o.owner) then
      raise exception 'file operation % not found', p_op using errcode = 'CG404';
    end if;
    exit when o.status in ('done', 'failed') or clock_timestamp() >= v_deadline;
    select s.status into v_sandbox from public.sandboxes s where s.id = o.sandbox_id;
    if v_sandbox is distinct from 'ready' then
      update cogo.sandbox_ops set status = 'failed', done_at = now(),
             error = jsonb_build_object('code', 'sandbox_ended', 'message', format('sandbox %s is %s', o.sandbox_id, v_sandbox))
       where id = p_op and cogo.sandbox_ops.status in ('pending', 'running')
       returning * into o;
      if found then exit; end if;
      continue;
    end if;
    perform pg_sleep(v_sleep);
    v_sleep := least(v_sleep * 2, 0.010);
  end loop;
  return query select o.status, o.result, o.error;
end;
$$;

-- The caller's op's output, in order, deleted as it is returned (read once).
create function cogo.take_sandbox_op_output(p_op bigint) returns setof bytea
language plpgsql security definer set search_path = '' as $$
begin
  if not exists (select 1 from cogo.sandbox_ops o where o.id = p_op and cogo.caller_may_use(o.owner)) then
    raise exception 'file operation % not found', p_op using errcode = 'CG404';
  end if;
  return query
    with d as (delete from cogo.sandbox_op_chunks c where c.op_id = p_op and c.dir = 'out' returning c.seq, c.data)
    select d.data from d order by d.seq;
end;
$$;

-- pending → running, for ops on ready sandboxes this worker holds (oldest first); counts as the
-- sandbox's activity. Input chunks are read separately (cogo.sandbox_op_input).
create function cogo.claim_sandbox_ops(p_worker uuid, p_max integer) returns setof cogo.sandbox_ops
language plpgsql security definer set search_path = '' as $$
declare
  v_op cogo.sandbox_ops;
  v_sandboxes uuid[] := '{}';
begin
  for v_op in
    with locked as (
      select o.id from cogo.sandbox_ops o
        join public.sandboxes s on s.id = o.sandbox_id and s.worker_id = p_worker and s.status = 'ready'
       where o.worker_id = p_worker and o.status = 'pending'
       order by o.id
       limit greatest(p_max, 0)
       for update of o skip locked
    )
    update cogo.sandbox_ops o set status = 'running', claimed_at = now()
      from locked where o.id = locked.id
    returning o.*
  loop
    v_sandboxes := v_sandboxes || v_op.sandbox_id;
    return next v_op;
  end loop;
  update public.sandboxes s set last_activity_at = now() where s.id = any(v_sandboxes);
end;
$$;

-- An op's input chunks in order; only for the worker that claimed it.
create function cogo.sandbox_op_input(p_worker uuid, p_op bigint) returns setof bytea
language sql stable security definer set search_path = '' as $$
  select c.data
    from cogo.sandbox_op_chunks c
    join cogo.sandbox_ops o on o.id = c.op_id and o.worker_id = p_worker and o.status = 'running'
   where c.op_id = p_op and c.dir = 'in'
   order by c.seq;
$$;

-- Chunk p_seq of the output of this worker's running op (call before cogo.finish_sandbox_op, in
-- its transaction); false when the op is not this worker's running op any more.
create function cogo.put_sandbox_op_output(p_worker uuid, p_op bigint, p_seq integer, p_data bytea) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  perform 1 from cogo.sandbox_ops where id = p_op and worker_id = p_worker and status = 'running';
  if not found then
    return false;
  end if;
  insert into cogo.sandbox_op_chunks (op_id, dir, seq, data) values (p_op, 'out', p_seq, p_data);
  return true;
end;
$$;

-- running → done/failed with the outcome; false when the op is not this worker's running op any
-- more (the waiter failed it as the sandbox ended). The input is dropped, and a failed op's output.
create function cogo.finish_sandbox_op(p_worker uuid, p_op bigint, p_ok boolean, p_result jsonb, p_error jsonb)
returns boolean
language plpgsql security definer set search_path = '' as $$
begin
  update cogo.sandbox_ops
     set status = case when p_ok then 'done' else 'failed' end, result = p_result, error = p_error, done_at = now()
   where id = p_op and worker_id = p_worker and status = 'running';
  if not found then
    return false;
  end if;
  delete from cogo.sandbox_op_chunks where op_id = p_op and (dir = 'in' or not p_ok);
  update public.sandboxes set last_activity_at = now()
   where id = (select sandbox_id from cogo.sandbox_ops where id = p_op);
  return true;
end;
$$;

-- Maintenance: ops ended over 5 min ago, and ones never finished after 10 min (their waiter gave
-- up and their worker is gone), with their chunks; at most p_batch. Returns how many.
create function cogo.purge_sandbox_ops(p_batch integer) returns integer
language plpgsql security definer set search_path = '' as $$
declare
  v_n integer;
begin
  with doomed as (
    select id from cogo.sandbox_ops
     where (status in ('done', 'failed') and done_at < now() - interval '5 minutes')
        or created_at < now() - interval '10 minutes'
     limit greatest(p_batch, 1)
  )
  delete from cogo.sandbox_ops o using doomed where o.id = doomed.id;
  get diagnostics v_n = row_count;
  return v_n;
end;
$$;

-- ── grants (as 20261126000800_grants.sql: PUBLIC nothing, the service role everything) ─────────
revoke all on cogo.sandbox_ops, cogo.sandbox_op_chunks from anon, authenticated;
grant all on cogo.sandbox_ops, cogo.sandbox_op_chunks to service_role;
revoke execute on function
  cogo.max_sandbox_ops(), cogo.max_sandbox_op_bytes(), cogo.request_sandbox_op(uuid, text, text, jsonb, bigint),
  cogo.put_sandbox_op_input(bigint, integer, bytea), cogo.await_sandbox_op(bigint, integer),
  cogo.take_sandbox_op_output(bigint), cogo.claim_sandbox_ops(uuid, integer), cogo.sandbox_op_input(uuid, bigint),
  cogo.put_sandbox_op_output(uuid, bigint, integer, bytea), cogo.finish_sandbox_op(uuid, bigint, boolean, jsonb, jsonb), cogo.purge_sandbox_ops(integer)
  from public;
grant execute on function
  cogo.max_sandbox_ops(), cogo.max_sandbox_op_bytes(), cogo.request_sandbox_op(uuid, text, text, jsonb, bigint),
  cogo.put_sandbox_op_input(bigint, integer, bytea), cogo.await_sandbox_op(bigint, integer),
  cogo.take_sandbox_op_output(bigint), cogo.claim_sandbox_ops(uuid, integer), cogo.sandbox_op_input(uuid, bigint),
  cogo.put_sandbox_op_output(uuid, bigint, integer, bytea), cogo.finish_sandbox_op(uuid, bigint, boolean, jsonb, jsonb), cogo.purge_sandbox_ops(integer)
  to service_role;
-- The user-facing ones (each checks its caller).
grant execute on function
  cogo.request_sandbox_op(uuid, text, text, jsonb, bigint), cogo.put_sandbox_op_input(bigint, integer, bytea),
  cogo.await_sandbox_op(bigint, integer),
  cogo.take_sandbox_op_output(bigint)
  to authenticated;
