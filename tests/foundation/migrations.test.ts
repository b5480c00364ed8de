// Migrations apply once, in order, each in a transaction, recorded where the Supabase CLI looks.
import { execFile } from "node:child_process";
import { mkdtemp, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { listMigrations, migrate } from "../../embedded/migrate.ts";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { TASK_STATES } from "../../functions/_shared/states.ts";
import { sql, stack } from "../helpers/env.ts";

const run = promisify(execFile);
const MIGRATIONS = path.join(PROJECT_ROOT, "migrations");

describe("migration runner", () => {
  it("is idempotent: a second run applies nothing", async () => {
    expect(await migrate(sql, MIGRATIONS)).toEqual([]);
    const rows = await sql<{ version: string; name: string; statements: string[] }[]>`
      select version, name, statements from supabase_migrations.schema_migrations order by version`;
    const files = await listMigrations(MIGRATIONS);
    expect(rows.map((r) => `${r.version}_${r.name}`)).toEqual(files.map((f) => `${f.version}_${f.name}`));
    expect(rows.every((r) => r.statements.length === 1 && r.statements[0]!.length > 0)).toBe(true);
  });

  it("the real Supabase CLI lists the same migrations as applied", async () => {
    const { stdout } = await run(path.join(PROJECT_ROOT, "node_modules/.bin/supabase"), ["migration", "list", "--db-url", `${stack.dbUrl}?sslmode=disable`], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
      timeout: 60_000,
    });
    const files = await listMigrations(MIGRATIONS);
    for (const f of files) {
      // Local | Remote | Time: applied migrations show the version in both columns.
      expect(stdout).toMatch(new RegExp("`?" + f.version + "`?\\s*\\|\\s*`?" + f.version + "`?"));
    }
  });

  it("rolls back a failing migration whole and records nothing", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "cogo-mig-"));
    try {
      await writeFile(path.join(dir, "29990101000000_broken.sql"), "create table public.mig_half (id int);\nselect * from no_such_table;\n");
      await expect(migrate(sql, dir)).rejects.toThrow(/29990101000000_broken\.sql failed and was rolled back: relation "no_such_table" does not exist/);
      const [t] = await sql<{ t: string | null }[]>`select to_regclass('public.mig_half')::text as t`;
      expect(t!.t).toBeNull();
      const [m] = await sql<{ n: number }[]>`select count(*)::int as n from supabase_migrations.schema_migrations where version = '29990101000000'`;
      expect(m!.n).toBe(0);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it("refuses a file not named <version>_<name>.sql", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "cogo-mig-"));
    try {
      await writeFile(path.join(dir, "create_things.sql"), "select 1;");
      await expect(migrate(sql, dir)).rejects.toThrow(/must be named <14-digit version>_<name>\.sql/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it("the SQL task_status enum and TASK_STATES are the same list", async () => {
    const [row] = await sql<{ states: string[] }[]>`select enum_range(null::public.task_status)::text[] as states`;
    expect(row!.states).toEqual([...TASK_STATES]);
  });
});
