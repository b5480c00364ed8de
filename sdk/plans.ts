// Plans and workspace files from the client: submit a plan, follow its topic, change its files.
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js";
import { parsePlanEventMessage, type PlanEventMessage, type RawPlanEventMessage } from "../functions/_shared/events.ts";
import type { PlanRequest, WriteFilesRequest } from "../functions/_shared/plans/spec.ts";
import type { PlanView } from "../functions/_shared/plans/view.ts";
import type { ChangeResult } from "../functions/_shared/plans/view.ts";
import { call } from "./api.ts";
import { SandboxError } from "./errors.ts";

export type { PlanEventMessage };

export interface WorkspaceFile {
  workspaceId: string;
  path: string;
  size: number;
  executable: boolean;
  version: number;
  encoding: "utf8" | "base64";
  content: string;
}

export class PlanWaitTimeout extends SandboxError {}

const enc = (path: string) => path.split("/").map(encodeURIComponent).join("/");

export function planCalls(supabase: SupabaseClient) {
  return {
    /**
     * Submits a plan and follows its topic; `onEvent` gets every plan event once, in order, typed
     * (plan_status, step_status, progress_update, diagnostic, test_results; narrow on `type`).
     */
    async createPlan(plan: PlanRequest, onEvent?: (e: PlanEventMessage) => void): Promise<PlanHandle> {
      const created = await call<PlanView & { planId: string }>(supabase, "POST", "/plans", plan);
      return await new PlanHandle(supabase, created.planId, onEvent).start();
    },
    /** Follows an existing plan: replays its events, then streams them live. */
    attachPlan: (planId: string, onEvent?: (e: PlanEventMessage) => void) => new PlanHandle(supabase, planId, onEvent).start(),
    getPlan: (planId: string) => call<PlanView>(supabase, "GET", `/plans/${planId}`),
    /** The caller's plans, newest first. @default limit 100 */
    listPlans: async (limit = 100) =>
      (
        await call<{
          plans: {
            id: string;
            name: string | null;
            status: PlanView["status"];
            reason: string | null;
            workspaceId: string;
            steps: number;
            createdAt: string;
            finishedAt: string | null;
          }[];
        }>(supabase, "GET", `/plans?limit=${limit}`)
      ).plans,
    /** Cancels running and pending steps. */
    cancelPlan: (planId: string) => call<PlanView>(supabase, "DELETE", `/plans/${planId}`),
    /** Writes and deletes workspace files in one change; the steps it affects re-run at high priority. */
    writeFiles: (change: WriteFilesRequest) => call<ChangeResult>(supabase, "POST", "/files", change),
    readFile: (workspaceId: string, path: string) => call<WorkspaceFile>(supabase, "GET", `/files/${enc(path)}?workspace=${workspaceId}`),
    deleteFile: (workspaceId: string, path: string) => call<ChangeResult>(supabase, "DELETE", `/files/${enc(path)}?workspace=${workspaceId}`),
    listFiles: (workspaceId: string) =>
      call<{ workspaceId: string; revision: number; files: { path: string; size: number; executable: boolean; version: number }[] }>(
        supabase,
        "GET",
        `/files?workspace=${workspaceId}`,
      ),
  };
}
export type PlanCalls = ReturnType<typeof planCalls>;

/** A plan seen from the client: its events in order (Realtime, gaps filled over HTTP) and waits. */
export class PlanHandle {
  readonly topic: string;
  readonly events: PlanEventMessage[] = [];
  private nextSeq = 1;
  private channel: RealtimeChannel | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private syncing = false;
  private syncAgain = false;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly supabase: SupabaseClient,
    readonly planId: string,
    private readonly onEvent?: (e: PlanEventMessage) => void,
    private readonly pollIntervalMs = 3000,
  ) {
    this.topic = `plan:${planId}`;
  }

  async start(): Promise<this> {
    await this.supabase.realtime.setAuth();
    this.channel = this.supabase
      .channel(this.topic, { config: { private: true } })
      .on("broadcast", { event: "*" }, ({ payload }) => this.accept(payload as RawPlanEventMessage))
      .subscribe(() => this.sync());
    this.timer = setInterval(() => this.sync(), this.pollIntervalMs);
    this.sync();
    return this;
  }

  get(): Promise<PlanView> {
    return call<PlanView>(this.supabase, "GET", `/plans/${this.planId}`);
  }

  cancel(): Promise<PlanView> {
    return call<PlanView>(this.supabase, "DELETE", `/plans/${this.planId}`);
  }

  /**
   * Resolves with the plan once `until` holds (checked on every event and every poll).
   * @default until the plan is no longer running; timeoutMs 600000
   */
  async wait(until: (p: PlanView) => boolean = (p) => p.status !== "running", timeoutMs = 600_000): Promise<PlanView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const plan = await this.get();
      if (until(plan)) return plan;
      const left = deadline - Date.now();
      if (left <= 0) throw new PlanWaitTimeout("plan_wait_timeout", `plan ${this.planId} still ${plan.status} after ${timeoutMs} ms: ${plan.summary.text}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.listeners.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, this.pollIntervalMs));
        this.listeners.add(wake);
      });
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    if (this.channel) await this.supabase.removeChannel(this.channel);
    this.channel = undefined;
  }

  private accept(raw: RawPlanEventMessage): void {
    if (typeof raw?.seq !== "number" || raw.seq < this.nextSeq) return;
    if (raw.seq > this.nextSeq) return this.sync(); // a gap: fetch it in order
    this.nextSeq++;
    const e = parsePlanEventMessage(raw);
    this.events.push(e);
    this.onEvent?.(e);
    for (const wake of [...this.listeners]) wake();
  }

  private sync(): void {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    void (async () => {
      do {
        this.syncAgain = false;
        const page = await call<{ events: RawPlanEventMessage[] }>(this.supabase, "GET", `/plans/${this.planId}/events?after=${this.nextSeq - 1}`);
        for (const e of page.events) this.accept(e);
      } while (this.syncAgain);
    })()
      .catch(() => {}) // transient: the next message or poll tries again
      .finally(() => (this.syncing = false));
  }
}
