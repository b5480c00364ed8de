// Applies migrations/*.sql in order, each in its own transaction, recorded in the Supabase CLI's
// own history table so `supabase migration list` and `db push` agree with what ran here.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Sql } from "postgres";
import { EmbeddedError } from "./errors.ts";

const FILE_NAME = /^(\d{14})_(\w+)\.sql$/;

export interface MigrationFile {
  version: string;
  name: string;
  file: string;
}

export async function listMigrations(dir: string): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".sql")).sort();
  return names.map((n) => {
    const m = FILE_NAME.exec(n);
    if (!m) {
      throw new EmbeddedError("bad_migration_name", `${path.join(dir, n)}: migration files must be named <14-digit version>_<name>.sql`);
    }
    return { version: m[1]!, name: m[2]!, file: path.join(dir, n) };
  });
}

/** Creates the history table exactly as CLI 2.117 does (pkg/migration/history.go). */
async function ensureHistoryTable(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`set local lock_timeout = '4s'`;
    await tx.unsafe(`
      create schema if not exists supabase_migrations;
      create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
      alter table supabase_migrations.schema_migrations add column if not exists statements text[];
      alter table supabase_migrations.schema_migrations add column if not exists name text;`);
  });
}

/** Applies pending migrations; returns the versions it applied. */
export async function migrate(sql: Sql, dir: string, log: (line: string) => void = () => {}): Promise<string[]> {
  await ensureHistoryTable(sql);
  const applied = new Set(
    (await sql<{ version: string }[]>`select version from supabase_migrations.schema_migrations`).map((r) => r.version),
  );
  const done: string[] = [];
  for (const m of await listMigrations(dir)) {
    if (applied.has(m.version)) continue;
    const text = await readFile(m.file, "utf8");
    try {
      await sql.begin(async (tx) => {
        await tx.unsafe(text);
        await tx`insert into supabase_migrations.schema_migrations (version, name, statements)
                 values (${m.version}, ${m.name}, ${[text]})`;
      });
    } catch (err) {
      const e = err as { message?: string; position?: string };
      throw new EmbeddedError("migration_failed", `${path.basename(m.file)} failed and was rolled back: ${e.message ?? err}`, {
        version: m.version,
        position: e.position,
      });
    }
    log(`applied migration ${m.version}_${m.name}`);
    done.push(m.version);
  }
  return done;
}
