import { defineConfig } from "vitest/config";
import { isPostgresClosedSocketWrite } from "./functions/_shared/postgres-closed-socket.ts";

export default defineConfig({
  test: {
    // One embedded stack (Postgres + Deno functions + Realtime) serves every test file; files run
    // one after another so their workers and timing assertions do not compete for 2 cores.
    globalSetup: ["tests/helpers/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    include: ["tests/**/*.test.ts"],
    reporters: ["default"],
    // postgres.js's closed-socket write when a fault test restarts Postgres (see that module).
    onUnhandledError: (err) => (isPostgresClosedSocketWrite(err) ? false : undefined),
  },
});
