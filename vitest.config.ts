import { defineConfig } from "vitest/config";

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
  },
});
