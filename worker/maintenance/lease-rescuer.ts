// Lease rescuer: re-queues (or ends) tasks whose worker stopped heartbeating, asks sandboxes past
// their deadline to stop (the backstop of their holders' timers) and marks silent workers offline. Every worker runs one; the SQL skips rows another rescuer holds, so running
// several at once is safe, and a run never overlaps the previous one of the same worker.
import type { Queue } from "../queue.ts";

export class LeaseRescuer {
  private timer: ReturnType<typeof setInterval> | undefined;
  private running = false;

  constructor(
    private readonly queue: Queue,
    private readonly intervalMs: number,
    private readonly log: (line: string) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.runOnce(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async runOnce(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const requeued = await this.queue.requeueExpired();
      if (requeued) this.log(`lease rescuer: ${requeued} task(s) of silent workers re-queued or ended`);
      const expired = await this.queue.expireSandboxes();
      if (expired) this.log(`lease rescuer: ${expired} sandbox(es) past their idle or lifetime deadline asked to stop`);
      const lost = await this.queue.markLostWorkers();
      if (lost) this.log(`lease rescuer: ${lost} silent worker(s) marked offline`);
    } catch (err) {
      this.log(`lease rescuer: ${err instanceof Error ? err.message : err}`);
    } finally {
      this.running = false;
    }
  }
}
