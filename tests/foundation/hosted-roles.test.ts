// The embedded database grants migrations what hosted Supabase grants `supabase db push`, no more:
// they run as a `postgres` that is not a superuser, in a database whose `auth` and `realtime`
// schemas belong to another role, and may create policies on realtime.messages only (as supautils
// allows on hosted). A migration that needs more fails here, not first on a real project.
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listMigrations, migrate } from "../../embedded/migrate.ts";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { connect } from "../../functions/_shared/db.ts";
import { sql, stack } from "../helpers/env.ts";

const MIGRATIONS = path.join(PROJECT_ROOT, "migrations");

/** `base` with `name` replaced by a scratch database's. */
const inDatabase = (base: string, name: string) => {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
};

describe("the stack's database has hosted's roles", () => {
  it("postgres is not a superuser and has hosted's attributes and memberships", async () => {
    const [r] = await sql<{ super: boolean; createdb: boolean; createrole: boolean; replication: boolean; bypassrls: boolean; login: boolean }[]>`
      select rolsuper as super, rolcreatedb as createdb, rolcreaterole as createrole, rolreplication as replication,
             rolbypassrls as bypassrls, rolcanlogin as login
        from pg_roles where rolname = 'postgres'`;
    expect(r).toEqual({ super: false, createdb: true, createrole: true, replication: true, bypassrls: true, login: true });
    const [m] = await sql<{ member: Record<string, boolean> }[]>`
      select jsonb_object_agg(r, pg_has_role('postgres', r, 'member')) as member
        from unnest(array['anon', 'authenticated', 'service_role', 'supabase_superuser', 'supabase_realtime_admin', 'supabase_admin']) r`;
    expect(m!.member).toEqual({
      anon: true,
      authenticated: true,
      service_role: true,
      supabase_superuser: true,
      supabase_realtime_admin: false,
      supabase_admin: false,
    });
  });

  it("auth, realtime and realtime.messages belong to other roles; postgres may not create in them", async () => {
    const rows = await sql<{ name: string; owner: string; create: boolean }[]>`
      select nspname as name, pg_get_userbyid(nspowner) as owner, has_schema_privilege('postgres', oid, 'create') as create
        from pg_namespace where nspname in ('auth', 'realtime') order by nspname`;
    expect(rows).toEqual([
      { name: "auth", owner: "supabase_admin", create: false },
      { name: "realtime", owner: "supabase_admin", create: false },
    ]);
    const [t] = await sql<{ owner: string; privileges: string[] }[]>`
      select pg_get_userbyid(relowner) as owner,
             array(select p from unnest(array['select', 'insert', 'update', 'delete', 'truncate']) p
                    where has_table_privilege('postgres', 'realtime.messages', p)) as privileges
        from pg_class where oid = 'realtime.messages'::regclass`;
    // Lent to postgres only for each policy statement of the migrations, then given back.
    expect(t).toEqual({ owner: "supabase_realtime_admin", privileges: ["select", "insert", "update"] });
  });

  it("every migration ran as postgres: it owns all it made, and the stack hands out its URL", async () => {
    const as = connect(stack.postgresUrl, { max: 1 });
    try {
      const [me] = await as<{ user: string; super: boolean }[]>`select current_user as user, rolsuper as super from pg_roles where rolname = current_user`;
      expect(me).toEqual({ user: "postgres", super: false });
    } finally {
      await as.end();
    }
    const notOurs = await sql<{ name: string; owner: string }[]>`
      select format('%I.%I', n.nspname, c.relname) as name, pg_get_userbyid(c.relowner) as owner
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname in ('public', 'cogo', 'supabase_migrations') and c.relkind in ('r', 'p', 'v', 'm', 'S')
         and pg_get_userbyid(c.relowner) <> 'postgres'
      union all
      select format('%I.%I', n.nspname, p.proname), pg_get_userbyid(p.proowner)
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname in ('public', 'cogo') and pg_get_userbyid(p.proowner) <> 'postgres'`;
    expect(notOurs).toEqual([]);
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from supabase_migrations.schema_migrations`;
    expect(n!.n).toBe((await listMigrations(MIGRATIONS)).length);
  });
});

describe("a migration that needs more than hosted gives", () => {
  const name = `cogo_hosted_roles_${process.pid}`;
  let dir = "";
  let asPostgres: ReturnType<typeof connect>;
  let asAdmin: ReturnType<typeof connect>;

  /** Migrations `dir` (all real ones, already applied) plus one file of `text`, as postgres. */
  const pushAs = async (db: ReturnType<typeof connect>, text: string) => {
    const extra = path.join(dir, "29990101000000_extra.sql");
    await writeFile(extra, text);
    try {
      return await migrate(db, dir);
    } finally {
      await rm(extra, { force: true });
    }
  };

  beforeAll(async () => {
    // A fresh database, bootstrapped by the superuser and migrated as postgres, as the stack does.
    await sql.unsafe(`create database ${name}`);
    asAdmin = connect(inDatabase(stack.dbUrl, name), { max: 1 });
    asPostgres = connect(inDatabase(stack.postgresUrl, name), { max: 1 });
    await asAdmin.unsafe(await readFile(path.join(PROJECT_ROOT, "embedded", "bootstrap.sql"), "utf8"));
    dir = await mkdtemp(path.join(tmpdir(), "cogo-hosted-"));
    for (const f of (await readdir(MIGRATIONS)).filter((n) => n.endsWith(".sql"))) await copyFile(path.join(MIGRATIONS, f), path.join(dir, f));
  });

  afterAll(async () => {
    await asPostgres?.end();
    await asAdmin?.end();
    await sql.unsafe(`drop database if exists ${name} with (force)`);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the real migrations apply on a fresh database as postgres", async () => {
    const files = await listMigrations(MIGRATIONS);
    expect(await migrate(asPostgres, dir)).toEqual(files.map((f) => f.version));
  }, 30_000);

  it.each([
    ["creates a table in auth", "create table auth.sneaky (id int);", /permission denied for schema auth/],
    ["creates a function in realtime", "create function realtime.sneaky() returns int language sql as 'select 1';", /permission denied for schema realtime/],
    ["alters realtime.messages", "alter table realtime.messages add column sneaky int;", /must be owner of table messages/],
    ["deletes from realtime.messages", "delete from realtime.messages;", /permission denied for table messages/],
    ["drops realtime.messages", "drop table realtime.messages;", /must be owner of table messages/],
    ["creates an untrusted extension", "create extension file_fdw;", /permission denied to create extension "file_fdw"/],
    ["makes itself a superuser", "alter role postgres superuser;", /permission denied to alter role/],
    ["runs a program on the server", "copy (select 1) to program 'true';", /permission denied to COPY to or from an external program/],
  ])("fails when it %s", async (_what, text, message) => {
    await expect(pushAs(asPostgres, text)).rejects.toThrow(message);
    const [n] = await asPostgres<{ n: number }[]>`select count(*)::int as n from supabase_migrations.schema_migrations where version = '29990101000000'`;
    expect(n!.n).toBe(0);
  });

  it("the same migration passes as the superuser: it is the role that refuses it", async () => {
    await pushAs(asAdmin, "create table auth.sneaky (id int);");
    const [t] = await asAdmin<{ t: string | null }[]>`select to_regclass('auth.sneaky')::text as t`;
    expect(t!.t).toBe("auth.sneaky");
    await asAdmin.unsafe("drop table auth.sneaky; delete from supabase_migrations.schema_migrations where version = '29990101000000'");
  });

  it("may create, alter and drop policies on realtime.messages, and the table is given back unchanged", async () => {
    const before = await asAdmin<{ owner: string; acl: string[] }[]>`
      select pg_get_userbyid(relowner) as owner, array(select a::text from unnest(relacl) a order by 1) as acl from pg_class where oid = 'realtime.messages'::regclass`;
    expect(before[0]!.owner).toBe("supabase_realtime_admin");
    await pushAs(
      asPostgres,
      `create policy "hosted roles probe" on realtime.messages for select to authenticated using (realtime.topic() = 'probe');
       alter policy "hosted roles probe" on realtime.messages using (realtime.topic() = 'probe-2');
       drop policy "hosted roles probe" on realtime.messages;
       create policy "hosted roles probe 2" on realtime.messages for insert to authenticated with check (false);`,
    );
    const [p] = await asAdmin<{ n: number }[]>`select count(*)::int as n from pg_policy where polrelid = 'realtime.messages'::regclass and polname like 'hosted roles probe%'`;
    expect(p!.n).toBe(1);
    const after = await asAdmin<{ owner: string; acl: string[] }[]>`
      select pg_get_userbyid(relowner) as owner, array(select a::text from unnest(relacl) a order by 1) as acl from pg_class where oid = 'realtime.messages'::regclass`;
    expect(after).toEqual(before);
    // A policy change on another table lends nothing, so it takes no lock on realtime.messages.
    await asPostgres.begin(async (tx) => {
      await tx.unsafe(`create table public.hosted_roles_probe (id int); create policy "probe" on public.hosted_roles_probe using (true)`);
      const [l] = await tx<{ n: number }[]>`select count(*)::int as n from pg_locks where pid = pg_backend_pid() and relation = 'realtime.messages'::regclass`;
      expect(l!.n).toBe(0);
      await tx.unsafe("drop table public.hosted_roles_probe");
    });
    // The loan covers policy statements only: the next one is refused again.
    await expect(asPostgres.unsafe("alter table realtime.messages add column sneaky int")).rejects.toThrow(/must be owner of table messages/);
  });
});
