// Fault 8, tenant isolation: tenant A knows tenant B's task id and tries everything: the API, the
// Realtime private channel (join and replay), and SQL as `authenticated` with A's claims. Then
// Supabase's own database linter (the CLI's security advisors, i.e. splinter) checks our schema.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import type { RealtimeChannel } from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { api, sql, stack, startWorker, uniqueKind } from "../helpers/env.ts";
import { tenant, waitFor, type Tenant } from "./harness.ts";

const ep = { apiUrl: stack.apiUrl, dbUrl: stack.dbUrl, anonKey: stack.anonKey, jwtSecret: stack.jwtSecret };
let a: Tenant;
let b: Tenant;
let running: string; // B's task, running and waiting on stdin
let finished: string; // B's task, done, with output
const kind = uniqueKind("f-tenant");

beforeAll(async () => {
  [a, b] = await Promise.all([tenant(ep), tenant(ep)]);
  await startWorker({ kind });
  const done = await b.sandbox.execute({ command: "echo secret-of-b", requirements: { kind }, idempotencyKey: "b-key" });
  await done.result();
  finished = done.taskId;
  const live = await b.sandbox.execute({ command: "read x; echo got $x", stdin: "pipe", requirements: { kind } });
  running = live.taskId;
  await live.close();
  await waitFor(async () => (await b.sandbox.getTask(running)).status === "running", "B's task to run", 30_000);
});
afterAll(async () => {
  await api("POST", `/tasks/${running}/stdin`, { token: b.token, body: { eof: true } });
  await Promise.all([a.close(), b.close()]);
});

/** Runs fn in a transaction as `authenticated` with A's claims, as PostgREST or our function would. */
function asA<T>(fn: (tx: typeof sql) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ sub: a.id, role: "authenticated" })}, true)`;
    return await fn(tx as unknown as typeof sql);
  }) as Promise<T>;
}

describe("faults: tenant isolation", () => {
  it("API: A cannot read, replay, cancel, write stdin to or take over B's tasks", async () => {
    for (const id of [running, finished]) {
      for (const route of [`/tasks/${id}`, `/tasks/${id}/output?after=0`, `/tasks/${id}/events?after=0`]) {
        expect((await api("GET", route, { token: a.token })).status, route).toBe(404);
      }
      expect((await api("DELETE", `/tasks/${id}`, { token: a.token })).status).toBe(404);
    }
    expect((await api("POST", `/tasks/${running}/stdin`, { token: a.token, body: { data: "from-a\n" } })).status).toBe(404);
    await expect(a.sandbox.attach(finished).then((h) => h.result())).rejects.toMatchObject({ status: 404 });
    // The same idempotency key is A's own: it makes A a new task and never returns B's.
    const mine = await api("POST", "/execute", { token: a.token, body: { command: "true", requirements: { kind } }, headers: { "idempotency-key": "b-key" } });
    expect(mine.status).toBe(202);
    expect(mine.body.taskId).not.toBe(finished);
    // B's task is untouched.
    const [row] = await sql<
      { status: string; cancelRequestedAt: Date | null; stdinSeq: string }[]
    >`select status, cancel_requested_at, stdin_seq from public.tasks where id = ${running}`;
    expect(row).toMatchObject({ status: "running", cancelRequestedAt: null, stdinSeq: "0" });
  });

  it("Realtime: A's join of B's private topic is refused, with or without replay, and A receives nothing", async () => {
    const received: unknown[] = [];
    const join = (config: Record<string, unknown>) =>
      new Promise<string>((resolve) => {
        const ch: RealtimeChannel = a.supabase.channel(`task:${running}`, { config: { private: true, ...config } });
        ch.on("broadcast", { event: "*" }, (m) => received.push(m)).subscribe((status) => {
          if (status !== "SUBSCRIBED" && status !== "CHANNEL_ERROR" && status !== "TIMED_OUT") return;
          void a.supabase.removeChannel(ch);
          resolve(status);
        });
      });
    expect(await join({})).toBe("CHANNEL_ERROR");
    expect(await join({ broadcast: { replay: { since: 0, limit: 25 } } })).toBe("CHANNEL_ERROR");
    // B's task produces output and events while A would be listening.
    await api("POST", `/tasks/${running}/stdin`, { token: b.token, body: { data: "hello\n" } });
    await waitFor(async () => (await b.sandbox.getTask(running)).status === "succeeded", "B's task to finish", 30_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(received).toEqual([]);
  });

  it("SQL as authenticated: no row of B's, no write, no worker function", async () => {
    await asA(async (tx) => {
      expect(await tx`select 1 from public.tasks where id = any(${[running, finished]})`).toHaveLength(0);
      for (const table of ["task_output", "task_events", "task_stdin"]) {
        expect(await tx`select 1 from ${tx("public")}.${tx(table)} where task_id = any(${[running, finished]})`, table).toHaveLength(0);
      }
      expect(await tx`select 1 from realtime.messages where topic = any(${[`task:${running}`, `task:${finished}`]})`).toHaveLength(0);
      const [owns] = await tx<{ ok: boolean }[]>`select cogo.owns_topic(${`task:${finished}`}) as ok`;
      expect(owns!.ok).toBe(false);
      const [cancel] = await tx<{ id: string | null }[]>`select (cogo.cancel_task(${finished})).id`;
      expect(cancel!.id).toBeNull();
    });
    const refused: [string, RegExp][] = [
      [`select cogo.write_stdin('${finished}', 'x', false)`, /not found/],
      [`update public.tasks set status = 'cancelled' where id = '${finished}'`, /permission denied/],
      [`insert into public.task_output (task_id, seq, attempt, stream, data) values ('${finished}', 99, 1, 'stdout', 'forged')`, /permission denied/],
      [`delete from public.tasks where id = '${finished}'`, /permission denied/],
      [`select * from cogo.claim_tasks(gen_random_uuid(), 10)`, /permission denied/],
      [`select cogo.append_output('${finished}', 1, gen_random_uuid(), 2, '{stdout}', '{forged}', '{now}')`, /permission denied/],
      [`select cogo.requeue_expired()`, /permission denied/],
      [`select * from cogo.heartbeat(gen_random_uuid())`, /permission denied/],
    ];
    for (const [statement, error] of refused) {
      await expect(
        asA((tx) => tx.unsafe(statement)),
        statement,
      ).rejects.toThrow(error);
    }
    const [task] = await sql<{ status: string }[]>`select status from public.tasks where id = ${finished}`;
    expect(task!.status).toBe("succeeded");
  });

  it("Supabase's database linter (security advisors) reports nothing on our schema, and does catch a table without RLS", async () => {
    // A probe proves the linter runs and sees this database: a public table without RLS is an ERROR.
    await sql`create table public.cogo_lint_probe (id int)`;
    let findings: { name: string; level: string; detail: string; metadata?: { schema?: string; name?: string } }[];
    try {
      const url = new URL(stack.dbUrl);
      url.searchParams.set("sslmode", "disable");
      const bin = path.join(PROJECT_ROOT, "node_modules", ".bin", "supabase");
      const { stdout } = await promisify(execFile)(bin, ["db", "advisors", "--db-url", url.toString(), "--type", "security", "--level", "info"], {
        timeout: 90_000,
      }).catch((err) => {
        throw new Error(`supabase db advisors failed (is the supabase CLI installed? npm ci): ${err.stderr ?? err.message}`);
      });
      findings = JSON.parse(stdout.slice(stdout.indexOf("[")));
    } finally {
      await sql`drop table public.cogo_lint_probe`;
    }
    expect(findings.some((f) => f.name === "rls_disabled_in_public" && f.metadata?.name === "cogo_lint_probe" && f.level === "ERROR")).toBe(true);
    // realtime_embedded is the local stand-in for Supabase's Realtime internals, absent on a project.
    const ours = findings.filter((f) => f.metadata?.name !== "cogo_lint_probe" && f.metadata?.schema !== "realtime_embedded");
    expect(ours.map((f) => `${f.level} ${f.name}: ${f.detail}`)).toEqual([]);
  }, 120_000);
});
