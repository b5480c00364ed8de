// Persistent sandboxes in the user's task lists (design risk R6; migration
// 20261207000400_sandbox_lists.sql, functions/_shared/routes/dashboard.ts): a sandbox's internal
// init task is in neither GET /tasks nor the `user:<uid>` topic, while its commands are in both
// and name their sandbox (`sandboxId`); `GET /tasks?sandboxId=` lists one sandbox's commands.
// One real sandbox on a real worker serves the file.
import type { RealtimeChannel } from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { userTopic, type LiveSandbox, type TaskChangedMessage, type TaskSummary } from "../../sdk/index.ts";
import { api, newUser, subscribeBroadcast, sql, startWorker, uniqueKind, stopLiveSandboxes } from "../helpers/env.ts";
import { isRoot, requireRoot } from "../helpers/root.ts";

requireRoot("Persistent sandboxes");
const kind = uniqueKind("sbxlist");
/** A kind no worker serves: its tasks stay queued (markers on the topic, plain tasks in the list). */
const idleKind = uniqueKind("sbxlist-none");
let a: Awaited<ReturnType<typeof newUser>>;
let b: Awaited<ReturnType<typeof newUser>>;

const list = async (token: string, qs = "") => {
  const res = await api("GET", `/tasks${qs}`, { token });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.tasks as TaskSummary[];
};
const ids = (tasks: { id: string }[]) => tasks.map((t) => t.id);
/** A plain queued task of `a`'s: once its `task_changed` arrives, every earlier message has too. */
const marker = async () => (await api("POST", "/execute", { token: a.token, body: { command: "echo marker", requirements: { kind: idleKind } } })).body.taskId as string;

beforeAll(async () => {
  a = await newUser({ maxRunning: 100 });
  b = await newUser();
  if (isRoot) await startWorker({ kind, concurrency: 2 });
});
afterAll(async () => {
  await stopLiveSandboxes(a.id);
});

describe.runIf(isRoot)("a sandbox in the task lists", () => {
  let sbx: LiveSandbox;
  let initTaskId: string;
  let commandId: string;
  let plainId: string;
  const changed: TaskChangedMessage[] = [];
  let channel: RealtimeChannel;

  beforeAll(async () => {
    channel = await subscribeBroadcast(a.supabase, userTopic(a.id), (event, p) => event === "task_changed" && changed.push(p as TaskChangedMessage));
    sbx = await a.sandbox.sandboxes.create({ requirements: { kind }, idleTimeoutMs: 60_000 });
    [{ initTaskId }] = (await sql`select init_task_id from public.sandboxes where id = ${sbx.sandboxId}`) as unknown as [{ initTaskId: string }];
    commandId = (await sbx.commands.run("echo listed")).taskId;
    plainId = await marker();
  });
  afterAll(() => a.supabase.removeChannel(channel));

  it("user:<uid> carries the commands with their sandbox and never the init task, created, ready or stopped", async () => {
    await expect.poll(() => changed.some((m) => m.task.id === plainId), { timeout: 10_000 }).toBe(true);
    const command = changed.filter((m) => m.task.id === commandId);
    expect(command.map((m) => m.task.status)).toEqual(expect.arrayContaining(["queued", "running", "succeeded"]));
    for (const m of command) expect(m.task.sandboxId).toBe(sbx.sandboxId);
    expect(changed.find((m) => m.task.id === plainId)!.task.sandboxId).toBeNull();
    // The init task was inserted, claimed and started before the marker: none of it was sent.
    expect(changed.filter((m) => m.task.id === initTaskId)).toEqual([]);
  });

  it("GET /tasks lists the commands with sandboxId, never the init task, even when it is the one running", async () => {
    const [init] = await sql`select status from public.tasks where id = ${initTaskId}`;
    expect(init!.status).toBe("running");
    const mine = await list(a.token);
    expect(ids(mine)).toEqual(expect.arrayContaining([commandId, plainId]));
    expect(ids(mine)).not.toContain(initTaskId);
    expect(ids(await list(a.token, "?status=running,claimed"))).not.toContain(initTaskId);
    expect(await list(a.token, `?q=${initTaskId}`)).toEqual([]);
    expect(mine.find((t) => t.id === commandId)).toMatchObject({ sandboxId: sbx.sandboxId, status: "succeeded", command: "echo listed" });
    expect(mine.find((t) => t.id === plainId)!.sandboxId).toBeNull();
    // The task view of a command names its sandbox too; the init task stays readable by id (its
    // events are the sandbox's stored history).
    expect((await api("GET", `/tasks/${commandId}`, { token: a.token })).body).toMatchObject({ sandboxId: sbx.sandboxId, background: false, cwd: null });
    expect((await api("GET", `/tasks/${plainId}`, { token: a.token })).body.sandboxId).toBeNull();
  });

  it("GET /tasks?sandboxId= lists that sandbox's commands only; another tenant's filter finds nothing", async () => {
    const second = (await sbx.commands.start("echo second", {}, false)).taskId;
    expect(ids(await list(a.token, `?sandboxId=${sbx.sandboxId}`))).toEqual([second, commandId]);
    expect(ids(await list(a.token, `?sandboxId=${sbx.sandboxId}&status=succeeded&limit=1`))).toHaveLength(1);
    expect(await list(b.token, `?sandboxId=${sbx.sandboxId}`)).toEqual([]);
    expect((await api("GET", `/tasks/${commandId}`, { token: b.token })).status).toBe(404);
    const bad = await api("GET", "/tasks?sandboxId=../../etc", { token: a.token });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/sandboxId/);
    expect((await api("GET", `/tasks?sandboxId=${"a".repeat(5000)}`, { token: a.token })).status).toBe(400);
  });

  it("stopping the sandbox sends its commands' ends, not the init task's cancel or end", async () => {
    const background = (await sbx.commands.start("exec sleep 300")).taskId;
    await expect.poll(async () => (await a.sandbox.getTask(background)).status, { timeout: 10_000 }).toBe("running");
    await sbx.kill();
    // DELETE answered once the init task ended: its messages, had any been sent, precede the marker's.
    const after = await marker();
    await expect.poll(() => changed.some((m) => m.task.id === after), { timeout: 10_000 }).toBe(true);
    // The holder kills the background command with the sandbox (it ends `failed`, killed).
    await expect
      .poll(() => changed.filter((m) => m.task.id === background).some((m) => m.task.status === "failed" || m.task.status === "cancelled"), { timeout: 10_000 })
      .toBe(true);
    expect(changed.filter((m) => m.task.id === initTaskId)).toEqual([]);
    const [init] = await sql`select status from public.tasks where id = ${initTaskId}`;
    expect(init!.status).toBe("cancelled");
    expect(ids(await list(a.token))).not.toContain(initTaskId);
  });
});
