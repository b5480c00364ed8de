-- Live lists for the dashboard and the figures behind GET /metrics.
--
-- Two Realtime topics beside the per-task ones, each with its own read policy:
--   `user:<uid>`  every task of that user as it is created and as its status changes (`task_changed`);
--   `fleet`       every worker change, heartbeats included, with the queue depth (`worker_changed`).
-- Nobody may write to either (no insert policy), so a client cannot forge a fleet or task message.

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

create function cogo.publish_task_change() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_task public.tasks;
begin
  -- Re-read: the status trigger that ran before this one has bumped event_seq since `new` was made.
  select * into v_task from public.tasks where id = new.id;
  perform realtime.send(
    jsonb_build_object('task', cogo.task_summary(v_task),
                       'previous', case when tg_op = 'UPDATE' then old.status end),
    'task_changed', 'user:' || new.owner, true);
  return null;
end;
$$;

-- Named to sort after tasks_status_event (triggers fire in name order).
create trigger tasks_user_topic_insert after insert on public.tasks
  for each row when (new.owner is not null) execute function cogo.publish_task_change();
create trigger tasks_user_topic_update after update of status, cancel_requested_at on public.tasks
  for each row when (new.owner is not null and (old.status is distinct from new.status
                     or old.cancel_requested_at is distinct from new.cancel_requested_at))
  execute function cogo.publish_task_change();

-- Queued tasks by kind and priority (what the fleet view's queue chart shows).
create function cogo.queue_depth() returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce(jsonb_agg(jsonb_build_object('kind', q.required_kind, 'priority', q.priority, 'count', q.n)
                            order by q.required_kind, q.priority desc), '[]')
    from (select required_kind, priority, count(*) n from public.tasks where status = 'queued'
           group by required_kind, priority) q;
$$;

-- A worker with its load (tasks it holds now).
create function cogo.worker_summary(w public.workers) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'id', w.id, 'name', w.name, 'kind', w.kind, 'labels', to_jsonb(w.labels), 'capacity', w.capacity,
    'status', w.status, 'leaseMs', w.lease_ms, 'version', w.version, 'host', w.host,
    'lastHeartbeatAt', w.last_heartbeat_at, 'createdAt', w.created_at,
    'running', (select count(*) from public.tasks t
                 where t.worker_id = w.id and t.status in ('claimed', 'running', 'blocked', 'recovering')));
$$;

create function cogo.publish_worker_change() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform realtime.send(
    jsonb_build_object('worker', cogo.worker_summary(new), 'queue', cogo.queue_depth(), 'now', clock_timestamp()),
    'worker_changed', 'fleet', true);
  return null;
end;
$$;

-- Every heartbeat too (every lease/3): it carries the worker's load and the queue depth, so the
-- fleet view is never older than one heartbeat of any live worker.
create trigger workers_fleet_topic after insert or update on public.workers
  for each row execute function cogo.publish_worker_change();

create policy "users receive their own task list topic" on realtime.messages for select to authenticated
  using ((select realtime.topic()) = 'user:' || (select auth.uid())::text and extension = 'broadcast');
create policy "signed-in users receive the fleet topic" on realtime.messages for select to authenticated
  using ((select realtime.topic()) = 'fleet' and extension = 'broadcast');

-- /metrics counts blocks and recoveries by scanning only these events.
create index task_events_blocks_recoveries on public.task_events (type)
  where type in ('block_detected', 'recovery_started', 'recovery_succeeded', 'recovery_failed');

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
                                                   where status in ('claimed', 'running', 'blocked', 'recovering')
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
    'liveWorkers', (select count(*) from public.workers w
                     where w.status = 'online' and w.last_heartbeat_at > now() - make_interval(secs => 2 * w.lease_ms / 1000.0)),
    'queue', cogo.queue_depth(),
    'oldestQueuedAgeMs', (select coalesce(floor(extract(epoch from now() - min(created_at)) * 1000), 0)::bigint
                            from public.tasks where status = 'queued')
  );
$$;

revoke execute on function cogo.task_summary(public.tasks), cogo.publish_task_change(), cogo.queue_depth(),
  cogo.worker_summary(public.workers), cogo.publish_worker_change(), cogo.metrics(double precision[]) from public;
grant execute on function cogo.task_summary(public.tasks), cogo.queue_depth(), cogo.worker_summary(public.workers)
  to authenticated, service_role;
grant execute on function cogo.metrics(double precision[]) to service_role;
