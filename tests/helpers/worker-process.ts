// A worker in its own process group (so a test can SIGKILL or SIGTERM it and everything it
// started), logging to a string. Side-effect free: the fault tests use it on private stacks.
import { spawn } from "node:child_process";
import path from "node:path";
import { PROJECT_ROOT } from "../../embedded/stack.ts";

export const WORKSPACES = "/var/tmp/cogo-test-workspaces";

export function spawnWorker(dbUrl: string, kind: string, args: string[] = []) {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, "worker/main.ts"), "--kind", kind, ...args], {
    env: { ...process.env, SUPABASE_DB_URL: dbUrl, COGO_WORKSPACE_ROOT: WORKSPACES },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  /** Signals the worker's whole process group; a no-op once it is gone. */
  const kill = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      /* already gone */
    }
  };
  return { child, exited, log: () => log, kill };
}
