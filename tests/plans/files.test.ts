// The files API on a plan's workspace: validation and caps, what a change re-runs (inputs,
// defaults, stale runs cancelled), and what a step may save back (no symlinks, no lost edits).
import { describe, expect, it } from "vitest";
import { WORKSPACE_LIMITS } from "../../functions/_shared/plans/limits.ts";
import type { PlanView } from "../../sdk/index.ts";
import { api, newUser, sql, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

const step = (p: PlanView, name: string) => p.steps.find((s) => s.name === name)!;

describe("files API", () => {
  it("writes, reads, lists and deletes files; binary and executable survive", async () => {
    const user = await newUser();
    const created = await api("POST", "/plans", { token: user.token, body: { steps: [{ name: "a", command: "true", requirements: { kind: uniqueKind("nobody") } }] } });
    const ws = created.body.workspaceId as string;
    const bin = Buffer.from([0, 255, 1, 2, 200]).toString("base64");
    const w = await user.sandbox.writeFiles({
      workspaceId: ws,
      files: [
        { path: "dir/./text.txt", content: "héllo\n" },
        { path: "bin/blob", content: bin, encoding: "base64", executable: true },
      ],
    });
    expect(w).toMatchObject({ changed: ["dir/text.txt", "bin/blob"], files: 2, bytes: 7 + 5 });
    expect(await user.sandbox.readFile(ws, "dir/text.txt")).toMatchObject({ encoding: "utf8", content: "héllo\n", size: 7, executable: false });
    expect(await user.sandbox.readFile(ws, "bin/blob")).toMatchObject({ encoding: "base64", content: bin, executable: true });
    // The same content again is no change.
    expect((await user.sandbox.writeFiles({ workspaceId: ws, files: [{ path: "dir/text.txt", content: "héllo\n" }] })).changed).toEqual([]);
    expect((await user.sandbox.deleteFile(ws, "bin/blob")).changed).toEqual(["bin/blob"]);
    expect((await api("GET", `/files/bin/blob?workspace=${ws}`, { token: user.token })).status).toBe(404);
    expect((await api("DELETE", `/files/bin/blob?workspace=${ws}`, { token: user.token })).status).toBe(404);
    expect((await user.sandbox.listFiles(ws)).files.map((f) => f.path)).toEqual(["dir/text.txt"]);
    await api("DELETE", `/plans/${created.body.planId}`, { token: user.token });
  });

  it("refuses bad paths and oversized files with the field named, writing nothing", async () => {
    const user = await newUser();
    const created = await api("POST", "/plans", { token: user.token, body: { steps: [{ name: "a", command: "true", requirements: { kind: uniqueKind("nobody") } }] } });
    const ws = created.body.workspaceId as string;
    const [before] = await sql<{ revision: string }[]>`select revision from public.workspaces where id = ${ws}`;
    for (const path of ["../up", "/abs", "a/../../b", "a\\b", "a\u0000b", ""]) {
      const r = await api("POST", "/files", { token: user.token, body: { workspaceId: ws, files: [{ path, content: "x" }] } });
      expect(r.status, path).toBe(400);
      expect(r.body.error.message).toMatch(/^files\.0\.path: /);
    }
    expect((await api("GET", `/files/..%2Fetc%2Fpasswd?workspace=${ws}`, { token: user.token })).body.error.message).toMatch(/path: .*'\.\.'/);
    expect((await api("DELETE", `/files/a%2F..%2F..%2Fb?workspace=${ws}`, { token: user.token })).status).toBe(400);
    expect((await api("GET", "/files/x.txt", { token: user.token })).body.error.message).toMatch(/^workspace: /);
    expect((await api("POST", "/files", { token: user.token, body: { workspaceId: ws } })).body.error.message).toMatch(/files: give files to write or paths to delete/);
    const big = Buffer.alloc(WORKSPACE_LIMITS.fileBytes + 1, 97).toString("base64");
    const tooBig = await api("POST", "/files", {
      token: user.token,
      body: {
        workspaceId: ws,
        files: [
          { path: "ok.txt", content: "fine" },
          { path: "big.bin", content: big, encoding: "base64" },
        ],
      },
    });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.message).toMatch(/files: big\.bin is 8388609 bytes, more than the 8388608/);
    const [after] = await sql<{ revision: string }[]>`select revision from public.workspaces where id = ${ws}`;
    expect(after!.revision).toBe(before!.revision);
    expect((await user.sandbox.listFiles(ws)).files).toEqual([]);
    await api("DELETE", `/plans/${created.body.planId}`, { token: user.token });
  });

  it("a change re-runs the steps whose inputs match (else the build and test steps), cancelling a stale in-flight run", async () => {
    const kind = uniqueKind("rerun");
    await startWorker({ kind });
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      files: [
        { path: "mode.txt", content: "slow" },
        { path: "docs/a.md", content: "# a" },
      ],
      requirements: { kind },
      steps: [
        { name: "install", command: "echo installing" },
        { name: "docs", command: "cat docs/a.md", inputs: ["docs/**"], dependsOn: [] },
        { name: "build", dependsOn: ["install"], inputs: ["mode.txt", "src/**"], command: "if grep -q slow mode.txt; then echo slow; sleep 60; fi; echo built" },
        { name: "test", command: "echo tested" },
      ],
    });
    const running = await plan.wait((p) => step(p, "build").status === "running", 30_000);
    expect(running.steps.map((s) => s.stage)).toEqual([null, null, "building", "testing"]);
    const staleTask = step(running, "build").taskId!;

    const change = await user.sandbox.writeFiles({ workspaceId: running.workspaceId, files: [{ path: "mode.txt", content: "fast" }] });
    expect(change.reruns.map((r) => [r.step, r.status])).toEqual([
      ["build", "queued"],
      ["test", "waiting"],
    ]);
    const stale = await (await user.sandbox.attach(staleTask)).result();
    expect(stale.status).toBe("cancelled");
    const done = await plan.wait((p) => p.status !== "running", 60_000);
    expect(done.status, done.summary.text).toBe("succeeded");
    expect(done.steps.map((s) => [s.name, s.runs])).toEqual([
      ["install", 1],
      ["docs", 1],
      ["build", 2],
      ["test", 1],
    ]);
    expect((await (await user.sandbox.attach(step(done, "build").taskId!)).result()).stdout).toBe("built\n");

    // docs/** matches the docs step, not build; test has no inputs: as a testing step it re-runs on any change.
    const docs = await user.sandbox.writeFiles({ workspaceId: done.workspaceId, files: [{ path: "docs/a.md", content: "# b" }] });
    expect(docs.reruns.map((r) => [r.step, r.status])).toEqual([
      ["docs", "queued"],
      ["test", "queued"],
    ]);
    // src/** matches build; test, downstream of it, waits for it.
    const src = await user.sandbox.writeFiles({ workspaceId: done.workspaceId, files: [{ path: "src/x.c", content: "int x;" }] });
    expect(src.reruns.map((r) => [r.step, r.status])).toEqual([
      ["build", "queued"],
      ["test", "waiting"],
    ]);
    const again = await plan.wait((p) => p.status !== "running" && step(p, "test").runs === 3, 60_000);
    expect(again.steps.map((s) => [s.name, s.runs, s.status])).toEqual([
      ["install", 1, "succeeded"],
      ["docs", 2, "succeeded"],
      ["build", 3, "succeeded"],
      ["test", 3, "succeeded"],
    ]);
    const stepEvents = plan.events.flatMap((e) => (e.type === "step_status" && e.data.step === "build" ? [e.data.status] : []));
    expect(stepEvents).toContain("waiting");
    await plan.close();
  });

  it("a re-armed step behind a failed dependency that the change does not re-run is stopped, not left waiting", async () => {
    const kind = uniqueKind("blocked");
    await startWorker({ kind });
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      requirements: { kind },
      steps: [
        { name: "install", command: "test -e lock.json", inputs: ["lock.json"] },
        { name: "build", command: "make -v >/dev/null" },
      ],
    });
    const failed = await plan.wait();
    expect(failed.summary.text).toBe("0 of 2 steps passed; install failed (exited with code 1); not run: build");
    const src = await user.sandbox.writeFiles({ workspaceId: failed.workspaceId, files: [{ path: "src/main.c", content: "int main;" }] });
    expect(src.reruns.map((r) => [r.step, r.status])).toEqual([["build", "stopped"]]);
    const still = await plan.get();
    expect(still.status).toBe("failed");
    expect(step(still, "build").reason).toBe("not run: dependency install failed (exited with code 1)");
    const lock = await user.sandbox.writeFiles({ workspaceId: failed.workspaceId, files: [{ path: "lock.json", content: "{}" }] });
    expect(lock.reruns.map((r) => [r.step, r.status])).toEqual([
      ["install", "queued"],
      ["build", "waiting"],
    ]);
    const done = await plan.wait();
    expect(done.status, done.summary.text).toBe("succeeded");
    await plan.close();
  });

  it("file changes racing running steps all succeed, and the plan settles on the last change", async () => {
    const kind = uniqueKind("race");
    await startWorker({ kind, concurrency: 4 });
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      requirements: { kind },
      files: [{ path: "src/n.txt", content: "0" }],
      steps: [
        { name: "build", command: "sleep 0.2; cp src/n.txt out-build.txt", inputs: ["src/**"] },
        { name: "test", command: "cp out-build.txt out-test.txt; cat out-test.txt", inputs: ["src/**"] },
      ],
    });
    const results = [];
    for (let i = 1; i <= 12; i++) {
      results.push(user.sandbox.writeFiles({ workspaceId: (await plan.get()).workspaceId, files: [{ path: "src/n.txt", content: String(i) }] }));
      await new Promise((r) => setTimeout(r, 40 + (i % 3) * 60));
    }
    expect((await Promise.allSettled(results)).filter((r) => r.status === "rejected")).toEqual([]);
    const done = await plan.wait((p) => p.status !== "running", 120_000);
    expect(done.status, done.summary.text).toBe("succeeded");
    expect((await user.sandbox.readFile(done.workspaceId, "out-test.txt")).content).toBe("12");
    await plan.close();
  });

  it("a file change and a step saving its files take locks in one order: no deadlock", async () => {
    // A worker's save holds its task and plan, then updates the workspace; a file change must not
    // hold the workspace while waiting for that task. Interleaved by hand with two transactions.
    const kind = uniqueKind("locks");
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      requirements: { kind },
      files: [{ path: "a.txt", content: "a" }],
      steps: [{ name: "build", command: "true", inputs: ["a.txt"] }],
    });
    const [w] = await sql<{ id: string }[]>`select id from cogo.register_worker('lock-test', ${kind}, '{}', 1, 60000, 'test', '{}')`;
    const [task] = await sql<{ id: string; attempt: number }[]>`select id, attempt from cogo.claim_tasks(${w!.id}, 1)`;
    const ws = (await plan.get()).workspaceId;
    let change: Promise<unknown> | undefined;
    await sql.begin(async (tx) => {
      await tx`select cogo.fence(${task!.id}, ${task!.attempt}, ${w!.id})`;
      await tx`select 1 from public.plans where id = ${plan.planId} for update`;
      change = user.sandbox.writeFiles({ workspaceId: ws, files: [{ path: "a.txt", content: "changed" }] });
      await new Promise((r) => setTimeout(r, 1500)); // past deadlock_timeout (1 s), if the change took the workspace first
      await tx`select cogo.save_task_files(${task!.id}, ${task!.attempt}, ${w!.id}, ${tx.json([{ path: "out.txt", content: "eA==", executable: false }] as never)}, ${[]}, ${tx.json({})})`;
    });
    await expect(change).resolves.toMatchObject({ changed: ["a.txt"] });
    expect((await user.sandbox.listFiles(ws)).files.map((f) => f.path)).toEqual(["a.txt", "out.txt"]);
    await sql`select cogo.set_worker_offline(${w!.id})`;
    await plan.cancel();
    await plan.close();
  });

  it("a step saves regular files only, never symlinks, and never overwrites an edit made while it ran", async () => {
    const kind = uniqueKind("save");
    await startWorker({ kind });
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      files: [{ path: "shared.txt", content: "original" }],
      requirements: { kind },
      steps: [
        {
          name: "produce",
          command: "ln -s /etc/passwd leak; ln -s shared.txt alias; mkfifo pipe; touch 'back\\slash'; echo made > made.txt; sleep 4; echo step > shared.txt",
          inputs: ["nothing-matches/**"],
        },
        { name: "consume", command: "ls; cat made.txt; test ! -e leak && test ! -e alias", inputs: ["nothing-matches/**"] },
      ],
    });
    // Polled, not waited on events: a fresh client's first private join can take a second or two.
    const running = await waitFor(
      async () => {
        const p = await plan.get();
        return step(p, "produce").status === "running" && p;
      },
      "the produce step to run",
      30_000,
    );
    await user.sandbox.writeFiles({ workspaceId: running.workspaceId, files: [{ path: "shared.txt", content: "user edit" }] });
    const done = await plan.wait();
    expect(done.status, done.summary.text).toBe("succeeded");
    expect((await user.sandbox.readFile(done.workspaceId, "shared.txt")).content).toBe("user edit");
    expect((await user.sandbox.listFiles(done.workspaceId)).files.map((f) => f.path)).toEqual(["made.txt", "shared.txt"]);
    const chunks = await (await user.sandbox.attach(step(done, "produce").taskId!)).replay();
    const system = chunks
      .filter((c) => c.stream === "system")
      .map((c) => c.data)
      .join("");
    expect(system).toMatch(/^workspace restored: 1 file\(s\), 8 bytes$/m);
    expect(system).toMatch(/^workspace saved: 1 file\(s\) written, 0 deleted; /m);
    expect(system).toContain("skipped alias (symlinks are not saved)");
    expect(system).toContain("skipped leak (symlinks are not saved)");
    expect(system).toContain("skipped pipe (not a regular file)");
    expect(system).toMatch(/skipped back\\\\slash \(workspace path .* contains a backslash\)/);
    await plan.close();
  });
});
