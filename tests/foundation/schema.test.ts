// The net schema is checked in (schema.sql) and landed migrations never change: a reviewer reads
// the schema in one file, and history is only ever appended to. Also the lifecycle's shape: one
// definition of each function, and triggers on public.tasks that only wake and broadcast.
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { ACTIVE_STATES, FINAL_STATES } from "../../functions/_shared/states.ts";
import { SCHEMA_FILE, schemaOfMigrations } from "../../scripts/dump-schema.ts";
import { sql, stack, uniqueKind } from "../helpers/env.ts";

const MIGRATIONS = path.join(PROJECT_ROOT, "migrations");
const MANIFEST = path.join(PROJECT_ROOT, "migrations.sha256");
/** The last migration of the squash of 20261125 into one file per area. */
const SQUASHED_THROUGH = "20261126000800";

describe("schema.sql", () => {
  it("is what the migrations make (else: npm run schema:dump)", async () => {
    // Migrated as postgres, as the stack and `supabase db push` do.
    const generated = await schemaOfMigrations(stack.dbUrl, MIGRATIONS, stack.postgresUrl);
    const checkedIn = await readFile(SCHEMA_FILE, "utf8").catch(() => "");
    if (generated !== checkedIn) {
      const a = checkedIn.split("\n");
      const b = generated.split("\n");
      const i = b.findIndex((line, n) => line !== a[n]);
      throw new Error(
        `schema.sql is stale: run npm run schema:dump (first difference at line ${i + 1}: ` +
          `checked in ${JSON.stringify(a[i] ?? "<end>")}, migrations make ${JSON.stringify(b[i] ?? "<end>")})`,
      );
    }
  }, 120_000);
});

describe("landed migrations", () => {
  it("are never edited or removed, and every migration is in migrations.sha256", async () => {
    const manifest = (await readFile(MANIFEST, "utf8")).split("\n").filter((l) => l.trim() !== "");
    const listed = new Map<string, string>();
    for (const line of manifest) {
      const m = /^([0-9a-f]{64}) {2}migrations\/(\S+\.sql)$/.exec(line);
      if (!m) throw new Error(`migrations.sha256: bad line ${JSON.stringify(line)} (want "<sha256>  migrations/<file>.sql", as sha256sum prints)`);
      listed.set(m[2]!, m[1]!);
    }
    const files = (await readdir(MIGRATIONS)).filter((f) => f.endsWith(".sql")).sort();
    const problems: string[] = [];
    for (const [file, sha] of listed) {
      const text = await readFile(path.join(MIGRATIONS, file)).catch(() => null);
      if (text === null) {
        problems.push(`migrations/${file} landed and was removed`);
      } else if (createHash("sha256").update(text).digest("hex") !== sha) {
        problems.push(`migrations/${file} changed after it landed`);
      }
    }
    for (const file of files) {
      if (!listed.has(file)) problems.push(`migrations/${file} is not in migrations.sha256`);
    }
    expect([...listed.keys()], "migrations.sha256 lists the migrations in the order they apply").toEqual([...listed.keys()].sort());
    if (problems.length > 0) {
      throw new Error(
        `${problems.join("; ")}. A migration is never edited once landed: put new behaviour in a new migration ` +
          "(migrations/<14-digit version>_<name>.sql), then append its line: sha256sum migrations/<file>.sql >> migrations.sha256 " +
          "(and npm run schema:dump).",
      );
    }
  });

  it("of the squashed baseline define each function once, in its final form", async () => {
    // Later migrations change a function with `create or replace`; schema.sql shows its net form.
    const names = new Map<string, string[]>();
    for (const file of (await readdir(MIGRATIONS)).filter((f) => f.endsWith(".sql") && f.slice(0, 14) <= SQUASHED_THROUGH).sort()) {
      const text = await readFile(path.join(MIGRATIONS, file), "utf8");
      expect(text, `${file} replaces a function: change it in a new migration only when its old text is gone from the schema`).not.toMatch(/create\s+or\s+replace\s+function/i);
      for (const m of text.matchAll(/create\s+function\s+([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)\s*\(/gi)) {
        names.set(m[1]!, [...(names.get(m[1]!) ?? []), file]);
      }
    }
    const twice = [...names].filter(([, files]) => files.length > 1).map(([name, files]) => `${name} (${files.join(", ")})`);
    expect(twice).toEqual([]);
  });
});

describe("the lifecycle's single definitions", () => {
  it("cogo.active_states() and cogo.final_states() are ACTIVE_STATES and FINAL_STATES", async () => {
    const [row] = await sql<{ active: string[]; final: string[] }[]>`
      select cogo.active_states()::text[] as active, cogo.final_states()::text[] as final`;
    expect(row!.active).toEqual([...ACTIVE_STATES]);
    expect(row!.final).toEqual([...FINAL_STATES]);
  });

  it("triggers on public.tasks only wake workers, broadcast new tasks, refuse reserved names and count stored bytes", async () => {
    const rows = await sql<{ name: string }[]>`
      select tgname as name from pg_trigger where tgrelid = 'public.tasks'::regclass and not tgisinternal order by tgname`;
    // Status changes go through the transition functions (docs/lifecycle.md), never a trigger; the
    // usage triggers only add a task's input bytes to its tenant's counter (tenant quotas).
    expect(rows.map((r) => r.name)).toEqual([
      "tasks_broadcast_insert",
      "tasks_notify_queued",
      "tasks_reserved_names",
      "tasks_usage_delete",
      "tasks_usage_insert",
      "tasks_usage_update",
    ]);
  });

  it("the table itself refuses a task queued past its attempts or with a cancel pending, and attempts past max_attempts", async () => {
    const [t] = await sql<{ id: string }[]>`
      select id from cogo.enqueue_task(${sql.json({ command: "true", maxAttempts: 2, requirements: { kind: uniqueKind("inv") } })})`;
    try {
      const refused = (statement: Promise<unknown>, constraint: string) => expect(statement).rejects.toMatchObject({ code: "23514", constraint_name: constraint });
      await refused(sql`update public.tasks set attempt = 2 where id = ${t!.id}`, "tasks_queued_is_claimable");
      await refused(sql`update public.tasks set cancel_requested_at = now() where id = ${t!.id}`, "tasks_queued_is_claimable");
      await refused(sql`update public.tasks set status = 'failed', attempt = 3 where id = ${t!.id}`, "tasks_attempts_bounded");
    } finally {
      await sql`delete from public.tasks where id = ${t!.id}`;
    }
  });
});
