// postgres.js faults no caller can catch (functions/_shared/postgres-closed-socket.ts): the array-type
// query every new connection runs first, cancelled under it, must not end a worker. Reproduced as
// porsager/postgres#1205 does: a 1 ms statement_timeout bound at the connection's startup.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { stack } from "../helpers/env.ts";
import { tempDirs } from "../helpers/temp.ts";

const tempDir = tempDirs("cogo-driver-");

const SCRIPT = `
import { connect } from ${JSON.stringify(path.join(PROJECT_ROOT, "functions/_shared/db.ts"))};
import { ignorePostgresClosedSocketWrites } from ${JSON.stringify(path.join(PROJECT_ROOT, "worker/process-guard.ts"))};
if (process.env.GUARD === "1") ignorePostgresClosedSocketWrites((l) => console.log("guard:", l));
const sql = connect(process.env.DB_URL, { max: 1, connection: { statement_timeout: 1 } });
for (let i = 0; i < 3; i++) {
  try { await sql\`select 1 as one\`; console.log("query: ok"); } catch (e) { console.log("query:", e.code); }
}
await new Promise((r) => setTimeout(r, 300));
console.log("alive");
await sql.end();
`;

async function run(guard: boolean) {
  const file = path.join(await tempDir(), "fetch-types.mts");
  writeFileSync(file, SCRIPT);
  const r = spawnSync(process.execPath, ["--import", "tsx", file], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DB_URL: stack.dbUrl, GUARD: guard ? "1" : "0" },
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe("postgres.js's array-type query cancelled on a new connection", () => {
  it("ends an unguarded process (the fault is real), and a guarded one carries on", async () => {
    const bare = await run(false);
    expect(bare.status, bare.out).not.toBe(0);
    expect(bare.out).toMatch(/canceling statement due to statement timeout/);
    expect(bare.out).not.toMatch(/alive/);
    const guarded = await run(true);
    expect(guarded.status, guarded.out).toBe(0);
    expect(guarded.out).toMatch(/guard: postgres\.js's array-type query failed on a new connection/);
    expect(guarded.out).toMatch(/alive/);
  });
});
