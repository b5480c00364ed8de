// Heartbeats from a thread of their own, on a connection of their own: a main loop that a task's
// output, a parse or a loaded machine stalls for seconds must not let leases run out (issue 17:
// a 600,000-file task stopped its worker's heartbeats for 18 s and a bystander ran 6 times).
//
// The thread renews leases (cogo.heartbeat) every `intervalMs` and stores when the last renewal
// was sent in shared memory, so the main loop's lease-safety check reads the truth at once even
// after a stall, before the thread's queued messages are handled. What the heartbeat says about
// tasks (kept, cancelled, draining) goes to the main loop as messages. A main loop that has not
// ticked for `maxMainStallMs` is taken for wedged: the thread stops renewing, so the leases of a
// worker that can no longer run its tasks run out and other workers take them.
import { DRIVER_FAULT_PATTERNS } from "../functions/_shared/postgres-closed-socket.ts";
import { createRequire } from "node:module";
import { Worker as Thread } from "node:worker_threads";

export interface Beat {
  /** When the renewal that answered was sent (nowMs clock). */
  sentAt: number;
  kept: Set<string>;
  cancel: string[];
  workerStatus: string;
}

export interface HeartbeatOptions {
  databaseUrl: string;
  workerId: string;
  intervalMs: number;
  /** Renewals stop once the main loop has not called mainAlive() for this long. */
  maxMainStallMs: number;
  applicationName: string;
  onBeat(beat: Beat): void;
  /** The thread ended without stop(): no lease is renewed any more. */
  onDied(reason: string): void;
  log(line: string): void;
}

/** Plain JavaScript run by the thread (an eval'd script: no TypeScript loader is needed there). */
const THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
const postgres = require(workerData.postgresPath);
const { databaseUrl, workerId, intervalMs, maxMainStallMs, applicationName, clocks } = workerData;
// [0] last renewal sent (µs), [1] main loop's last tick (µs)
const shared = new BigInt64Array(clocks);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sql = postgres(databaseUrl, { max: 1, idle_timeout: 0, onnotice: () => {}, connection: { application_name: applicationName } });
// postgres.js's two uncatchable faults (functions/_shared/postgres-closed-socket.ts; its patterns
// arrive as workerData.faults) would end the thread, and with it the worker; the next beat
// reconnects. Anything else still ends the thread, which stops the worker.
const faults = Object.fromEntries(Object.entries(workerData.faults).map(([k, source]) => [k, new RegExp(source)]));
process.on("uncaughtException", (err) => {
  const closedWrite = err instanceof TypeError && faults.closedWriteMessage.test(err.message) && faults.closedWriteStack.test(err.stack || "");
  const typeFetch = err && typeof err.query === "string" && faults.typeFetchQuery.test(err.query);
  if (closedWrite || typeFetch) return parentPort.postMessage({ type: "error", message: "postgres.js driver fault, ignored: " + err.message });
  parentPort.postMessage({ type: "error", message: "heartbeat thread: " + (err && err.stack ? err.stack : String(err)) });
  process.exit(1);
});
let stopping = false;
let timer;
async function beat() {
  const sentAt = now();
  const mainSilentMs = sentAt - Number(Atomics.load(shared, 1)) / 1000;
  if (mainSilentMs > maxMainStallMs) {
    parentPort.postMessage({ type: "error", message: "the main loop has not run for " + Math.round(mainSilentMs) + " ms; leases are left to run out" });
  } else {
    try {
      const [row] = await sql\`select kept::text[] as kept, cancel::text[] as cancel, worker_status::text as status from cogo.heartbeat(\${workerId})\`;
      Atomics.store(shared, 0, BigInt(Math.round(sentAt * 1000)));
      parentPort.postMessage({ type: "beat", sentAt, kept: row.kept, cancel: row.cancel, workerStatus: row.status });
    } catch (err) {
      parentPort.postMessage({ type: "error", message: err && err.message ? err.message : String(err) });
    }
  }
  if (!stopping) timer = setTimeout(beat, Math.max(0, sentAt + intervalMs - now()));
}
parentPort.on("message", async (m) => {
  if (m !== "stop") return;
  stopping = true;
  clearTimeout(timer);
  await sql.end({ timeout: 5 }).catch(() => {});
  parentPort.close();
});
beat();
`;

/**
 * Milliseconds on the process's monotonic clock (CLOCK_MONOTONIC): the same in every thread and
 * never stepped by NTP, unlike performance.timeOrigin, which each thread takes from the wall clock.
 */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

export class HeartbeatThread {
  readonly #thread: Thread;
  readonly #clocks: BigInt64Array;
  readonly #exited: Promise<void>;
  #stopping = false;

  /** `startedAt` counts as the first renewal (registering stamps the worker's heartbeat). */
  constructor(options: HeartbeatOptions, startedAt = nowMs()) {
    const shared = new SharedArrayBuffer(16);
    this.#clocks = new BigInt64Array(shared);
    Atomics.store(this.#clocks, 0, BigInt(Math.round(startedAt * 1000)));
    this.mainAlive();
    this.#thread = new Thread(THREAD, {
      eval: true,
      workerData: {
        postgresPath: createRequire(import.meta.url).resolve("postgres"),
        databaseUrl: options.databaseUrl,
        workerId: options.workerId,
        intervalMs: options.intervalMs,
        maxMainStallMs: options.maxMainStallMs,
        applicationName: options.applicationName,
        clocks: shared,
        faults: Object.fromEntries(Object.entries(DRIVER_FAULT_PATTERNS).map(([k, re]) => [k, re.source])),
      },
    });
    type Message = { type: "beat"; sentAt: number; kept: string[]; cancel: string[]; workerStatus: string } | { type: "error"; message: string };
    this.#thread.on("message", (m: Message) => {
      if (m.type === "error") return options.log(`heartbeat failed: ${m.message}`);
      options.onBeat({ sentAt: m.sentAt, kept: new Set(m.kept), cancel: m.cancel, workerStatus: m.workerStatus });
    });
    let failure = "";
    this.#thread.on("error", (err) => (failure = err.message));
    this.#exited = new Promise((resolve) =>
      this.#thread.once("exit", (code) => {
        if (!this.#stopping) options.onDied(failure || `exit code ${code}`);
        resolve();
      }),
    );
  }

  /** When the last successful renewal was sent (nowMs clock), read from shared memory. */
  get lastOkAt(): number {
    return Number(Atomics.load(this.#clocks, 0)) / 1000;
  }

  /** The main loop says it still runs; the thread renews leases only while it does. */
  mainAlive(): void {
    Atomics.store(this.#clocks, 1, BigInt(Math.round(nowMs() * 1000)));
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#thread.postMessage("stop");
    const timer = setTimeout(() => void this.#thread.terminate(), 6000);
    await this.#exited;
    clearTimeout(timer);
  }
}
