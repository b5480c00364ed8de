-- A worker a `reassign` excluded from a task passes over that task when it claims, and takes the
-- next one it may run (docs/state-machine.md "Blocks and recovery"). Before, only the trigger
-- tasks_claim_exclusion skipped the claim, after cogo.claim_tasks had picked the task: a worker
-- whose excluded task stood at the head of the queue claimed nothing at all while other work
-- waited behind it. The trigger stays, as the guard for every other way a task gets claimed.

-- Whether another live worker than p_worker, not excluded itself, could run the task; while none
-- can, the exclusion does not hold (it would starve the task).
create function cogo.another_worker_can_take(p_task public.tasks, p_worker uuid) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.workers w
     where w.id <> p_worker and w.status = 'online' and w.kind = p_task.required_kind
       and p_task.required_labels <@ w.labels and not (w.id = any(p_task.excluded_workers))
       and w.last_heartbeat_at > now() - make_interval(secs => 2 * w.lease_ms / 1000.0));
$$;

create or replace function cogo.skip_excluded_claim() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.worker_id = any(new.excluded_workers) and cogo.another_worker_can_take(new, new.worker_id) then
    return null;
  end if;
  return new;
end;
$$;

-- Claims up to p_max queued tasks this worker can run: highest priority first, then oldest.
create or replace function cogo.claim_tasks(p_worker uuid, p_max integer) returns setof public.tasks
language plpgsql security definer set search_path = '' as $$
declare
  w public.workers;
begin
  select * into w from public.workers where id = p_worker;
  if not found or w.status <> 'online' or p_max < 1 then
    return;
  end if;
  return query
  with next as (
    select t.id from public.tasks t
    where t.status = 'queued' and t.required_kind = w.kind and t.required_labels <@ w.labels
      and t.run_after <= now()
      and not (p_worker = any(t.excluded_workers) and cogo.another_worker_can_take(t, p_worker))
    order by t.priority desc, t.created_at, t.id
    limit p_max
    for update skip locked
  )
  update public.tasks t
     set status = 'claimed', attempt = t.attempt + 1, worker_id = p_worker, claimed_at = now(),
         lease_expires_at = now() + make_interval(secs => w.lease_ms / 1000.0), reason = null
    from next where t.id = next.id
  returning t.*;
end;
$$;

revoke execute on function cogo.another_worker_can_take(public.tasks, uuid) from public;
