// execute → claim → sandboxed run → live output → final status, through the official client.
import { describe, expect, it, beforeAll } from "vitest";
import type { TaskEventMessage } from "../../sdk/index.ts";
import { newUser, startWorker, uniqueKind, sql } from "../helpers/env.ts";

const kind = uniqueKind("exec");

describe("task lifecycle", () => {
  beforeAll(async () => {
    await startWorker({ kind, concurrency: 4 });
  });

  it("runs echo hello end to end and reports every status change in order", async () => {
    const user = await newUser();
    const events: TaskEventMessage[] = [];
    const handle = await user.sandbox.execute({ command: "echo hello", requirements: { kind } }, { onEvent: (e) => events.push(e) });
    const r = await handle.result();
    expect(r).toMatchObject({ status: "succeeded", exitCode: 0, signal: null, stdout: "hello\n", stderr: "" });
    const statuses = events.filter((e) => e.type === "task_status").map((e) => e.data.status);
    expect(statuses).toEqual(["claimed", "running", "succeeded"]);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(r.task.usage).toMatchObject({ wallMs: expect.any(Number) });
  });

  it("keeps stdout and stderr apart, in order, with exit codes", async () => {
    const user = await newUser();
    const order: string[] = [];
    const handle = await user.sandbox.execute(
      { command: "echo out1; echo err1 >&2; sleep 0.1; echo out2; exit 7", requirements: { kind } },
      { onOutput: (c) => order.push(`${c.stream}:${c.data}`) },
    );
    const r = await handle.result();
    expect(r).toMatchObject({ status: "failed", exitCode: 7, stdout: "out1\nout2\n", stderr: "err1\n", reason: "exited with code 7" });
    expect(order.join("")).toContain("stdout:out1\n");
    expect(order.indexOf("stdout:out2\n")).toBeGreaterThan(order.findIndex((o) => o.startsWith("stderr:err1")));
  });

  it("reports a signal death as the signal", async () => {
    const user = await newUser();
    const r = await (await user.sandbox.execute({ command: "kill -TERM $$", requirements: { kind } })).result();
    expect(r).toMatchObject({ status: "failed", exitCode: null, signal: "SIGTERM", reason: "killed by SIGTERM" });
  });

  it("runs an argv without a shell", async () => {
    const user = await newUser();
    const r = await (await user.sandbox.execute({ argv: ["printf", "%s|", "a b", "$HOME", ";rm -rf /"], requirements: { kind } })).result();
    expect(r).toMatchObject({ status: "succeeded", stdout: "a b|$HOME|;rm -rf /|" });
  });

  it("puts files in the workspace and passes env", async () => {
    const user = await newUser();
    const r = await (
      await user.sandbox.execute({
        command: 'cat src/hello.txt; ./run.sh; echo "$GREETING"',
        files: [
          { path: "src/hello.txt", content: "from a file\n" },
          { path: "run.sh", content: Buffer.from("#!/bin/sh\necho script ran\n").toString("base64"), encoding: "base64", executable: true },
        ],
        env: { GREETING: "hi there" },
        requirements: { kind },
      })
    ).result();
    expect(r).toMatchObject({ status: "succeeded", stdout: "from a file\nscript ran\nhi there\n" });
  });

  it("times out a task past its timeoutMs", async () => {
    const user = await newUser();
    const started = Date.now();
    const r = await (await user.sandbox.execute({ command: "echo start; sleep 30", timeoutMs: 1000, requirements: { kind } })).result();
    expect(r).toMatchObject({ status: "timed_out", stdout: "start\n" });
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it("delivers stdin: cat echoes it, read gets a line", async () => {
    const user = await newUser();
    const cat = await user.sandbox.execute({ command: "cat", stdin: "pipe", requirements: { kind } });
    await cat.write("abc\n");
    await cat.write("def\n");
    await cat.closeStdin();
    expect(await cat.result()).toMatchObject({ status: "succeeded", stdout: "abc\ndef\n" });

    const read = await user.sandbox.execute({ command: 'printf "Continue? "; read x; echo "got $x"', stdin: "pipe", requirements: { kind } });
    await read.write("yes\n");
    expect(await read.result()).toMatchObject({ status: "succeeded", stdout: "Continue? got yes\n" });
  });

  it("writes output rows gap-free from seq 1 with stream and attempt", async () => {
    const user = await newUser();
    const r = await (await user.sandbox.execute({ command: "for i in 1 2 3; do echo $i; echo e$i >&2; sleep 0.06; done", requirements: { kind } })).result();
    const rows = await sql<{ seq: string; stream: string; attempt: number }[]>`select seq, stream, attempt from public.task_output where task_id = ${r.taskId} order by seq`;
    expect(rows.map((x) => Number(x.seq))).toEqual(rows.map((_, i) => i + 1));
    expect(new Set(rows.map((x) => x.attempt))).toEqual(new Set([1]));
    expect(new Set(rows.map((x) => x.stream))).toEqual(new Set(["stdout", "stderr"]));
  });
});
