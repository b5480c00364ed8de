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

/**
 * Every applied migration must still be a file. Ones that are not mean the history was rewritten
 * under this database: the migrations of 20261125 were squashed into those of 20261126 before
 * anything was deployed, so a local database made from the old ones is to be reset, not patched.
 */
function assertHistoryKnown(history: { version: string; name: string | null }[], files: MigrationFile[]): void {
  const known = new Map(files.map((f) => [f.version, f.name]));
  const unknown = history.filter((r) => known.get(r.version) === undefined || (r.name !== null && known.get(r.version) !== r.name));
  if (unknown.length === 0) return;
  const names = unknown.map((r) => `${r.version}_${r.name ?? "?"}`);
  throw new EmbeddedError(
    "migration_history_squashed",
    `This database has ${unknown.length} applied migration(s) that are no longer in migrations/ (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}): ` +
      "the migration history was squashed (the 13 migrations of 20261125 became those of 20261126, see migrations.sha256), " +
      "so this database cannot be migrated forward. Nothing was deployed from the old history: reset the local database with " +
      "`npm start -- --reset` (wipes the data directory, COGO_DATA_DIR, default /var/tmp/cogo-sandbox), or point COGO_DATA_DIR at a new directory.",
    { versions: unknown.map((r) => r.version) },
  );
}

/** Applies pending migrations; returns the versions it applied. */
export async function migrate(sql: Sql, dir: string, log: (line: string) => void = () => {}): Promise<string[]> {
  await ensureHistoryTable(sql);
  const history = await sql<{ version: string; name: string | null }[]>`
    select version, name from supabase_migrations.schema_migrations order by version`;
  const files = await listMigrations(dir);
  assertHistoryKnown(history, files);
  const applied = new Set(history.map((r) => r.version));
  const done: string[] = [];
  for (const m of files) {
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
