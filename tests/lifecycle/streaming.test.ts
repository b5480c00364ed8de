// Output volume and delivery guarantees over Realtime, through the official client.
import { describe, expect, it } from "vitest";
import type { OutputChunk, OutputMessage } from "../../sdk/index.ts";
import { newUser, sql, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

describe("live output", () => {
  it("100k lines arrive complete and in order, identical in the database and over Realtime", async () => {
    const kind = uniqueKind("flood");
    const user = await newUser();
    // Queue first (no worker of this kind yet) so a raw subscription is in place before any output.
    const { taskId } = (await user.supabase.functions.invoke("sandbox/execute", { body: { command: "seq 1 100000", requirements: { kind } } })).data as { taskId: string };
    const live: OutputChunk[] = [];
    let messages = 0;
    const channel = user.supabase.channel(`task:${taskId}`, { config: { private: true } });
    channel.on("broadcast", { event: "realtime_output" }, ({ payload }) => {
      messages++;
      live.push(...(payload as OutputMessage).chunks);
    });
    await new Promise<void>((resolve, reject) => channel.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : s !== "CLOSED" && reject(err ?? new Error(s)))));
    await startWorker({ kind });

    const handle = await user.sandbox.attach(taskId);
    const r = await handle.result();
    expect(r.status).toBe("succeeded");
    const expected = Array.from({ length: 100_000 }, (_, i) => `${i + 1}\n`).join("");
    expect(r.stdout).toBe(expected);

    const rows = await sql<{ seq: string; data: string }[]>`select seq, data from public.task_output where task_id = ${taskId} order by seq`;
    expect(rows.map((x) => Number(x.seq))).toEqual(rows.map((_, i) => i + 1));
    expect(rows.map((x) => x.data).join("")).toBe(expected);

    await waitFor(() => live.length >= rows.length, "all chunks over Realtime", 10_000);
    live.sort((a, b) => a.sequence - b.sequence);
    expect(live.map((c) => c.sequence)).toEqual(rows.map((x) => Number(x.seq)));
    expect(live.map((c) => c.data).join("")).toBe(expected);
    // Batched: far fewer messages than lines.
    expect(messages).toBeLessThan(200);
    await user.supabase.removeChannel(channel);
  });

  it("the SDK's sequence stays gap-free and duplicate-free across a WebSocket drop mid-stream", async () => {
    const kind = uniqueKind("reconnect");
    await startWorker({ kind });
    const user = await newUser();
    const seen: number[] = [];
    const handle = await user.sandbox.execute(
      { command: "for i in $(seq 1 60); do echo line $i; sleep 0.05; done", requirements: { kind } },
      { onOutput: (c) => seen.push(c.sequence) },
    );
    await waitFor(() => seen.length >= 5, "first lines", 10_000);
    // Drop the socket under the client; realtime-js reconnects and rejoins on its own.
    const socket = (user.supabase.realtime as unknown as { socketAdapter: { socket: { conn: { terminate(): void } } } }).socketAdapter.socket;
    socket.conn.terminate();
    const r = await handle.result();
    expect(r.status).toBe("succeeded");
    expect(r.stdout).toBe(Array.from({ length: 60 }, (_, i) => `line ${i + 1}\n`).join(""));
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from public.task_output where task_id = ${handle.taskId}`;
    expect(seen).toEqual(Array.from({ length: row!.n }, (_, i) => i + 1));
  });

  it("replays a finished task's output for a late joiner", async () => {
    const kind = uniqueKind("late");
    await startWorker({ kind });
    const user = await newUser();
    const first = await user.sandbox.execute({ command: "echo one; echo two >&2; echo three", requirements: { kind } });
    await first.result();
    const order: string[] = [];
    const late = await user.sandbox.attach(first.taskId, { onOutput: (c) => order.push(c.data) });
    const r = await late.result();
    expect(r.stdout).toBe("one\nthree\n");
    expect(r.stderr).toBe("two\n");
    expect((await late.replay(2)).map((c) => c.sequence)[0]).toBe(2);
    expect(order.join("")).toContain("one\n");
  });
});
