// The CLI's flag checks and stdin forwarding, apart from cli.ts so they are tested on their own.
// No zod, no supabase-js here: `cogo --help` and a usage error load neither.
import { MAX_WALL_TIME_MS } from "../functions/_shared/limits.ts";
import { USER_PRIORITY } from "../functions/_shared/plans/limits.ts";
import { ConflictError } from "./errors.ts";

/** What the CLI checks before sending: the API's own bounds (schemas.ts), which it checks again. */
export const FLAG_RANGES = {
  timeout: { min: 100, max: MAX_WALL_TIME_MS, unit: "milliseconds" },
  priority: { min: USER_PRIORITY.min, max: USER_PRIORITY.max },
  debounce: { min: 0, unit: "milliseconds" },
  sandboxClock: { min: 1000, max: MAX_WALL_TIME_MS, unit: "milliseconds" },
} as const;

/**
 * A whole number flag within [min, max], or a message that says what was expected: the API's zod
 * messages name the field (`timeoutMs`) and `null` (what JSON makes of NaN), not the flag typed.
 */
export function parseIntFlag(flag: string, raw: string | undefined, range: { min: number; max?: number; unit?: string }): number | undefined {
  if (raw === undefined) return undefined;
  const n = raw.trim() === "" ? Number.NaN : Number(raw);
  if (Number.isInteger(n) && n >= range.min && (range.max === undefined || n <= range.max)) return n;
  const what = range.unit ? `a number of ${range.unit}` : "a whole number";
  const bounds = range.max === undefined ? `${range.min} or more` : `${range.min}…${range.max}`;
  throw new FlagError(`${flag}: expected ${what} (${bounds}), got ${JSON.stringify(raw)}`);
}

/** A flag the user mistyped: the CLI prints the message alone and exits 2. */
export class FlagError extends Error {}

/**
 * True for the API's answer to stdin sent to a task that has already ended (409, raised by
 * cogo.write_stdin): the task needed no more input, so for the CLI there is nothing to report.
 */
export function isTaskFinished(err: unknown): boolean {
  return err instanceof ConflictError && /\bhas already finished\b/.test(err.message);
}

/**
 * Sends what `input` gives to the task, in order, then EOF. A task may end before its input does
 * (`echo x | cogo run --stdin -- true`): from the first "already finished" on, nothing more is
 * sent and the promise resolves. Any other error rejects it.
 */
export function forwardStdin(handle: { write(data: string): Promise<void>; closeStdin(): Promise<void> }, input: NodeJS.ReadableStream): Promise<void> {
  let finished = false;
  let chain = Promise.resolve();
  return new Promise((resolve, reject) => {
    const send = (op: () => Promise<void>) =>
      (chain = chain.then(async () => {
        if (finished) return;
        try {
          await op();
        } catch (err) {
          if (!isTaskFinished(err)) throw err;
          finished = true;
          resolve();
        }
      }));
    input.on("data", (d: Buffer | string) => void send(() => handle.write(d.toString())).catch(reject));
    input.on("end", () => void send(() => handle.closeStdin()).then(resolve, reject));
    input.on("error", reject);
  });
}

/**
 * A task's page in the dashboard (a hash route, dashboard/src/main.ts): COGO_DASHBOARD_URL where
 * the dashboard is hosted on its own, else the API's /dashboard/, where the embedded stack serves it.
 */
export function dashboardTaskUrl(apiUrl: string, taskId: string, dashboardUrl?: string): string {
  const base = (dashboardUrl || `${apiUrl.replace(/\/+$/, "")}/dashboard`).replace(/\/*$/, "/");
  return `${base}#/tasks/${taskId}`;
}
