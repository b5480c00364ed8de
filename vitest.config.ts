import { configDefaults, defineConfig } from "vitest/config";
import { isPostgresDriverFault } from "./functions/_shared/postgres-closed-socket.ts";

// Test files that need no stack and start no processes (no Postgres, functions, workers or
// sandboxes): pure logic on fixtures, synthetic inputs and temporary directories. They run in
// parallel, in seconds (`npm run test:unit`). A new test file lands in `integration` unless listed
// here; a file that mixes pure and stack tests stays there.
const UNIT = [
  "tests/analysis/addresses.test.ts",
  "tests/analysis/logic.test.ts",
  "tests/analysis/start-roots.test.ts",
  "tests/blocks/classifier.test.ts",
  "tests/blocks/planner.test.ts",
  "tests/blocks/windows.test.ts",
  "tests/lifecycle/attempt.test.ts",
  "tests/lifecycle/quotas-logic.test.ts",
  "tests/diagnostics/event-union.test.ts",
  "tests/diagnostics/line-events.test.ts",
  "tests/diagnostics/parsers.test.ts",
  "tests/plans/workspace-walk.test.ts",
  "tests/sandbox/budget.test.ts",
  "tests/sandbox/exit-reason.test.ts",
];

// Test files that start real processes (sandboxes, launchers, their own Postgres, Realtime or a
// whole second stack) but never touch the shared stack: no rows, workers or functions of it.
// `npm test` runs them in a second lane beside the integration project (scripts/test.ts), so the
// wall time is the longer lane, not the sum. A file here must not import tests/helpers/env.ts.
export const STANDALONE = [
  "tests/foundation/functions.test.ts",
  "tests/foundation/persistence.test.ts",
  "tests/foundation/start.test.ts",
  "tests/realtime/broadcast.test.ts",
  "tests/realtime/private-channels.test.ts",
  "tests/realtime/protocol.test.ts",
  "tests/sandbox/artifacts.test.ts",
  "tests/sandbox/basics.test.ts",
  "tests/sandbox/cgroups-v2.test.ts",
  "tests/sandbox/crash.test.ts",
  "tests/sandbox/files.test.ts",
  "tests/sandbox/fileop-paths.test.ts",
  "tests/sandbox/isolation.test.ts",
  "tests/sandbox/launcher-client.test.ts",
  "tests/sandbox/launcher-lint.test.ts",
  "tests/sandbox/launcher-protocol.test.ts",
  "tests/sandbox/limits.test.ts",
  "tests/sandbox/persistent.test.ts",
  "tests/sandbox/seccomp.test.ts",
  "tests/sandbox/slots.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    projects: [
      { extends: true, test: { name: "unit", include: UNIT } },
      {
        extends: true,
        test: {
          name: "standalone",
          include: STANDALONE,
          // One at a time: they start sandboxes and stacks and time some of them.
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["tests/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...UNIT, ...STANDALONE],
          // One embedded stack (Postgres + Deno functions + Realtime) serves every test file; files run
          // one after another so their workers and timing assertions do not compete for 2 cores.
          globalSetup: ["tests/helpers/global-setup.ts"],
          fileParallelism: false,
          // After the unit project, not beside it, for the same reason.
          sequence: { groupOrder: 2 },
          // postgres.js's uncatchable faults when a fault test restarts or cuts Postgres (see that module).
          onUnhandledError: (err) => (isPostgresDriverFault(err) ? false : undefined),
        },
      },
    ],
  },
});
