// Migrations apply once, in order, each in a transaction, recorded where the Supabase CLI looks.
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readdir, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { listMigrations, migrate } from "../../embedded/migrate.ts";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { connect } from "../../functions/_shared/db.ts";
import { CogoError } from "../../functions/_shared/errors.ts";
import { TASK_STATES } from "../../functions/_shared/states.ts";
import { sql, stack } from "../helpers/env.ts";

const run = promisify(execFile);
const MIGRATIONS = path.join(PROJECT_ROOT, "migrations");

/** A scratch migrations directory holding the real ones (all applied here already) and `extra`. */
async function migrationsPlus(extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "cogo-mig-"));
  for (const f of (await readdir(MIGRATIONS)).filter((n) => n.endsWith(".sql"))) await copyFile(path.join(MIGRATIONS, f), path.join(dir, f));
  for (const [name, text] of Object.entries(extra)) await writeFile(path.join(dir, name), text);
  return dir;
}

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
    const dir = await migrationsPlus({ "29990101000000_broken.sql": "create table public.mig_half (id int);\nselect * from no_such_table;\n" });
    try {
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
    const dir = await migrationsPlus({ "create_things.sql": "select 1;" });
    try {
      await expect(migrate(sql, dir)).rejects.toThrow(/must be named <14-digit version>_<name>\.sql/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it("refuses a database whose applied migrations are no longer files (a squashed history), saying how to reset", async () => {
    // A database of its own, as a developer's data directory made before the squash would be.
    const name = `cogo_mig_squashed_${process.pid}`;
    await sql.unsafe(`create database ${name}`);
    const url = new URL(stack.dbUrl);
    url.pathname = `/${name}`;
    const db = connect(url.toString(), { max: 1 });
    try {
      await db.unsafe(`create schema supabase_migrations;
        create table supabase_migrations.schema_migrations (version text primary key, statements text[], name text);
        insert into supabase_migrations.schema_migrations (version, name) values ('20261125000100', 'create_task_queue'), ('20261125000300', 'add_task_event_batches_and_eta');`);
      const refused = migrate(db, MIGRATIONS);
      await expect(refused).rejects.toBeInstanceOf(CogoError);
      await expect(refused).rejects.toMatchObject({ code: "migration_history_squashed", details: { versions: ["20261125000100", "20261125000300"] } });
      await expect(refused).rejects.toThrow(/20261125000100_create_task_queue.*the migration history was squashed.*npm start -- --reset.*COGO_DATA_DIR/s);
      // Nothing was applied on top of the old history.
      const [n] = await db<{ n: number }[]>`select count(*)::int as n from supabase_migrations.schema_migrations`;
      expect(n!.n).toBe(2);
    } finally {
      await db.end();
      await sql.unsafe(`drop database ${name} with (force)`);
    }
  });

  it("the SQL task_status enum and TASK_STATES are the same list", async () => {
    const [row] = await sql<{ states: string[] }[]>`select enum_range(null::public.task_status)::text[] as states`;
    expect(row!.states).toEqual([...TASK_STATES]);
  });
});
