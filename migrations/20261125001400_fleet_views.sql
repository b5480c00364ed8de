-- Fleet views by role (issue 16, found #7). Every signed-in user could read each worker's host
-- facts (hostname, pid, CPUs, memory, the sandbox toolchain and its versions): GET /workers and
-- GET /fleet answered with workers.host, the `fleet` topic carried it on every heartbeat, and the
-- select policy on public.workers let a user token read the column through the Data API.
--
-- Users see what tells them about capacity: each worker's id, kind, labels, capacity, load
-- (`running`), status, lease and last heartbeat (cogo.worker_public_summary). Its name (by default
-- <hostname>-<pid>), version and host are for the service role (cogo.worker_summary).
--   * The `fleet` topic carries the public summary. Nothing reads host details live (the dashboard
--     signs in as a user), so they get no topic: the service role reads them from GET /workers or
--     GET /fleet (cogo.fleet_workers).
--   * public.workers: users may select the public columns only (column privileges), so a user
--     token's select of `*`, host, name or version is refused; anon may select nothing.
--   * GET /health's silent workers name a worker for the service role only.

-- The service role, or a direct database session (a worker, an operator): see everything.
create function cogo.caller_sees_hosts() returns boolean
language sql stable set search_path = '' as $$
  select coalesce(auth.role(), 'service_role') = 'service_role';
$$;

-- A worker with its load, as every signed-in user may see it.
create function cogo.worker_public_summary(w public.workers) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'id', w.id, 'kind', w.kind, 'labels', to_jsonb(w.labels), 'capacity', w.capacity,
    'status', w.status, 'leaseMs', w.lease_ms, 'lastHeartbeatAt', w.last_heartbeat_at, 'createdAt', w.created_at,
    'running', (select count(*) from public.tasks t
                 where t.worker_id = w.id and t.status in ('claimed', 'running', 'blocked', 'recovering')));
$$;

-- The same with the host details, for the service role (the shape of 20261125000600).
create or replace function cogo.worker_summary(w public.workers) returns jsonb
language sql stable security definer set search_path = '' as $$
  select cogo.worker_public_summary(w) || jsonb_build_object('name', w.name, 'version', w.version, 'host', w.host);
$$;

-- Every change of a worker, heartbeats included, on `fleet` (readable by any signed-in user).
create or replace function cogo.publish_worker_change() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform realtime.send(
    jsonb_build_object('worker', cogo.worker_public_summary(new), 'queue', cogo.queue_depth(), 'now', clock_timestamp()),
    'worker_changed', 'fleet', true);
  return null;
end;
$$;

-- The workers as the caller may see them, oldest first (GET /workers; GET /fleet with p_recent:
-- those not offline, or heard from within the hour).
create function cogo.fleet_workers(p_recent boolean) returns jsonb
language plpgsql stable security definer set search_path = '' as $$
declare
  v_hosts boolean := cogo.caller_sees_hosts();
begin
  if not v_hosts and auth.uid() is null then
    raise exception 'a user token or the service key is required to see the fleet' using errcode = 'CG401';
  end if;
  return (
    select coalesce(jsonb_agg(case when v_hosts then cogo.worker_summary(w) else cogo.worker_public_summary(w) end
                              order by w.created_at, w.id), '[]')
      from public.workers w
     where not p_recent or w.status <> 'offline' or w.last_heartbeat_at > now() - interval '1 hour');
end;
$$;

-- As in 20261125000650, naming silent workers for the service role only.
create or replace function cogo.block_health() returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'blocked', (select count(*) from public.tasks where status = 'blocked'),
    'recovering', (select count(*) from public.tasks where status = 'recovering'),
    'silentWorkers', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'id', w.id, 'status', w.status, 'lastHeartbeatAt', w.last_heartbeat_at,
               'activeTasks', (select count(*) from public.tasks t where t.worker_id = w.id
                                 and t.status in ('claimed', 'running', 'blocked', 'recovering')))
               || case when cogo.caller_sees_hosts() then jsonb_build_object('name', w.name) else '{}' end
             order by w.last_heartbeat_at desc), '[]')
        from public.workers w
       where w.last_heartbeat_at < now() - make_interval(secs => w.lease_ms / 1000.0)
         and w.last_heartbeat_at > now() - interval '1 hour'),
    'lastHour', (
      select jsonb_build_object(
        'detected', coalesce((select jsonb_object_agg(reason, n) from (
                      select e.data ->> 'reason' as reason, count(*) as n from public.task_events e
                       where e.type = 'block_detected' and e.created_at > now() - interval '1 hour' group by 1) r), '{}'),
        'workerLost', (select count(*) from public.task_events e
                        where e.type = 'block_detected' and e.data ->> 'reason' = 'worker_lost'
                          and e.created_at > now() - interval '1 hour'),
        'recoverySucceeded', (select count(*) from public.task_events e
                               where e.type = 'recovery_succeeded' and e.created_at > now() - interval '1 hour'),
        'recoveryFailed', (select count(*) from public.task_events e
                            where e.type = 'recovery_failed' and e.created_at > now() - interval '1 hour')))
  );
$$;

-- Direct reads (the Data API with a user token): the public columns only.
revoke select on public.workers from anon, authenticated;
grant select (id, kind, labels, capacity, status, lease_ms, last_heartbeat_at, created_at) on public.workers to authenticated;

revoke execute on function cogo.caller_sees_hosts(), cogo.worker_public_summary(public.workers), cogo.fleet_workers(boolean) from public;
revoke execute on function cogo.worker_summary(public.workers) from authenticated;
grant execute on function cogo.fleet_workers(boolean) to authenticated, service_role;
grant execute on function cogo.worker_public_summary(public.workers) to service_role;
