// Runs database work for many clients on a few slots, least-served client first: a socket with a
// thousand joins waiting gets a slot only when no client that has had fewer is waiting, so a
// client's occasional join takes the next free slot instead of a place behind the flood. Each
// client also has at most `perOwner` running, so no one client holds every slot.
import { RealtimeError } from "./errors.ts";

/** A connection (or a REST client's address); its tasks are counted and served together. */
export type QueueOwner = object | string;

/** The task's owner was cancelled (its socket closed) before the task could start. */
export class QueueCancelledError extends RealtimeError {
  constructor() {
    super("connection_closed", "the connection closed before its authorization could run");
  }
}

interface Job {
  task: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

interface OwnerState {
  waiting: Job[];
  running: number;
  /** Tasks started since the owner last had nothing waiting or running. */
  served: number;
}

export class FairQueue {
  /** Owners with work; Map order breaks ties between equally served owners: one just served moves to the back. */
  private readonly owners = new Map<QueueOwner, OwnerState>();
  private readonly cancelled = new WeakSet<object>();
  private running = 0;

  constructor(
    private readonly concurrency: number,
    private readonly perOwner: number,
  ) {}

  /** Tasks waiting for a slot, all owners together. */
  get waiting(): number {
    let n = 0;
    for (const state of this.owners.values()) n += state.waiting.length;
    return n;
  }

  run<T>(owner: QueueOwner, task: () => Promise<T>): Promise<T> {
    if (typeof owner === "object" && this.cancelled.has(owner)) return Promise.reject(new QueueCancelledError());
    return new Promise<T>((resolve, reject) => {
      let state = this.owners.get(owner);
      if (!state) this.owners.set(owner, (state = { waiting: [], running: 0, served: 0 }));
      state.waiting.push({ task, resolve: resolve as (value: unknown) => void, reject });
      this.pump();
    });
  }

  /** Rejects the owner's waiting tasks and any it queues later; running ones finish. */
  cancel(owner: object): void {
    this.cancelled.add(owner);
    const state = this.owners.get(owner);
    if (!state) return;
    for (const job of state.waiting.splice(0)) job.reject(new QueueCancelledError());
    if (state.running === 0) this.owners.delete(owner);
  }

  private pump(): void {
    while (this.running < this.concurrency) {
      const picked = this.next();
      if (!picked) return;
      const [owner, state] = picked;
      const job = state.waiting.shift()!;
      state.running++;
      state.served++;
      this.running++;
      let result: Promise<unknown>;
      try {
        result = job.task();
      } catch (err) {
        result = Promise.reject(err);
      }
      void result.then(job.resolve, job.reject).finally(() => {
        state.running--;
        this.running--;
        if (state.running === 0 && state.waiting.length === 0 && this.owners.get(owner) === state) this.owners.delete(owner);
        this.pump();
      });
    }
  }

  /** Of the owners with a task waiting and a slot of their own left: the least served, longest unserved. */
  private next(): [QueueOwner, OwnerState] | undefined {
    let best: [QueueOwner, OwnerState] | undefined;
    for (const entry of this.owners) {
      const state = entry[1];
      if (state.waiting.length === 0 || state.running >= this.perOwner) continue;
      if (!best || state.served < best[1].served) best = entry;
      if (state.served === 0) break;
    }
    if (best) {
      this.owners.delete(best[0]);
      this.owners.set(best[0], best[1]);
    }
    return best;
  }
}
