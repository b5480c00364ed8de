// Starts one real embedded stack for the whole run and hands its endpoints to the tests.
import { execFileSync } from "node:child_process";
import type { TestProject } from "vitest/node";
import type {} from "vitest";
import { freePort } from "../../embedded/ports.ts";
import { startStack, type Stack } from "../../embedded/stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    stack: {
      apiUrl: string;
      /** Superuser (supabase_admin). */
      dbUrl: string;
      /** The non-superuser `postgres` that migrations ran as. */
      postgresUrl: string;
      dataDir: string;
      anonKey: string;
      serviceRoleKey: string;
      jwtSecret: string;
      /** The sandbox function's own port, behind the gateway (attacks that skip the gateway). */
      functionPort: number;
    };
  }
}

let stack: Stack | undefined;

export async function setup(project: TestProject) {
  try {
    execFileSync("bwrap", ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error("bubblewrap is missing: the tests run tasks in real sandboxes. Install it: apt-get install -y bubblewrap");
  }
  const dataDir = `/var/tmp/cogo-test-${process.pid}`;
  stack = await startStack({ dataDir, reset: true, dbPort: await freePort(), apiPort: 0, watch: false });
  project.provide("stack", {
    apiUrl: stack.apiUrl,
    dbUrl: stack.dbUrl,
    postgresUrl: stack.postgresUrl,
    dataDir,
    anonKey: stack.keys.anonKey,
    serviceRoleKey: stack.keys.serviceRoleKey,
    jwtSecret: stack.keys.jwtSecret,
    functionPort: stack.functionPort("sandbox")!,
  });
}

export async function teardown() {
  await stack?.stop();
  if (stack) execFileSync("rm", ["-rf", stack.dataDir]);
}
