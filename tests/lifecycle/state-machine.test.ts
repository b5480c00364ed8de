// The task lifecycle as a randomized state machine (issue 17, docs/state-machine.md): fake workers,
// a user and the API interleave claim, start, heartbeat, output, finish, release, block and
// recovery steps, re-queues for recovery (retry and reassign), cancels, lease expiry (time moves),
// the lease rescuer, lost-worker marking, API recoveries, drains and worker crashes, each step on a
// connection of its own picked at random and some steps two at a time, against the real Postgres of
// the shared stack, through the public cogo.* functions only. After every step the invariants
// (INVARIANTS below) are checked on the database and on the model of each worker's sandboxes; a
// wind-down then ends every task and checks each task's whole history in SQL.
//
// Time: leases are an hour (the longest allowed), so the wall time of the run is noise, and the
// step "time passes" moves this file's timestamps (heartbeats, leases, run_after, …) back by a
// fraction of a lease. The fake workers behave as worker/ does: a sandbox starts after start_task,
// is killed before finish/release/requeue_for_recovery, when a heartbeat does not keep its task or
// returns it as cancelled, and when 70 % of a lease has passed since the worker's last good
// heartbeat (the worker then hands the task back).
//
// STATE_SEED=<n> replays a run (the seed is printed on every run; with STATE_CONCURRENCY=0 the
// replay is exact, otherwise races may resolve differently), STATE_STEPS=<n> sets the number of
// steps (2000), STATE_CONCURRENCY=<p> the share of steps that run two operations at once (0.3),
// STATE_SILENT_CLAIMS=1 lets workers claim while their heartbeats are stale, as worker/ does (see
// the last regression test).
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "../../functions/_shared/db.ts";
import type { BlockDetected, RecoveryStarted, RecoverySucceeded } from "../../functions/_shared/events.ts";
import { newUserId, stack, uniqueKind } from "../helpers/env.ts";

// Event data as the worker writes it (functions/_shared/events.ts): the event-union test checks
// every row in the database, including these.
const BLOCK: BlockDetected = {
  reason: "idle_stall",
  durationMs: 1000,
  usage: { cpuPercent: 0, cpuMs: 0, rssBytes: 0, processes: 1, threads: 1, outputBytes: 0, wallMs: 1000, memoryLimitBytes: null, processLimit: null },
  recoverable: true,
  evidence: { summary: "state-machine test", lastOutput: [], processes: [] },
  plan: ["terminate", "retry"],
};
const started = (action: RecoveryStarted["action"], attempt: number): RecoveryStarted => ({ action, attempt, reason: "idle_stall" });
const succeeded = (action: RecoverySucceeded["action"], attempt: number): RecoverySucceeded => ({ action, attempt, reason: "idle_stall", message: "state-machine test" });

type Conn = ReturnType<typeof connect>;

const L = 3_600_000; // lease_ms of every fake worker
const SELF_STOP_MS = 0.7 * L; // a worker stops its tasks 70 % of a lease after its last good heartbeat
const ACTIVE = new Set(["claimed", "running", "blocked", "recovering"]);
const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
const FINALS = ["succeeded", "failed", "cancelled", "timed_out"];
/** The transitions docs/state-machine.md draws; every task_status event must be one of them. */
const EDGES: Record<string, string[]> = {
  queued: ["claimed", "cancelled"],
  claimed: ["running", "queued", ...FINALS],
  running: ["blocked", "queued", ...FINALS],
  blocked: ["recovering", "queued", ...FINALS],
  recovering: ["running", "blocked", "queued", ...FINALS],
};
/** SQLSTATEs a step may meet: lease lost, not found, no attempts left. Anything else fails the test. */
const EXPECTED_CODES = new Set(["CG409", "CG404", "CG422"]);

const INVARIANTS = ["attempts <= maxAttempts", "cancel wins", "one holder", "stale attempts fenced", "terminal is terminal", "legal transitions", "gap-free seqs"] as const;
type Invariant = (typeof INVARIANTS)[number] | "unexpected error" | "liveness";

const conns: Conn[] = [];
function newConn(): Conn {
  // Commits need not wait for the disk here (the stack is thrown away); it makes the run 5× faster.
  const c = connect(stack.dbUrl, { max: 1, connection: { synchronous_commit: "off" } });
  conns.push(c);
  return c;
}
afterAll(() => Promise.all(conns.splice(0).map((c) => c.end({ timeout: 5 }))));

/** mulberry32: small, seedable, good enough to pick steps. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    chance: (p: number) => next() < p,
    pick<T>(xs: readonly T[]): T | undefined {
      return xs.length ? xs[Math.floor(next() * xs.length)] : undefined;
    },
  };
}

/** Runs fn in a transaction as `authenticated` with the user's claims, as the API would. */
function asUser<T>(c: Conn, userId: string, fn: (tx: Conn) => Promise<T>): Promise<T> {
  return c.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ sub: userId, role: "authenticated" })}, true)`;
    return await fn(tx as unknown as Conn);
  }) as Promise<T>;
}

const registerWorker = async (c: Conn, name: string, kind: string, labels: string[]) =>
  (await c<{ id: string }[]>`select id from cogo.register_worker(${name}, ${kind}, ${labels}::text[], 4, ${L}, 'state-machine', '{}'::jsonb)`)[0]!.id;

/** Moves time forward by ms for these workers and tasks: all their timestamps move back. */
async function timePasses(c: Conn, ms: number, workerIds: string[], taskIds: string[]) {
  const d = ms / 1000;
  await c`update public.workers set last_heartbeat_at = last_heartbeat_at - make_interval(secs => ${d}), created_at = created_at - make_interval(secs => ${d})
           where id = any(${workerIds}::uuid[])`;
  await c`update public.tasks
             set lease_expires_at = lease_expires_at - make_interval(secs => ${d}), run_after = run_after - make_interval(secs => ${d}),
                 created_at = created_at - make_interval(secs => ${d}), claimed_at = claimed_at - make_interval(secs => ${d}),
                 started_at = started_at - make_interval(secs => ${d}), cancel_requested_at = cancel_requested_at - make_interval(secs => ${d}),
                 updated_at = updated_at - make_interval(secs => ${d})
           where id = any(${taskIds}::uuid[])`;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; message: string };

type FakeWorker = {
  id: string;
  name: string;
  slot: number;
  kind: string;
  labels: string[];
  alive: boolean;
  draining: boolean;
  stalled: boolean; // its heartbeats do not get through (a busy event loop, a blackholed connection)
  lastHeartbeatM: number; // model time of its last good heartbeat (registration counts)
  holdings: Holding[];
};

type Holding = {
  task: string;
  attempt: number;
  worker: FakeWorker;
  state: "claimed" | "running" | "blocked" | "recovering";
  sandbox: boolean; // its sandbox process is alive
  started: boolean;
  cancelSeen: boolean; // the worker learnt of the cancel and killed the sandbox; it finishes `cancelled`
  mustRelease: boolean; // stopped for lack of heartbeats: the worker hands it back
  noAttemptsLeft: boolean; // requeue_for_recovery said CG422: the worker gives up (failed)
  outSeq: number;
  stale: boolean; // known lost: every fenced call with it must fail from now on
  busy: boolean; // a step with it is in flight
  seq: number; // when it was made (the heartbeat only judges holdings older than itself)
};

type TaskModel = {
  id: string;
  name: string;
  maxAttempts: number;
  lastEventSeq: number;
  lastEventAttempt: number;
  lastStatus: string;
  claims: number;
  lastOutputSeq: number;
  lastOutputAttempt: number;
  cancelAttempt: number | null; // the attempt a cancel was asked on (from cancel_task's answer)
  finishedByHolder: string | null; // the status its holder's finish_task set
  finalSnapshot: string | null;
  retired: boolean; // final and every event read: only its row is still compared
};

type Row = {
  id: string;
  status: string;
  attempt: number;
  maxAttempts: number;
  workerId: string | null;
  hasLease: boolean;
  leaseLive: boolean;
  cancelReq: boolean;
  eventSeq: number;
  outputSeq: number;
  finished: boolean;
  snap: string;
};
type EventRow = { taskId: string; seq: number; attempt: number; type: string; status: string | null; previous: string | null; dataAttempt: number | null };
type OutputRow = { taskId: string; seq: number; attempt: number; stream: string; data: string };

type Op = { label: string; exclusive?: boolean; run: (c: Conn, concurrent: boolean) => Promise<void> };

class StateMachine {
  readonly rand;
  readonly user = newUserId();
  readonly kinds = [uniqueKind("sm"), uniqueKind("sm")] as const;
  readonly slots: { kind: string; labels: string[] }[];
  readonly pool: Conn[] = Array.from({ length: 5 }, newConn);
  readonly checker = newConn();
  workers: FakeWorker[] = [];
  allWorkerIds: string[] = [];
  deadWorkerIds: string[] = [];
  staleArchive: Holding[] = [];
  tasks = new Map<string, TaskModel>();
  names = new Map<string, string>();
  rows = new Map<string, Row>();
  M = 0;
  steps = 0;
  pairs = 0;
  sqlCalls = 0;
  holdingSeq = 0;
  workerGen = 0;
  readonly checks = Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<(typeof INVARIANTS)[number], number>;
  readonly outcomes = new Map<string, number>();
  violations: { invariant: Invariant; step: number; detail: string; trace: string[] }[] = [];
  trace: string[] = [];

  constructor(
    readonly seed: number,
    readonly concurrency: number,
    readonly silentClaims: boolean,
  ) {
    this.rand = prng(seed);
    const [k1, k2] = this.kinds;
    this.slots = [
      { kind: k1, labels: [] },
      { kind: k1, labels: [] },
      { kind: k1, labels: ["gpu"] },
      { kind: k2, labels: [] },
    ];
  }

  // ── bookkeeping ──────────────────────────────────────────────────────────────────────────────
  log(line: string) {
    this.trace.push(`#${this.steps} ${line}`);
    if (this.trace.length > 60) this.trace.shift();
  }
  order = (taskId: string) => Number(this.tasks.get(taskId)?.name.slice(1) ?? 0);
  n = (id: string | null | undefined) => (id ? (this.names.get(id) ?? id.slice(0, 8)) : "null");
  h = (h: Holding) => `${this.n(h.task)}@${h.attempt}/${this.n(h.worker.id)}`;
  violation(invariant: Invariant, detail: string) {
    if (this.violations.length < 50) this.violations.push({ invariant, step: this.steps, detail, trace: [...this.trace] });
  }
  check(invariant: (typeof INVARIANTS)[number], ok: boolean, detail: () => string) {
    this.checks[invariant]++;
    if (!ok) this.violation(invariant, detail());
  }

  opMs = new Map<string, [number, number]>();
  async call<T>(label: string, f: () => Promise<T>): Promise<Outcome<T>> {
    this.sqlCalls++;
    const t0 = performance.now();
    const key = label.replace(/[ (:#].*/, "");
    try {
      const value = await f();
      this.log(`${label} → ok`);
      return { ok: true, value };
    } catch (err) {
      const e = err as { code?: string; message?: string };
      const code = e.code ?? "ERR";
      const message = e.message ?? String(err);
      this.log(`${label} → ${code}`);
      this.outcomes.set(code, (this.outcomes.get(code) ?? 0) + 1);
      if (!EXPECTED_CODES.has(code)) this.violation("unexpected error", `${label}: ${code} ${message}`);
      return { ok: false, code, message };
    } finally {
      const [n, ms] = this.opMs.get(key) ?? [0, 0];
      this.opMs.set(key, [n + 1, ms + performance.now() - t0]);
    }
  }

  /** Whether the last check saw this attempt as the task's holder (only meaningful between sequential steps). */
  holderNow(h: Holding) {
    const r = this.rows.get(h.task);
    return !!r && ACTIVE.has(r.status) && r.attempt === h.attempt && r.workerId === h.worker.id && r.leaseLive;
  }

  /** A fenced call: a stale attempt must be refused; the holder (as last seen, no step beside it) must not be. */
  async fenced<T>(c: Conn, h: Holding, name: string, concurrent: boolean, f: (c: Conn) => Promise<T>): Promise<Outcome<T>> {
    const wasStale = h.stale;
    const holder = !concurrent && this.holderNow(h);
    const r = await this.call(`${name}(${this.h(h)})`, () => f(c));
    this.check("stale attempts fenced", !(r.ok && wasStale), () => `${name} succeeded for the stale attempt ${this.h(h)}`);
    if (!r.ok && r.code === "CG409" && !/lease lost/.test(r.message)) this.violation("gap-free seqs", `${name}(${this.h(h)}): ${r.message}`);
    if (!r.ok && r.code === "CG409" && /lease lost/.test(r.message)) {
      this.check("stale attempts fenced", !holder, () => `${name} refused the holder ${this.h(h)} (lease lost) though it held a live lease`);
      this.drop(h);
    }
    return r;
  }

  /** The worker lets go of an attempt (it is over or lost); it stays around for stale calls. */
  drop(h: Holding) {
    h.sandbox = false;
    h.stale = true;
    const w = h.worker;
    w.holdings = w.holdings.filter((x) => x !== h);
    this.staleArchive.push(h);
    if (this.staleArchive.length > 40) this.staleArchive.shift();
  }

  // ── setup ────────────────────────────────────────────────────────────────────────────────────
  async addWorker(c: Conn, slot: number) {
    const { kind, labels } = this.slots[slot]!;
    const name = `sm${slot}-${++this.workerGen}`;
    const id = await registerWorker(c, name, kind, labels);
    this.sqlCalls++;
    this.names.set(id, `W${this.workerGen}`);
    this.allWorkerIds.push(id);
    const w: FakeWorker = { id, name, slot, kind, labels, alive: true, draining: false, stalled: false, lastHeartbeatM: this.M, holdings: [] };
    this.workers[slot] = w;
    this.log(`register_worker ${this.n(id)} (slot ${slot}, ${kind === this.kinds[0] ? "K1" : "K2"}${labels.length ? ` ${labels}` : ""})`);
    return w;
  }

  /** Enqueues n tasks as the user, in one transaction (each is an ordinary cogo.enqueue_task call). */
  async enqueue(c: Conn, n: number) {
    const specs = Array.from({ length: n }, () => {
      const which = this.rand.next();
      const [kind, labels] = which < 0.5 ? [this.kinds[0], []] : which < 0.7 ? [this.kinds[0], ["gpu"]] : [this.kinds[1], []];
      const maxAttempts = [1, 2, 2, 3, 3, 3][this.rand.int(6)]!;
      return { command: "echo state-machine", requirements: { kind, labels }, maxAttempts, priority: this.rand.int(3) - 1 };
    });
    const r = await this.call(`enqueue_task ×${n} (max ${specs.map((s) => s.maxAttempts).join(",")})`, () =>
      asUser(
        c,
        this.user,
        (tx) => tx<{ id: string }[]>`select (cogo.enqueue_task(s::jsonb)).id from unnest(${specs.map((s) => JSON.stringify(s))}::text[]) with ordinality as x(s, i) order by i`,
      ),
    );
    if (!r.ok) return;
    // One statement gives them one created_at; tell them apart in enqueue order, so claims (oldest
    // first, then by random id) pick the same task when a seed is replayed.
    this.sqlCalls++;
    await c`update public.tasks t set created_at = t.created_at + make_interval(secs => x.i / 1e6)
              from unnest(${r.value.map((t) => t.id)}::uuid[]) with ordinality as x(id, i) where t.id = x.id`;
    const names: string[] = [];
    r.value.forEach(({ id }, i) => {
      const name = `T${this.tasks.size + 1}`;
      names.push(name);
      this.names.set(id, name);
      this.tasks.set(id, {
        id,
        name,
        maxAttempts: specs[i]!.maxAttempts,
        lastEventSeq: 0,
        lastEventAttempt: 0,
        lastStatus: "queued",
        claims: 0,
        lastOutputSeq: 0,
        lastOutputAttempt: 0,
        cancelAttempt: null,
        finishedByHolder: null,
        finalSnapshot: null,
        retired: false,
      });
    });
    this.trace[this.trace.length - 1] += ` ${names.join(", ")}`;
  }

  liveTasks() {
    return [...this.tasks.values()].filter((t) => !t.finalSnapshot);
  }

  // ── steps ────────────────────────────────────────────────────────────────────────────────────
  freeHoldings(pred: (h: Holding) => boolean) {
    return this.workers.filter((w) => w.alive).flatMap((w) => w.holdings.filter((h) => !h.busy && pred(h)));
  }

  withHolding(label: string, pred: (h: Holding) => boolean, run: (h: Holding, c: Conn, concurrent: boolean) => Promise<void>): Op | null {
    const h = this.rand.pick(this.freeHoldings(pred));
    if (!h) return null;
    h.busy = true;
    return {
      label,
      run: async (c, concurrent) => {
        try {
          await run(h, c, concurrent);
        } finally {
          h.busy = false;
        }
      },
    };
  }

  planners: [number, () => Op | null][] = [
    [14, () => this.planClaim()],
    [
      10,
      () =>
        this.withHolding(
          "start",
          (h) => h.state === "claimed" && !h.started && !h.cancelSeen && !h.mustRelease && this.mayLaunch(h.worker),
          (h, c, x) => this.start(h, c, x),
        ),
    ],
    [14, () => this.planHeartbeat()],
    [
      5,
      () =>
        this.withHolding(
          "output",
          (h) => h.sandbox,
          (h, c, x) => this.output(h, c, x),
        ),
    ],
    [
      9,
      () =>
        this.withHolding(
          "finish",
          (h) => h.started || h.cancelSeen || h.noAttemptsLeft,
          (h, c, x) => this.finish(h, c, x),
        ),
    ],
    [
      1,
      () =>
        this.withHolding(
          "finish",
          () => true,
          (h, c, x) => this.finish(h, c, x),
        ),
    ],
    [
      5,
      () =>
        this.withHolding(
          "release",
          () => true,
          (h, c, x) => this.release(h, c, x),
        ),
    ],
    [
      8,
      () =>
        this.withHolding(
          "release (stopped)",
          (h) => h.mustRelease,
          (h, c, x) => this.release(h, c, x),
        ),
    ],
    [
      6,
      () =>
        this.withHolding(
          "report_block",
          (h) => h.state === "running" && h.sandbox && !h.cancelSeen,
          (h, c, x) => this.reportBlock(h, c, x),
        ),
    ],
    [
      6,
      () =>
        this.withHolding(
          "begin_recovery",
          (h) => h.state === "blocked" && !h.mustRelease,
          (h, c, x) => this.beginRecovery(h, c, x),
        ),
    ],
    [
      3,
      () =>
        this.withHolding(
          "end_recovery",
          (h) => h.state === "recovering" && h.sandbox,
          (h, c, x) => this.endRecovery(h, c, x),
        ),
    ],
    [
      10,
      () =>
        this.withHolding(
          "requeue_for_recovery",
          (h) => h.state === "recovering" && !h.noAttemptsLeft,
          (h, c, x) => this.requeueForRecovery(h, c, x),
        ),
    ],
    [2, () => this.planCancel()],
    [6, () => this.planTimePasses()],
    [6, () => ({ label: "requeue_expired", run: (c) => this.rescue(c) })],
    [2, () => ({ label: "mark_lost_workers", run: (c) => this.markLost(c) })],
    [3, () => this.planRequestRecovery()],
    [1, () => this.planRecoverWorker()],
    [0.5, () => this.planDrain()],
    [3, () => this.planExit()],
    [0.5, () => this.planCrash()],
    [5, () => this.planStaleCall()],
  ];

  /**
   * Whether the worker may claim and start tasks: not when 70 % of a lease has passed since its last
   * good heartbeat (it would stop them at once). worker/worker.ts does claim then, and stops the task
   * at its next lease-safety tick; with STATE_SILENT_CLAIMS=1 the fake workers do too, which finds
   * the race tested by "a task claimed by a worker with stale heartbeats is not taken from it".
   */
  mayLaunch(w: FakeWorker) {
    return this.silentClaims || this.M - w.lastHeartbeatM < SELF_STOP_MS;
  }

  planClaim(): Op | null {
    const w = this.rand.pick(this.workers.filter((w) => w.alive && !w.draining && this.mayLaunch(w)));
    if (!w) return null;
    const max = 1 + this.rand.int(2);
    return {
      label: "claim",
      run: async (c) => {
        const r = await this.call(`claim_tasks(${this.n(w.id)}, ${max})`, () => c<{ id: string; attempt: number }[]>`select id, attempt from cogo.claim_tasks(${w.id}, ${max})`);
        if (!r.ok) return;
        this.trace[this.trace.length - 1] += ` [${r.value.map((t) => `${this.n(t.id)}@${t.attempt}`).join(", ")}]`;
        for (const t of [...r.value].sort((a, b) => this.order(a.id) - this.order(b.id))) {
          if (!this.tasks.has(t.id)) continue;
          w.holdings.push({
            task: t.id,
            attempt: t.attempt,
            worker: w,
            state: "claimed",
            sandbox: false,
            started: false,
            cancelSeen: false,
            mustRelease: false,
            noAttemptsLeft: false,
            outSeq: 0,
            stale: false,
            busy: false,
            seq: ++this.holdingSeq,
          });
        }
      },
    };
  }

  async start(h: Holding, c: Conn, concurrent: boolean) {
    const r = await this.fenced(c, h, "start_task", concurrent, (c) => c<{ seq: string }[]>`select cogo.start_task(${h.task}, ${h.attempt}, ${h.worker.id}) as seq`);
    if (!r.ok) return;
    h.started = true;
    h.state = "running";
    h.sandbox = !h.stale && h.worker.alive;
    h.outSeq = Number(r.value[0]!.seq);
  }

  planHeartbeat(): Op | null {
    const w = this.rand.pick(this.workers.filter((w) => w.alive && !w.stalled));
    if (!w) return null;
    const sentAt = this.holdingSeq;
    return {
      label: "heartbeat",
      run: async (c) => {
        const r = await this.call(
          `heartbeat(${this.n(w.id)})`,
          () => c<{ kept: string[]; cancel: string[]; workerStatus: string }[]>`select kept, cancel, worker_status from cogo.heartbeat(${w.id})`,
        );
        if (!r.ok || !w.alive) return;
        const { kept, cancel, workerStatus } = r.value[0]!;
        this.trace[this.trace.length - 1] += ` kept [${kept.map(this.n).join(", ")}] cancel [${cancel.map(this.n).join(", ")}] ${workerStatus}`;
        w.lastHeartbeatM = this.M;
        if (workerStatus === "draining") w.draining = true;
        for (const h of [...w.holdings]) {
          if (h.busy || h.seq > sentAt) continue;
          const newest = Math.max(...w.holdings.filter((x) => x.task === h.task).map((x) => x.attempt));
          if (!kept.includes(h.task) || h.attempt !== newest) {
            this.drop(h); // lease lost: the worker kills the sandbox and forgets the attempt
          } else if (cancel.includes(h.task)) {
            h.cancelSeen = true;
            h.sandbox = false;
          }
        }
      },
    };
  }

  async output(h: Holding, c: Conn, concurrent: boolean) {
    const first = h.outSeq + 1;
    const r = await this.fenced(
      c,
      h,
      `append_output#${first}`,
      concurrent,
      (c) =>
        c<{ last: string }[]>`select cogo.append_output(${h.task}, ${h.attempt}, ${h.worker.id}, ${first},
          array['stdout', 'stderr']::public.output_stream[], array[${`line ${first}\n`}, ${`line ${first + 1}\n`}]::text[],
          array[clock_timestamp(), clock_timestamp()]) as last`,
    );
    if (r.ok) h.outSeq = Number(r.value[0]!.last);
  }

  async finish(h: Holding, c: Conn, concurrent: boolean) {
    const status = h.cancelSeen ? "cancelled" : h.noAttemptsLeft ? "failed" : this.rand.pick(["succeeded", "succeeded", "succeeded", "failed", "timed_out"])!;
    h.sandbox = false; // the process has exited (or was killed) before the worker reports it
    const r = await this.fenced(
      c,
      h,
      `finish_task:${status}`,
      concurrent,
      (c) =>
        c<{ status: string }[]>`select status from cogo.finish_task(${h.task}, ${h.attempt}, ${h.worker.id}, ${status}::public.task_status, 0, null, 'done', '{}'::jsonb, null)`,
    );
    if (!r.ok) return;
    this.tasks.get(h.task)!.finishedByHolder = status;
    this.drop(h);
  }

  async release(h: Holding, c: Conn, concurrent: boolean) {
    h.sandbox = false; // killed first
    const r = await this.fenced(c, h, "release_task", concurrent, (c) => c`select cogo.release_task(${h.task}, ${h.attempt}, ${h.worker.id}, 'worker stopping; re-queued')`);
    if (r.ok) this.drop(h);
  }

  async reportBlock(h: Holding, c: Conn, concurrent: boolean) {
    const r = await this.fenced(c, h, "report_block", concurrent, (c) => c`select 1 from cogo.report_block(${h.task}, ${h.attempt}, ${h.worker.id}, ${c.json(BLOCK)})`);
    if (!r.ok) return;
    h.state = "blocked";
    // With automatic recovery the monitor begins it at once, mostly (a manual one waits for the API).
    if (this.rand.chance(0.7)) await this.beginRecovery(h, c, concurrent);
  }

  async beginRecovery(h: Holding, c: Conn, concurrent: boolean) {
    const r = await this.fenced(
      c,
      h,
      "begin_recovery",
      concurrent,
      (c) => c`select cogo.begin_recovery(${h.task}, ${h.attempt}, ${h.worker.id}, ${c.json(started("retry", h.attempt))})`,
    );
    if (r.ok) h.state = "recovering";
  }

  async endRecovery(h: Holding, c: Conn, concurrent: boolean) {
    const r = await this.fenced(
      c,
      h,
      "end_recovery:resume",
      concurrent,
      (c) => c`select cogo.end_recovery(${h.task}, ${h.attempt}, ${h.worker.id}, true, ${c.json(succeeded("feed_stdin", h.attempt))}, true)`,
    );
    if (r.ok) h.state = "running";
  }

  async requeueForRecovery(h: Holding, c: Conn, concurrent: boolean) {
    const reassign = this.rand.chance(0.5);
    const step = reassign ? { action: "reassign", exclude: true, reason: "reassigned" } : { action: "retry", delayMs: this.rand.chance(0.5) ? 0 : L / 2, reason: "retry" };
    h.sandbox = false; // the sandbox is killed before the task goes back to the queue
    const r = await this.fenced(
      c,
      h,
      `requeue_for_recovery:${step.action}`,
      concurrent,
      (c) =>
        c<
          { status: string }[]
        >`select status from cogo.requeue_for_recovery(${h.task}, ${h.attempt}, ${h.worker.id}, ${c.json(step)}, ${c.json(succeeded(step.action as RecoverySucceeded["action"], h.attempt))})`,
    );
    if (r.ok) {
      if (r.value[0]!.status !== "queued") this.tasks.get(h.task)!.finishedByHolder = r.value[0]!.status;
      this.drop(h);
    } else if (r.code === "CG422") {
      h.noAttemptsLeft = true;
    }
  }

  planCancel(): Op | null {
    const live = this.liveTasks();
    const t = this.rand.chance(0.9) ? this.rand.pick(live) : this.rand.pick([...this.tasks.values()]);
    if (!t) return null;
    const notify = this.rand.chance(0.5);
    return {
      label: "cancel",
      run: async (c, concurrent) => {
        const before = this.rows.get(t.id)?.status;
        const r = await this.call(`cancel_task(${t.name}) as user`, () =>
          asUser(
            c,
            this.user,
            (tx) => tx<{ status: string; attempt: number; req: boolean }[]>`
            select status, attempt, cancel_requested_at is not null as req from cogo.cancel_task(${t.id})`,
          ),
        );
        if (!r.ok) return;
        const row = r.value[0]!;
        this.trace[this.trace.length - 1] += ` ${row.status}${row.req ? " (cancel requested)" : ""}`;
        if (!concurrent && before === "queued") {
          this.check("cancel wins", row.status === "cancelled", () => `cancel_task of queued ${t.name} left it ${row.status}`);
        }
        if (row.req && ACTIVE.has(row.status) && t.cancelAttempt === null) t.cancelAttempt = row.attempt;
        if (notify && row.req) {
          // The NOTIFY reached the holder: it kills the sandbox and will finish the task cancelled.
          for (const w of this.workers) {
            for (const h of w.holdings) {
              if (h.task === t.id && h.attempt === row.attempt && !h.busy) {
                h.cancelSeen = true;
                h.sandbox = false;
              }
            }
          }
        }
      },
    };
  }

  planTimePasses(): Op | null {
    const ms = Math.round(this.rand.pick([0.25, 0.5, 0.72, 0.8, 1.05, 1.5, 3.2])! * L + this.rand.int(30_000));
    return {
      label: "time passes",
      exclusive: true,
      run: async (c) => {
        this.M += ms;
        this.sqlCalls += 2;
        await timePasses(
          c,
          ms,
          this.allWorkerIds,
          this.liveTasks().map((t) => t.id),
        );
        this.log(`time passes ${(ms / L).toFixed(2)} lease (now +${(this.M / L).toFixed(2)})`);
        // Each worker stops what it runs 70 % of a lease after its last good heartbeat, and hands it back.
        for (const w of this.workers) {
          if (!w.alive || this.M - w.lastHeartbeatM < SELF_STOP_MS) continue;
          for (const h of w.holdings) {
            if (h.sandbox || !h.mustRelease) this.log(`  ${this.n(w.id)} stops ${this.h(h)} (no heartbeat for ${((this.M - w.lastHeartbeatM) / L).toFixed(2)} lease)`);
            h.sandbox = false;
            h.mustRelease = true;
          }
        }
      },
    };
  }

  async rescue(c: Conn) {
    await this.call("requeue_expired()", () => c`select cogo.requeue_expired() as n`);
  }

  async markLost(c: Conn) {
    const r = await this.call("mark_lost_workers()", () => c`select cogo.mark_lost_workers() as n`);
    if (r.ok) this.trace[this.trace.length - 1] += ` ${r.value[0]!.n}`;
  }

  planRequestRecovery(): Op | null {
    const t = this.rand.pick(this.liveTasks());
    if (!t) return null;
    return {
      label: "request_recovery",
      run: async (c) => {
        const r = await this.call(`request_recovery(${t.name}) as user`, () =>
          asUser(c, this.user, (tx) => tx<{ r: { applied: string } }[]>`select cogo.request_recovery(${t.id}, '{}'::jsonb) as r`),
        );
        if (r.ok) this.trace[this.trace.length - 1] += ` ${r.value[0]!.r.applied}`;
      },
    };
  }

  planRecoverWorker(): Op | null {
    const ids = [...this.workers.filter((w) => w.alive).map((w) => w.id), ...this.deadWorkerIds.slice(-4)];
    const id = this.rand.pick(ids);
    if (!id) return null;
    return {
      label: "recover_worker",
      run: async (c) => {
        const r = await this.call(`recover_worker(${this.n(id)})`, () => c<{ r: { silent: boolean; requeued: number } }[]>`select cogo.recover_worker(${id}) as r`);
        if (r.ok) this.trace[this.trace.length - 1] += ` silent=${r.value[0]!.r.silent} requeued=${r.value[0]!.r.requeued}`;
      },
    };
  }

  planDrain(): Op | null {
    const w = this.rand.pick(this.workers.filter((w) => w.alive && !w.draining));
    if (!w) return null;
    return {
      label: "drain_worker",
      run: async (c) => {
        const r = await this.call(`drain_worker(${this.n(w.id)})`, () => c`select status from cogo.drain_worker(${w.id})`);
        if (r.ok) w.draining = true;
      },
    };
  }

  /** A draining worker whose tasks are done hands back what it still holds and goes away; a new one takes its place. */
  planExit(): Op | null {
    const w = this.rand.pick(this.workers.filter((w) => w.alive && w.draining && w.holdings.every((h) => !h.busy)));
    if (!w) return null;
    return {
      label: "worker exits",
      exclusive: true,
      run: async (c) => {
        for (const h of [...w.holdings]) await this.release(h, c, false);
        await this.call(`set_worker_offline(${this.n(w.id)})`, () => c`select cogo.set_worker_offline(${w.id})`);
        w.alive = false;
        this.deadWorkerIds.push(w.id);
        await this.addWorker(c, w.slot);
      },
    };
  }

  /** kill -9: its sandboxes die with it, its leases run out; a new worker takes its place. */
  planCrash(): Op | null {
    const w = this.rand.pick(this.workers.filter((w) => w.alive && w.holdings.every((h) => !h.busy)));
    if (!w) return null;
    return {
      label: "worker crashes",
      exclusive: true,
      run: async (c) => {
        this.log(`${this.n(w.id)} crashes holding [${w.holdings.map(this.h).join(", ")}]`);
        w.alive = false;
        for (const h of w.holdings) h.sandbox = false;
        w.holdings = [];
        this.deadWorkerIds.push(w.id);
        await this.addWorker(c, w.slot);
      },
    };
  }

  /** A late call for an attempt known to be lost (a zombie worker, a retry after a lost reply). */
  planStaleCall(): Op | null {
    const h = this.rand.pick(this.staleArchive);
    if (!h) return null;
    const which = this.rand.int(8);
    return {
      label: "stale call",
      run: async (c, concurrent) => {
        const [t, a, w] = [h.task, h.attempt, h.worker.id];
        const calls: [string, () => Promise<unknown>][] = [
          ["start_task", () => c`select cogo.start_task(${t}, ${a}, ${w})`],
          ["append_output", () => c`select cogo.append_output(${t}, ${a}, ${w}, 1, array['stdout']::public.output_stream[], array['late']::text[], array[now()])`],
          ["append_event", () => c`select cogo.append_event(${t}, ${a}, ${w}, 'diagnostic', '{}'::jsonb)`],
          ["finish_task", () => c`select 1 from cogo.finish_task(${t}, ${a}, ${w}, 'succeeded', 0, null, 'late', '{}'::jsonb, null)`],
          ["release_task", () => c`select cogo.release_task(${t}, ${a}, ${w}, 'late')`],
          ["report_block", () => c`select 1 from cogo.report_block(${t}, ${a}, ${w}, '{}'::jsonb)`],
          ["begin_recovery", () => c`select cogo.begin_recovery(${t}, ${a}, ${w}, '{}'::jsonb)`],
          ["requeue_for_recovery", () => c`select 1 from cogo.requeue_for_recovery(${t}, ${a}, ${w}, '{"action": "retry"}'::jsonb, '{}'::jsonb)`],
        ];
        const [name, f] = calls[which]!;
        const r = await this.call(`stale ${name}(${this.h(h)})`, f);
        this.check("stale attempts fenced", !r.ok, () => `stale ${name} succeeded for ${this.h(h)}${concurrent ? " (concurrent step)" : ""}`);
      },
    };
  }

  pickOp(): Op | null {
    const total = this.planners.reduce((s, [w]) => s + w, 0);
    for (let tries = 0; tries < 20; tries++) {
      let x = this.rand.next() * total;
      for (const [w, plan] of this.planners) {
        x -= w;
        if (x < 0) {
          const op = plan();
          if (op) return op;
          break;
        }
      }
    }
    return null;
  }

  /** One step: one operation, or two at once on different connections. */
  async step() {
    this.steps++;
    // A worker's heartbeats stall (or come back) now and then.
    if (this.rand.chance(0.03)) {
      const w = this.rand.pick(this.workers.filter((w) => w.alive));
      if (w) {
        w.stalled = !w.stalled;
        this.log(`${this.n(w.id)} ${w.stalled ? "stalls" : "recovers from its stall"}`);
      }
    }
    const live = this.liveTasks().length;
    if (live < 4 || this.rand.chance(0.01)) {
      await this.enqueue(this.rand.pick(this.pool)!, Math.max(1, 8 - live));
    } else {
      const a = this.pickOp();
      // A second operation at the same time, on another connection (exclusive ones, like time passing, run alone).
      const b = a && !a.exclusive && this.rand.chance(this.concurrency) ? this.pickOp() : null;
      if (a && b && !b.exclusive) {
        this.pairs++;
        const i = this.rand.int(this.pool.length);
        const j = (i + 1 + this.rand.int(this.pool.length - 1)) % this.pool.length;
        this.log(`── together: ${a.label} ‖ ${b.label}`);
        await Promise.all([a.run(this.pool[i]!, true), b.run(this.pool[j]!, true)]);
      } else if (a) {
        await a.run(this.rand.pick(this.pool)!, false);
      }
    }
    await this.checkInvariants();
  }

  // ── invariants ───────────────────────────────────────────────────────────────────────────────
  checkMs = 0;
  async checkInvariants() {
    const t0 = performance.now();
    try {
      await this.checkInvariantsNow();
    } finally {
      this.checkMs += performance.now() - t0;
    }
  }

  async checkInvariantsNow() {
    // One round trip: the rows of the tasks still open, the events and output they have appended
    // since the last check, and the finished tasks whose row differs from when they finished.
    const open = [...this.tasks.values()].filter((t) => !t.retired);
    const retired = [...this.tasks.values()].filter((t) => t.retired);
    const [got] = await this.checker<{ rows: Row[]; events: EventRow[] | null; outputs: OutputRow[] | null; changed: { id: string; snap: string }[] | null }[]>`
      with snap as (
        -- What must never change once a task has finished.
        select id, concat_ws('|', status, attempt, coalesce(worker_id::text, '-'), event_seq, output_seq, cancel_requested_at is not null,
                             coalesce(exit_code, -1), coalesce(reason, '')) as snap
          from public.tasks where id = any(${[...this.tasks.keys()]}::uuid[])
      )
      select
        (select coalesce(json_agg(json_build_object(
                  'id', id, 'status', status, 'attempt', attempt, 'maxAttempts', max_attempts, 'workerId', worker_id,
                  'hasLease', lease_expires_at is not null, 'leaseLive', coalesce(lease_expires_at > now(), false),
                  'cancelReq', cancel_requested_at is not null, 'eventSeq', event_seq, 'outputSeq', output_seq,
                  'finished', finished_at is not null, 'snap', snap.snap)), '[]')
           from public.tasks join snap using (id) where id = any(${open.map((t) => t.id)}::uuid[])) as rows,
        (select json_agg(json_build_object(
                  'taskId', e.task_id, 'seq', e.seq, 'attempt', e.attempt, 'type', e.type, 'status', e.data->>'status',
                  'previous', e.data->>'previous', 'dataAttempt', (e.data->>'attempt')::int) order by e.task_id, e.seq)
           from unnest(${open.map((t) => t.id)}::uuid[], ${open.map((t) => t.lastEventSeq)}::int[]) as x(id, after)
           join public.task_events e on e.task_id = x.id and e.seq > x.after) as events,
        (select json_agg(json_build_object('taskId', o.task_id, 'seq', o.seq, 'attempt', o.attempt, 'stream', o.stream, 'data', o.data)
                         order by o.task_id, o.seq)
           from unnest(${open.map((t) => t.id)}::uuid[], ${open.map((t) => t.lastOutputSeq)}::int[]) as x(id, after)
           join public.task_output o on o.task_id = x.id and o.seq > x.after) as outputs,
        (select json_agg(json_build_object('id', x.id, 'snap', snap.snap))
           from unnest(${retired.map((t) => t.id)}::uuid[], ${retired.map((t) => t.finalSnapshot!)}::text[]) as x(id, snap)
           join snap on snap.id = x.id
          where snap.snap <> x.snap) as changed`;
    const { rows, events, outputs, changed } = got!;
    this.rows = new Map(rows.map((r) => [r.id, r]));
    // Terminal is terminal: nothing about a finished task changes afterwards.
    this.checks["terminal is terminal"] += retired.length;
    for (const c of changed ?? []) {
      const t = this.tasks.get(c.id)!;
      this.violation("terminal is terminal", `${t.name} was ${t.finalSnapshot} when it finished, now ${c.snap}`);
    }

    for (const r of rows) {
      const t = this.tasks.get(r.id)!;
      const what = () =>
        `${t.name} ${r.status} attempt ${r.attempt}/${r.maxAttempts} worker ${this.n(r.workerId)} lease ${r.hasLease ? (r.leaseLive ? "live" : "expired") : "none"}${r.cancelReq ? " cancel requested" : ""}`;
      this.check("attempts <= maxAttempts", r.attempt >= 0 && r.attempt <= r.maxAttempts, what);
      // One holder: an active task has exactly one worker and a lease; no other state has either.
      if (ACTIVE.has(r.status)) this.check("one holder", r.workerId !== null && r.hasLease, what);
      else if (r.status === "queued") this.check("one holder", r.workerId === null && !r.hasLease, what);
      else this.check("one holder", !r.hasLease && r.finished, what);
      // A cancel always wins: never queued (nor claimed again) once asked; every end but the holder's own finish is `cancelled`.
      if (r.cancelReq) {
        this.check("cancel wins", r.status !== "queued", () => `${what()}: queued with a cancel asked`);
        if (t.cancelAttempt === null && ACTIVE.has(r.status)) t.cancelAttempt = r.attempt;
        if (t.cancelAttempt !== null)
          this.check("cancel wins", r.attempt === t.cancelAttempt, () => `${what()}: claimed again after the cancel asked on attempt ${t.cancelAttempt}`);
        if (FINAL.has(r.status)) this.check("cancel wins", r.status === "cancelled" || t.finishedByHolder !== null, () => `${what()}: ended ${r.status}, not cancelled`);
      }
    }

    // A sandbox runs only for the attempt that holds the task's live lease, so never two at once.
    const sandboxes = new Map<string, Holding[]>();
    for (const w of this.workers) {
      for (const h of w.holdings) {
        if (!h.sandbox) continue;
        sandboxes.set(h.task, [...(sandboxes.get(h.task) ?? []), h]);
        this.check("one holder", this.holderNow(h), () => {
          const r = this.rows.get(h.task);
          return `${this.h(h)}'s sandbox still runs, but the task is ${r?.status} attempt ${r?.attempt} worker ${this.n(r?.workerId)} lease ${r?.leaseLive ? "live" : "not live"}`;
        });
      }
    }
    for (const [task, hs] of sandboxes) this.check("one holder", hs.length <= 1, () => `${this.n(task)} runs in ${hs.length} sandboxes: ${hs.map(this.h).join(", ")}`);
    // Staleness is monotonic (a lost attempt never gets its lease back): mark what the database no longer holds.
    for (const w of this.workers) for (const h of w.holdings) if (!h.busy && !this.holderNow(h)) h.stale = true;

    for (const e of events ?? []) {
      const t = this.tasks.get(e.taskId)!;
      const where = `${t.name} event #${e.seq} ${e.type}${e.status ? ` ${e.previous}→${e.status}` : ""} attempt ${e.attempt}`;
      this.check("gap-free seqs", e.seq === t.lastEventSeq + 1 && e.attempt >= t.lastEventAttempt, () => `${where} after #${t.lastEventSeq} attempt ${t.lastEventAttempt}`);
      this.check("attempts <= maxAttempts", e.attempt <= t.maxAttempts, () => `${where} of max ${t.maxAttempts}`);
      t.lastEventSeq = e.seq;
      t.lastEventAttempt = e.attempt;
      if (e.type !== "task_status" || !e.status) continue;
      this.check(
        "legal transitions",
        e.previous === t.lastStatus && (EDGES[t.lastStatus] ?? []).includes(e.status) && e.dataAttempt === e.attempt,
        () => `${where}, but the last status was ${t.lastStatus}`,
      );
      if (e.status === "claimed") {
        this.check("attempts <= maxAttempts", e.attempt === t.claims + 1 && e.attempt <= t.maxAttempts, () => `${where}: claim #${t.claims + 1} of max ${t.maxAttempts}`);
        t.claims++;
      }
      if (t.cancelAttempt !== null) {
        this.check(
          "cancel wins",
          !(e.attempt > t.cancelAttempt || (e.attempt === t.cancelAttempt && e.status === "queued")),
          () => `${where} after a cancel asked on attempt ${t.cancelAttempt}`,
        );
      }
      t.lastStatus = e.status;
    }
    for (const o of outputs ?? []) {
      const t = this.tasks.get(o.taskId)!;
      const where = `${t.name} output #${o.seq} (${o.stream}, attempt ${o.attempt}) ${JSON.stringify(o.data)}`;
      this.check("gap-free seqs", o.seq === t.lastOutputSeq + 1 && o.attempt >= t.lastOutputAttempt, () => `${where} after #${t.lastOutputSeq} attempt ${t.lastOutputAttempt}`);
      const lost = /^attempt (\d+) /.exec(o.data);
      this.check("attempts <= maxAttempts", o.attempt <= t.maxAttempts && (!lost || Number(lost[1]) <= t.maxAttempts), () => `${where} of max ${t.maxAttempts}`);
      t.lastOutputSeq = o.seq;
      t.lastOutputAttempt = o.attempt;
    }
    for (const t of open) {
      const r = this.rows.get(t.id)!;
      // Every seq the row has handed out is there (no gap at the tail either).
      this.check(
        "gap-free seqs",
        r.eventSeq === t.lastEventSeq && r.outputSeq === t.lastOutputSeq,
        () => `${t.name}: event_seq ${r.eventSeq} / read ${t.lastEventSeq}, output_seq ${r.outputSeq} / read ${t.lastOutputSeq}`,
      );
      this.check("legal transitions", r.status === t.lastStatus, () => `${t.name} is ${r.status} but its last task_status event says ${t.lastStatus}`);
      if (FINAL.has(r.status)) {
        t.finalSnapshot = r.snap;
        t.retired = true;
      }
    }
  }

  // ── the run ──────────────────────────────────────────────────────────────────────────────────
  async run(steps: number) {
    for (let slot = 0; slot < this.slots.length; slot++) await this.addWorker(this.pool[0]!, slot);
    await this.enqueue(this.pool[0]!, 8);
    await this.checkInvariants();
    while (this.steps < steps && this.violations.length === 0) await this.step();
    if (this.violations.length === 0) await this.windDown();
  }

  /** Every worker dies, leases run out, fresh workers run what is left: every task must end, and end right. */
  async windDown() {
    const c = this.pool[0]!;
    this.log("── wind-down");
    for (const w of this.workers) {
      w.alive = false;
      w.holdings = [];
      this.deadWorkerIds.push(w.id);
    }
    for (let round = 0; round < 12 && this.liveTasks().length > 0; round++) {
      await timePasses(
        c,
        4 * L,
        this.allWorkerIds,
        this.liveTasks().map((t) => t.id),
      );
      this.M += 4 * L;
      this.log("time passes 4 leases");
      await this.rescue(c);
      for (let slot = 0; slot < this.slots.length; slot++) await this.addWorker(c, slot);
      for (const w of this.workers) {
        const r = await this.call(`claim_tasks(${this.n(w.id)}, 100)`, () => c<{ id: string; attempt: number }[]>`select id, attempt from cogo.claim_tasks(${w.id}, 100)`);
        if (!r.ok) continue;
        for (const t of r.value) {
          if (!this.tasks.has(t.id)) continue;
          const f = await this.call(
            `finish_task(${this.n(t.id)}@${t.attempt})`,
            () => c`select 1 from cogo.finish_task(${t.id}, ${t.attempt}, ${w.id}, 'succeeded', 0, null, 'wind-down', '{}'::jsonb, null)`,
          );
          if (f.ok) this.tasks.get(t.id)!.finishedByHolder = "succeeded";
        }
      }
      for (const w of this.workers) w.alive = false;
      this.steps++;
      await this.checkInvariants();
    }
    for (const t of this.liveTasks()) this.violation("liveness", `${t.name} never ended: ${JSON.stringify(this.rows.get(t.id))}`);
    await this.finalCheck();
  }

  /** The whole history of every task, in SQL: attempts, seqs and cancels. */
  async finalCheck() {
    const ids = [...this.tasks.keys()];
    const rows = await this.checker<
      {
        id: string;
        status: string;
        attempt: number;
        maxAttempts: number;
        cancelReq: boolean;
        eventSeq: number;
        outputSeq: number;
        evN: number;
        evMax: number;
        evAttempt: number;
        outN: number;
        outMax: number;
        outAttempt: number;
        statusAttempt: number;
        queuedAtCancel: number;
      }[]
    >`
      select t.id, t.status, t.attempt, t.max_attempts, t.cancel_requested_at is not null as cancel_req, t.event_seq::int, t.output_seq::int,
             e.n as ev_n, e.mx as ev_max, e.att as ev_attempt, o.n as out_n, o.mx as out_max, o.att as out_attempt,
             e.status_att as status_attempt, e.queued_at as queued_at_cancel
        from public.tasks t
        cross join lateral (select count(*)::int as n, coalesce(max(seq), 0)::int as mx, coalesce(max(attempt), 0) as att,
                                   coalesce(max((data->>'attempt')::int) filter (where type = 'task_status'), 0) as status_att,
                                   count(*) filter (where type = 'task_status' and data->>'status' = 'queued' and t.cancel_requested_at is not null
                                                      and attempt = t.attempt)::int as queued_at
                              from public.task_events where task_id = t.id) e
        cross join lateral (select count(*)::int as n, coalesce(max(seq), 0)::int as mx, coalesce(max(attempt), 0) as att
                              from public.task_output where task_id = t.id) o
       where t.id = any(${ids}::uuid[])`;
    for (const r of rows) {
      const t = this.tasks.get(r.id)!;
      const what = () => `${t.name}: ${JSON.stringify(r)}`;
      this.check("attempts <= maxAttempts", Math.max(r.attempt, r.evAttempt, r.outAttempt, r.statusAttempt) <= r.maxAttempts, what);
      this.check("gap-free seqs", r.evN === r.eventSeq && r.evMax === r.eventSeq && r.outN === r.outputSeq && r.outMax === r.outputSeq, what);
      this.check("terminal is terminal", FINAL.has(r.status), what);
      if (r.cancelReq) this.check("cancel wins", r.queuedAtCancel === 0 && (r.status === "cancelled" || t.finishedByHolder !== null), what);
    }
  }

  summary() {
    const byStatus = new Map<string, number>();
    for (const t of this.tasks.values()) {
      const status = t.finalSnapshot?.split("|")[0] ?? this.rows.get(t.id)?.status ?? "?";
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    }
    return (
      `state machine: seed ${this.seed}, ${this.steps} steps (${this.pairs} of them two operations at once), ${this.sqlCalls} SQL calls, ` +
      `${this.tasks.size} tasks (${[...byStatus].map(([s, n]) => `${n} ${s}`).join(", ")}), ${this.allWorkerIds.length} workers; ` +
      `refused calls: ${[...this.outcomes].map(([c, n]) => `${c} ×${n}`).join(", ") || "none"}; ` +
      `checking took ${(this.checkMs / 1000).toFixed(1)} s; checks: ${INVARIANTS.map((i) => `${i} ${this.checks[i]}`).join(", ")}; violations: ${this.violations.length}`
    );
  }
}

describe("task lifecycle as a randomized state machine", () => {
  it("keeps every invariant over thousands of interleaved steps from several connections", async () => {
    const seed = process.env.STATE_SEED ? Number(process.env.STATE_SEED) : Math.floor(Math.random() * 2 ** 31);
    const steps = Number(process.env.STATE_STEPS ?? 2000);
    const concurrency = process.env.STATE_CONCURRENCY ? Number(process.env.STATE_CONCURRENCY) : 0.3;
    console.log(`state machine: seed ${seed} (replay with STATE_SEED=${seed}), ${steps} steps`);
    const m = new StateMachine(seed, concurrency, process.env.STATE_SILENT_CLAIMS === "1");
    const started = Date.now();
    await m.run(steps);
    console.log(`${m.summary()}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`calls (count, mean time): ${[...m.opMs].map(([k, [n, ms]]) => `${k} ${n}× ${(ms / n).toFixed(1)} ms`).join("; ")}`);
    for (const v of m.violations.slice(0, 3)) {
      console.log(`VIOLATION of "${v.invariant}" at step ${v.step} (seed ${seed}): ${v.detail}\n  trace:\n    ${v.trace.join("\n    ")}`);
    }
    expect(
      m.violations.map((v) => `${v.invariant} @${v.step}: ${v.detail}`),
      `seed ${seed}`,
    ).toEqual([]);
    expect(m.steps).toBeGreaterThanOrEqual(steps);
  }, 240_000);
});

// ── fixed sequences: the historical bugs of issue 17, and what the random run found ─────────────
describe("lifecycle regressions", () => {
  const LEASE = 15_000; // the production lease
  const user = newUserId();
  const [c, ...rescuers] = Array.from({ length: 5 }, newConn);
  const enqueue = async (kind: string, maxAttempts: number) =>
    (await asUser(c!, user, (tx) => tx<{ id: string }[]>`select id from cogo.enqueue_task(${tx.json({ command: "echo bystander", requirements: { kind }, maxAttempts })})`))[0]!.id;
  const register = (kind: string, name: string) =>
    c!<{ id: string }[]>`select id from cogo.register_worker(${name}, ${kind}, '{}'::text[], 4, ${LEASE}, 'state-machine', '{}'::jsonb)`.then((r) => r[0]!.id);
  const claim = (worker: string) => c!<{ id: string; attempt: number }[]>`select id, attempt from cogo.claim_tasks(${worker}, 10)`;
  const task = async (id: string) =>
    (
      await c!<{ status: string; attempt: number; reason: string | null; workerId: string | null }[]>`select status, attempt, reason, worker_id from public.tasks where id = ${id}`
    )[0]!;
  const code = (p: Promise<unknown>) =>
    p.then(
      () => "ok",
      (e: { code?: string }) => e.code ?? String(e),
    );
  /** What the task's history says about attempts: task_status events as status#attempt, the highest attempt anywhere. */
  const history = async (id: string) => {
    const events = await c!<{ status: string; attempt: number }[]>`
      select data->>'status' as status, attempt from public.task_events where task_id = ${id} and type = 'task_status' order by seq`;
    const [max] = await c!<{ n: number }[]>`
      select greatest((select max(attempt) from public.task_events where task_id = ${id}),
                      (select max(attempt) from public.task_output where task_id = ${id}),
                      (select max((data->>'attempt')::int) from public.task_events where task_id = ${id})) as n`;
    const system = await c!<{ data: string }[]>`select data from public.task_output where task_id = ${id} and stream = 'system' order by seq`;
    return { statuses: events.map((e) => `${e.status}#${e.attempt}`), maxAttempt: max!.n, system: system.map((s) => s.data.trim()) };
  };

  it("a bystander on a stalled worker, lost again and again, ends failed on attempt 3 of 3, never 6 of 3", async () => {
    const kind = uniqueKind("smr");
    const stalled = await register(kind, "stalled");
    const other = await register(kind, "other");
    const t = await enqueue(kind, 3);
    // Each round: claimed and started; the worker stalls past its lease; every worker's rescuer
    // runs at once, while the stalled worker wakes up, heartbeats and hands the task back late.
    for (const [attempt, worker] of [
      [1, stalled],
      [2, other],
      [3, stalled],
    ] as const) {
      expect(await claim(worker)).toEqual([{ id: t, attempt }]);
      await c!`select cogo.start_task(${t}, ${attempt}, ${worker})`;
      await timePasses(c!, 1.1 * LEASE, [stalled, other], [t]);
      const [late, ...rest] = await Promise.all([
        code(rescuers[0]!`select cogo.release_task(${t}, ${attempt}, ${worker}, 'no heartbeat for 70 % of the lease; re-queued')`),
        ...rescuers.slice(1).map((r) => code(r`select cogo.requeue_expired()`)),
        code(c!`select cogo.heartbeat(${worker})`),
      ]);
      expect(late).toBe("CG409");
      expect(rest).toEqual(["ok", "ok", "ok", "ok"]);
      // The rescuers skip a row locked at that moment (SKIP LOCKED: the late release's fence holds
      // it until it fails); their next pass, a second later in a worker, takes it.
      await c!`select cogo.requeue_expired()`;
      expect(await task(t)).toMatchObject({ status: attempt < 3 ? "queued" : "failed", attempt });
    }
    // More rescuer passes and claims change nothing: no fourth attempt, let alone a sixth.
    for (let i = 0; i < 3; i++) {
      await Promise.all(rescuers.map((r) => r`select cogo.requeue_expired()`));
      expect([...(await claim(stalled)), ...(await claim(other))]).toEqual([]);
    }
    const end = await task(t);
    expect(end).toMatchObject({ status: "failed", attempt: 3 });
    expect(end.reason).toMatch(/^attempt 3 lost: worker \S+ stopped heartbeating; no attempts left \(max 3\)$/);
    const h = await history(t);
    expect(h.maxAttempt).toBe(3);
    expect(h.statuses).toEqual(["claimed#1", "running#1", "queued#1", "claimed#2", "running#2", "queued#2", "claimed#3", "running#3", "failed#3"]);
    expect(h.system).toEqual([
      expect.stringMatching(/^attempt 1 lost: .*; re-queued$/),
      expect.stringMatching(/^attempt 2 lost: .*; re-queued$/),
      expect.stringMatching(/^attempt 3 lost: .*; no attempts left \(max 3\)$/),
    ]);
  });

  it("a worker that stops its task at 70 % of the lease hands it back; on the last attempt the task fails, never re-queued", async () => {
    const kind = uniqueKind("smr");
    const w = await register(kind, "self-stopper");
    const t = await enqueue(kind, 2);
    for (const attempt of [1, 2]) {
      expect(await claim(w)).toEqual([{ id: t, attempt }]);
      await c!`select cogo.start_task(${t}, ${attempt}, ${w})`;
      await timePasses(c!, 0.72 * LEASE, [w], [t]);
      // The rescuers run beside the hand-back: the lease has not run out, so they leave it alone.
      const [released, ...rest] = await Promise.all([
        code(rescuers[0]!`select cogo.release_task(${t}, ${attempt}, ${w}, 'no heartbeat for 70 % of the lease; re-queued')`),
        ...rescuers.slice(1).map((r) => code(r`select cogo.requeue_expired()`)),
      ]);
      expect([released, ...rest]).toEqual(["ok", "ok", "ok", "ok"]);
    }
    const end = await task(t);
    expect(end).toMatchObject({ status: "failed", attempt: 2, reason: "attempt 2 of 2 handed back (no heartbeat for 70 % of the lease); no attempts left" });
    expect(await claim(w)).toEqual([]);
    expect(await code(c!`select cogo.release_task(${t}, 2, ${w}, 'again')`)).toBe("CG409");
    expect(await history(t)).toMatchObject({ maxAttempt: 2, statuses: ["claimed#1", "running#1", "queued#1", "claimed#2", "running#2", "failed#2"] });

    // A hand-back with a cancel pending ends the task cancelled, whatever attempts are left.
    const u = await enqueue(kind, 3);
    expect(await claim(w)).toEqual([{ id: u, attempt: 1 }]);
    await asUser(c!, user, (tx) => tx`select cogo.cancel_task(${u})`);
    await c!`select cogo.release_task(${u}, 1, ${w}, 'shutting down; re-queued')`;
    expect(await task(u)).toMatchObject({ status: "cancelled", attempt: 1, reason: "cancelled while its worker handed it back (shutting down)" });
    expect(await claim(w)).toEqual([]);
  });

  it("a task row's claimedAt and startedAt are always one attempt's", async () => {
    const kind = uniqueKind("smr");
    const w = await register(kind, "re-claimer");
    const t = await enqueue(kind, 2);
    const times = async () =>
      (await c!<{ claimed: Date | null; started: Date | null }[]>`select claimed_at as claimed, started_at as started from public.tasks where id = ${t}`)[0]!;
    expect(await claim(w)).toEqual([{ id: t, attempt: 1 }]);
    await c!`select cogo.start_task(${t}, 1, ${w})`;
    // Moving timestamps (as time passing does here) is no new attempt: startedAt stays.
    await timePasses(c!, 5000, [w], [t]);
    const first = await times();
    expect(first.started).not.toBeNull();
    await c!`select cogo.release_task(${t}, 1, ${w}, 'handed back')`;
    expect(await claim(w)).toEqual([{ id: t, attempt: 2 }]);
    const claimed = await times();
    expect(claimed.claimed!.getTime()).toBeGreaterThan(first.claimed!.getTime());
    // Claimed, not yet started: no start of attempt 1 beside attempt 2's claim.
    expect(claimed.started).toBeNull();
    await c!`select cogo.start_task(${t}, 2, ${w})`;
    const running = await times();
    expect(running.claimed).toEqual(claimed.claimed);
    expect(running.started!.getTime()).toBeGreaterThanOrEqual(running.claimed!.getTime());
    expect(running.started!.getTime()).toBeGreaterThan(first.started!.getTime() + 4000);
  });

  it("every other way back to the queue is bounded by maxAttempts too: requeue_for_recovery, request_recovery, recover_worker", async () => {
    const kind = uniqueKind("smr");
    const w = await register(kind, "last-attempt");
    // A recovery on the last attempt is refused (CG422); the worker then gives up.
    const a = await enqueue(kind, 1);
    expect(await claim(w)).toEqual([{ id: a, attempt: 1 }]);
    await c!`select cogo.start_task(${a}, 1, ${w})`;
    await c!`select 1 from cogo.report_block(${a}, 1, ${w}, ${c!.json(BLOCK)})`;
    await c!`select cogo.begin_recovery(${a}, 1, ${w}, ${c!.json(started("reassign", 1))})`;
    expect(await code(c!`select 1 from cogo.requeue_for_recovery(${a}, 1, ${w}, '{"action": "reassign", "exclude": true}'::jsonb, '{}'::jsonb)`)).toBe("CG422");
    await c!`select 1 from cogo.finish_task(${a}, 1, ${w}, 'failed', null, null, 'gave up', '{}'::jsonb, null)`;
    expect(await task(a)).toMatchObject({ status: "failed", attempt: 1 });
    // The API's recoveries of a silent worker's last attempts fail them instead of re-queueing.
    const b = await enqueue(kind, 1);
    const d = await enqueue(kind, 1);
    expect((await claim(w)).map((r) => r.attempt)).toEqual([1, 1]);
    await timePasses(c!, 0.9 * LEASE, [w], [b, d]);
    const r = await asUser(c!, user, (tx) => tx<{ r: { applied: string } }[]>`select cogo.request_recovery(${b}, '{}'::jsonb) as r`);
    expect(r[0]!.r.applied).toBe("reassign");
    await c!`select cogo.recover_worker(${w})`;
    for (const id of [b, d]) {
      expect(await task(id)).toMatchObject({ status: "failed", attempt: 1, reason: expect.stringMatching(/no attempts left \(max 1\)$/) });
      expect((await history(id)).maxAttempt).toBe(1);
    }
  });

  // Found by this file's random run (STATE_SILENT_CLAIMS=1): cogo.claim_tasks hands tasks to a worker
  // whose heartbeats stopped, and cogo.request_recovery / cogo.recover_worker judge only the
  // worker's silence, not when the task's lease was granted: a task claimed and started a moment
  // ago is re-queued while its sandbox runs (worker/worker.ts claims while its heartbeats fail and
  // stops such a task only at its next lease-safety tick, up to lease/20 later), and another worker
  // runs it at the same time.
  it("a task claimed a moment ago by a worker with stale heartbeats is not taken from it by an API recovery", async () => {
    const kind = uniqueKind("smr");
    const other = await register(kind, "other");
    const outcome: Record<string, unknown> = {};
    for (const recovery of ["request_recovery", "recover_worker"] as const) {
      const silent = await register(kind, "silent");
      // The silent worker's heartbeat thread hangs (a blackholed connection); its main loop still claims.
      await timePasses(c!, 13_000, [silent], []); // > cogo.worker_silence(15000) = 12.25 s
      const t = await enqueue(kind, 3);
      expect(await claim(silent)).toEqual([{ id: t, attempt: 1 }]);
      await c!`select cogo.start_task(${t}, 1, ${silent})`; // its sandbox starts now
      if (recovery === "request_recovery") await asUser(c!, user, (tx) => tx`select cogo.request_recovery(${t}, '{}'::jsonb)`);
      else await c!`select cogo.recover_worker(${silent})`;
      const taken = await claim(other);
      const row = await task(t);
      outcome[recovery] = { status: row.status, attempt: row.attempt, heldBySilent: row.workerId === silent, claimedByAnother: taken.length > 0 };
      await c!`select cogo.heartbeat(${silent})`; // clean up: the leases of both attempts end with the test
    }
    const kept = { status: "running", attempt: 1, heldBySilent: true, claimedByAnother: false };
    expect(outcome).toEqual({ request_recovery: kept, recover_worker: kept });
  });
});
