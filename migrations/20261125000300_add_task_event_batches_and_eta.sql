-- Diagnostics and progress (issue 7): a worker appends the events a burst of output produced in
-- one round trip, and asks how long the same step took before, for progress ETAs.

-- Appends events in order with consecutive seqs, fenced once; each is published on the task topic
-- like cogo.append_event. Returns the last seq (null for an empty batch).
create function cogo.append_events(p_task uuid, p_attempt integer, p_worker uuid, p_types text[], p_data jsonb[])
returns bigint language plpgsql security definer set search_path = '' as $$
declare
  v_seq bigint;
begin
  if cardinality(p_types) is distinct from cardinality(p_data) then
    raise exception 'append_events: % types but % data', cardinality(p_types), cardinality(p_data) using errcode = '22023';
  end if;
  if coalesce(cardinality(p_types), 0) = 0 then return null; end if;
  perform cogo.fence(p_task, p_attempt, p_worker);
  for i in 1 .. cardinality(p_types) loop
    v_seq := cogo.append_event_unchecked(p_task, p_types[i], p_data[i]);
  end loop;
  return v_seq;
end;
$$;

-- "Similar task": same owner, same plan step name (null for plain tasks) and same command or argv.
create index tasks_duration_history on public.tasks
  (coalesce(owner, '00000000-0000-0000-0000-000000000000'::uuid), coalesce(step, ''), finished_at desc)
  where status = 'succeeded' and started_at is not null;

-- Median run time in ms of the last 20 successful runs similar to p_task (null without history).
create function cogo.estimate_duration_ms(p_task uuid) returns bigint
language sql stable security definer set search_path = '' as $$
  select percentile_cont(0.5) within group (order by d)::bigint
  from (
    select extract(epoch from h.finished_at - h.started_at) * 1000 as d
      from public.tasks t
      join public.tasks h
        on coalesce(h.owner, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(t.owner, '00000000-0000-0000-0000-000000000000'::uuid)
       and coalesce(h.step, '') = coalesce(t.step, '')
       and h.command is not distinct from t.command and h.argv is not distinct from t.argv
       and h.status = 'succeeded' and h.started_at is not null
       and h.id <> t.id
     where t.id = p_task
     order by h.finished_at desc
     limit 20
  ) history;
$$;

revoke execute on function cogo.append_events(uuid, integer, uuid, text[], jsonb[]), cogo.estimate_duration_ms(uuid) from public;
grant execute on function cogo.append_events(uuid, integer, uuid, text[], jsonb[]), cogo.estimate_duration_ms(uuid) to service_role;
