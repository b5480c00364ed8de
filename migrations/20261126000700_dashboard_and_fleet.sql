-- Live lists for the dashboard and the figures behind GET /metrics.
--
-- Two Realtime topics beside the per-task ones, each with its own read policy:
--   `user:<uid>`  every task of that user as it is created and as its status changes (`task_changed`,
--                 sent by the lifecycle's dashboard hook, last of the hooks);
--   `fleet`       every worker change, heartbeats included, with the queue depth (`worker_changed`).
-- Nobody may write to either (no insert policy), so a client cannot forge a fleet or task message.
--
-- Fleet views by role: users see what tells them about capacity (each worker's id, kind, labels,
-- capacity, load, status, lease and last heartbeat: cogo.worker_public_summary, and the same
-- columns of public.workers); a worker's name (by default <hostname>-<pid>), version and host are
-- for the service role (cogo.worker_summary, cogo.fleet_workers). The `fleet` topic carries the
-- public summary; nothing reads host details live.

-- The one shape of a task in lists: GET /tasks answers with it and `task_changed` carries it.
-- `version` is the task's event seq, so a client keeps the newest of two copies of a task.
create function cogo.task_summary(t public.tasks) returns jsonb
language sql stable set search_path = '' as $$
  select jsonb_build_object(
    'id', t.id,
    'status', t.status,
    'command', left(coalesce(t.command, array_to_string(t.argv, ' ')), 500),
    'priority', t.priority,
    'kind', t.required_kind,
    'labels', to_jsonb(t.required_labels),
    'stdin', t.stdin_mode,
    'attempt', t.attempt,
    'maxAttempts', t.max_attempts,
    'workerId', t.worker_id,
    'planId', t.plan_id,
    'step', t.step,
    'exitCode', t.exit_code,
    'signal', t.signal,
    'reason', t.reason,
    'cancelRequested', t.cancel_requested_at is not null,
    'outputSeq', t.output_seq,
    'version', t.event_seq,
    'createdAt', t.created_at,
    'startedAt', t.started_at,
    'finishedAt', t.finished_at,
    'updatedAt', t.updated_at
  );
$$;

-- The dashboard hook (cogo.task_status_changed, last), also called for a new task (trigger
-- tasks_broadcast_insert, p_previous null) and a cancel request (cogo.cancel_task): the task's
-- summary on its owner's `user:<id>` topic. Re-read, so the version counts every event the
-- change made.
create function cogo.on_task_status_dashboard(p_task public.tasks, p_previous public.task_status) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  if p_task.owner is null then return; end if;
  select * into v_task from public.tasks where id = p_task.id;
  perform realtime.send(
    jsonb_build_object('task', cogo.task_summary(v_task), 'previous', p_previous),
    'task_changed', 'user:' || v_task.owner, true);
end;
$$;

-- Queued tasks by kind and priority (what the fleet view's queue chart shows).
create function cogo.queue_depth() returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce(jsonb_agg(jsonb_build_object('kind', q.required_kind, 'priority', q.priority, 'count', q.n)
                            order by q.required_kind, q.priority desc), '[]')
    from (select required_kind, priority, count(*) n from public.tasks where status = 'queued'
           group by required_kind, priority) q;
$$;

-- A worker with its load (tasks it holds now), as every signed-in user may see it.
create function cogo.worker_public_summary(w public.workers) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'id', w.id, 'kind', w.kind, 'labels', to_jsonb(w.labels), 'capacity', w.capacity,
    'status', w.status, 'leaseMs', w.lease_ms, 'lastHeartbeatAt', w.last_heartbeat_at, 'createdAt', w.created_at,
    'running', (select count(*) from public.tasks t
                 where t.worker_id = w.id and t.status = any(cogo.active_states())));
$$;

-- The same with the host details, for the service role.
create function cogo.worker_summary(w public.workers) returns jsonb
language sql stable security definer set search_path = '' as $$
  select cogo.worker_public_summary(w) || jsonb_build_object('name', w.name, 'version', w.version, 'host', w.host);
$$;

-- Every change of a worker, heartbeats included (every lease/3), on `fleet` (readable by any
-- signed-in user): it carries the worker's load and the queue depth, so the fleet view is never
-- older than one heartbeat of any live worker.
create function cogo.publish_worker_change() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform realtime.send(
    jsonb_build_object('worker', cogo.worker_public_summary(new), 'queue', cogo.queue_depth(), 'now', clock_timestamp()),
    'worker_changed', 'fleet', true);
  return null;
end;
$$;
create trigger workers_fleet_topic after insert or update on public.workers
  for each row execute function cogo.publish_worker_change();

create policy "users receive their own task list topic" on realtime.messages for select to authenticated
  using ((select realtime.topic()) = 'user:' || (select auth.uid())::text and extension = 'broadcast');
create policy "signed-in users receive the fleet topic" on realtime.messages for select to authenticated
  using ((select realtime.topic()) = 'fleet' and extension = 'broadcast');

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

-- Everything GET /metrics prints, in one snapshot. Claim latency is enqueue (or run_after, when
-- later) → first claim; `le` are the histogram's upper bounds in seconds.
create function cogo.metrics(p_buckets double precision[]) returns jsonb
language sql stable security definer set search_path = '' as $$
  with latency as materialized (
    select extract(epoch from t.claimed_at - greatest(t.created_at, t.run_after))::double precision as s
      from public.tasks t where t.claimed_at is not null and t.attempt = 1
  )
  select jsonb_build_object(
    'tasksByState', (select coalesce(jsonb_object_agg(s.status, s.n), '{}')
                       from (select status, count(*) n from public.tasks group by status) s),
    'claimLatency', jsonb_build_object(
      'buckets', (select jsonb_agg(jsonb_build_object('le', b, 'count', (select count(*) from latency where s <= b)) order by b)
                    from unnest(p_buckets) b),
      'count', (select count(*) from latency),
      'sum', (select coalesce(sum(greatest(s, 0)), 0) from latency)),
    'outputRowsTotal', (select coalesce(sum(output_seq), 0) from public.tasks),
    'outputRowsLastMinute', (select count(*) from public.task_output o
                              where o.task_id in (select id from public.tasks
                                                   where status = any(cogo.active_states())
                                                      or finished_at > now() - interval '60 seconds')
                                and o.created_at > now() - interval '60 seconds'),
    'blocksByReason', (select coalesce(jsonb_object_agg(r.reason, r.n), '{}')
                         from (select coalesce(data ->> 'reason', 'unknown') reason, count(*) n from public.task_events
                                where type = 'block_detected' group by 1) r),
    'recoveries', (select coalesce(jsonb_agg(jsonb_build_object('outcome', r.outcome, 'action', r.action, 'count', r.n)), '[]')
                     from (select substr(type, 10) outcome, coalesce(data ->> 'action', 'unknown') action, count(*) n
                             from public.task_events
                            where type in ('recovery_started', 'recovery_succeeded', 'recovery_failed')
                            group by 1, 2) r),
    'workersByStatus', (select coalesce(jsonb_object_agg(w.status, w.n), '{}')
                          from (select status, count(*) n from public.workers group by status) w),
    'liveWorkers', (select count(*) from public.workers w where cogo.worker_is_live(w)),
    'queue', cogo.queue_depth(),
    'oldestQueuedAgeMs', (select coalesce(floor(extract(epoch from now() - min(created_at)) * 1000), 0)::bigint
                            from public.tasks where status = 'queued')
  );
$$;
