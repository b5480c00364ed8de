// Persistent sandboxes (issue 19): create, list, read, keep alive, delete, and commands. A command
// is a task (`202 {taskId, topic}`): its output, events, stdin, cancel and exit code go through the
// task routes unchanged. Ownership is checked in SQL as the caller (RLS and cogo.*), so another
// tenant's sandbox is a 404 on every route. Creates and commands take a token of the caller's
// `execute` bucket (tenant quotas).
import { checkTaskMemory } from "../admission.ts";
import type { Sql } from "postgres";
import type { Caller } from "../auth.ts";
import { HttpError, json, requireRole } from "../http.ts";
import { asCaller, body, UUID, type Route } from "../routing.ts";
import { CommandRequestSchema, CreateSandboxRequestSchema, PatchSandboxRequestSchema, PtyRequestSchema, ResizeRequestSchema, taskTopic } from "../schemas.ts";
import { setBlockOptions } from "./recovery.ts";
import { sandboxView, type SandboxRow, type TaskRow } from "../views.ts";

/** How long POST and DELETE wait for the worker (ready, or stopped) before answering as things are. */
const SETTLE_WAIT_MS = 10_000;
const SETTLE_POLL_MS = 10;

async function readSandbox(sql: Sql, caller: Caller, id: string): Promise<SandboxRow> {
  const [row] = await asCaller(sql, caller, (tx) => tx<SandboxRow[]>`select * from public.sandboxes where id = ${id}`);
  if (!row) throw new HttpError(404, "not_found", `sandbox ${id} not found`);
  return row;
}

/** Re-reads the sandbox until `until` holds or the wait is over; the last row either way. */
async function settle(sql: Sql, caller: Caller, id: string, until: (s: SandboxRow) => boolean): Promise<SandboxRow> {
  const deadline = Date.now() + SETTLE_WAIT_MS;
  let row = await readSandbox(sql, caller, id);
  while (!until(row) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
    row = await readSandbox(sql, caller, id);
  }
  return row;
}

const live = (s: SandboxRow) => s.status === "starting" || s.status === "ready";

export const sandboxRoutes: Route[] = [
  [
    "POST",
    /^\/sandboxes$/,
    async ({ req, sql, caller }) => {
      requireRole(caller, "authenticated", "service_role");
      const spec = await body(req, CreateSandboxRequestSchema);
      const [created] = await asCaller(sql, caller, async (tx) => {
        await checkTaskMemory(tx, [{ field: "limits.memoryBytes", kind: spec.requirements.kind, memoryBytes: spec.limits.memoryBytes }]);
        return await tx<SandboxRow[]>`select * from cogo.create_sandbox(${tx.json(spec as never)})`;
      });
      // Ready within the wait on a worker with a free slot; `starting` otherwise (watch the topic).
      const s = await settle(sql, caller, created!.id, (r) => r.status !== "starting");
      return json(201, { ...sandboxView(s), sandboxId: s.id, topic: s.topic, status: s.status, workerId: s.workerId });
    },
  ],
  [
    "GET",
    /^\/sandboxes$/,
    async ({ sql, caller }) => {
      requireRole(caller, "authenticated", "service_role");
      const rows = await asCaller(sql, caller, (tx) => tx<SandboxRow[]>`select * from public.sandboxes order by created_at desc limit 100`);
      return json(200, { sandboxes: rows.map(sandboxView) });
    },
  ],
  ["GET", new RegExp(`^/sandboxes/${UUID}$`), async ({ sql, caller, params }) => json(200, sandboxView(await readSandbox(sql, caller, params[0]!)))],
  [
    "PATCH",
    new RegExp(`^/sandboxes/${UUID}$`),
    async ({ req, sql, caller, params }) => {
      const { idleTimeoutMs } = await body(req, PatchSandboxRequestSchema);
      const [row] = await asCaller(sql, caller, (tx) => tx<SandboxRow[]>`select * from cogo.set_sandbox_idle_timeout(${params[0]!}, ${idleTimeoutMs})`);
      return json(200, sandboxView(row!));
    },
  ],
  [
    "DELETE",
    new RegExp(`^/sandboxes/${UUID}$`),
    async ({ sql, caller, params }) => {
      await asCaller(sql, caller, (tx) => tx`select 1 from cogo.stop_sandbox(${params[0]!})`);
      // The holder kills every process and removes the workspace before it ends the init task.
      const s = await settle(sql, caller, params[0]!, (r) => !live(r));
      return json(live(s) ? 202 : 200, sandboxView(s));
    },
  ],
  [
    "POST",
    new RegExp(`^/sandboxes/${UUID}/commands$`),
    async ({ req, sql, caller, params }) => {
      requireRole(caller, "authenticated", "service_role");
      const spec = await body(req, CommandRequestSchema);
      const headerKey = req.headers.get("idempotency-key");
      const withKey = headerKey && !spec.idempotencyKey ? { ...spec, idempotencyKey: headerKey } : spec;
      const [row] = await asCaller(sql, caller, async (tx) => {
        const rows = await tx<TaskRow[]>`select * from cogo.enqueue_command(${params[0]!}, ${tx.json(withKey as never)})`;
        if (spec.blockDetection || spec.recovery) await setBlockOptions(tx, rows[0]!.id, spec);
        return rows;
      });
      return json(202, { taskId: row!.id, topic: taskTopic(row!.id), status: row!.status, sandboxId: params[0] });
    },
  ],
  [
    // A terminal: a command on a pty of the sandbox's own devpts. Keystrokes go to
    // POST /tasks/:id/stdin, the terminal's bytes come back as its stdout.
    "POST",
    new RegExp(`^/sandboxes/${UUID}/pty$`),
    async ({ req, sql, caller, params }) => {
      requireRole(caller, "authenticated", "service_role");
      const spec = await body(req, PtyRequestSchema);
      const [row] = await asCaller(sql, caller, (tx) => tx<TaskRow[]>`select * from cogo.create_pty(${params[0]!}, ${tx.json(spec as never)})`);
      return json(202, { taskId: row!.id, topic: taskTopic(row!.id), status: row!.status, sandboxId: params[0], pty: row!.pty });
    },
  ],
  [
    "POST",
    new RegExp(`^/tasks/${UUID}/resize$`),
    async ({ req, sql, caller, params }) => {
      requireRole(caller, "authenticated", "service_role");
      const { cols, rows } = await body(req, ResizeRequestSchema);
      const [row] = await asCaller(sql, caller, (tx) => tx<TaskRow[]>`select * from cogo.resize_task(${params[0]!}, ${cols}, ${rows})`);
      return json(200, { taskId: row!.id, status: row!.status, pty: row!.pty });
    },
  ],
];
