// public.submit_task, the SQL entry point (migrations/20261208000300_submit_task.sql): the
// submissions example of docs/api.md ("From SQL"; once in the README) run as written (a user's
// insert runs tests, the row gets the outcome), the same checks as POST /execute (bounds compared
// with the TypeScript constants, a corpus run through both), quotas, and the attacks: another
// owner, anon, a row of another tenant.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import {
  DEFAULT_MEMORY_BYTES,
  MAX_CPU_TIME_MS,
  MAX_FILE_SIZE_BYTES,
  MAX_MEMORY_BYTES,
  MAX_OPEN_FILES,
  MAX_OUTPUT_BYTES,
  MAX_PROCESSES,
  MAX_WALL_TIME_MS,
  MAX_WORKSPACE_BYTES,
} from "../../functions/_shared/limits.ts";
import { USER_PRIORITY } from "../../functions/_shared/plans/limits.ts";
import { ExecuteRequestSchema, MAX_FILES, MAX_FILES_BYTES } from "../../functions/_shared/schemas.ts";
import { newUser, sql, sqlAsUser, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

const kind = uniqueKind("sqlentry");
const suffix = randomUUID().slice(0, 8);
const table = `public.submissions_${suffix}`;
const trigger = `public.run_submission_${suffix}`;

/** The documented example (docs/api.md), with this file's table name and worker kind. */
async function readmeExample(): Promise<string> {
  const readme = await readFile(path.join(PROJECT_ROOT, "docs", "api.md"), "utf8");
  const m = /<!-- submissions-example -->\s*```sql\n([\s\S]*?)```\s*<!-- \/submissions-example -->/.exec(readme);
  if (!m) throw new Error("docs/api.md has no <!-- submissions-example --> block");
  const example = m[1]!.replaceAll("public.submissions", table).replaceAll("public.run_submission", trigger);
  const withKind = example.replace("jsonb_build_object(\n      'command',", `jsonb_build_object(\n      'requirements', jsonb_build_object('kind', '${kind}'),\n      'command',`);
  expect(withKind, "the example's spec starts with 'command'").not.toBe(example);
  return withKind;
}

interface Submission {
  id: string;
  userId: string;
  taskId: string | null;
  status: string | null;
  exitCode: number | null;
  outputTail: string | null;
}
const row = async (id: string) => (await sql.unsafe<Submission[]>(`select * from ${table} where id = $1`, [id]))[0]!;

const GOOD = "def add(a, b):\n    return a + b\n";
const BAD = "def add(a, b):\n    return a - b\n";

describe("public.submit_task", () => {
  beforeAll(async () => {
    await sql.unsafe(await readmeExample());
    await startWorker({ kind, concurrency: 2 });
  });
  afterAll(async () => {
    await sql.unsafe(`drop table if exists ${table}; drop function if exists ${trigger}()`);
    await sql`delete from cogo.outcome_targets where target::oid not in (select oid from pg_class)`;
  });

  it("the documented example: a user's insert runs the tests and the row gets status, exit code and output tail", async () => {
    const user = await newUser();
    const t0 = Date.now();
    const [inserted] = await sqlAsUser(user.id, `insert into ${table} (code) values ('${GOOD}') returning id, task_id, status`);
    expect(inserted).toMatchObject({ taskId: expect.any(String), status: "queued" });
    const done = await waitFor(
      async () => {
        const r = await row(inserted!.id);
        return r.exitCode !== null || r.status === "failed" || r.status === "timed_out" ? r : undefined;
      },
      "the submission's outcome",
      20_000,
    );
    const ms = Date.now() - t0;
    expect(done).toMatchObject({ status: "succeeded", exitCode: 0, outputTail: "tests passed\n", userId: user.id });
    console.log(`[submit-task] insert → outcome in the row: ${ms} ms`);
    // The task is the user's, and the user reads the row (RLS) but cannot write its outcome columns.
    const [task] = await sql<{ owner: string }[]>`select owner from public.tasks where id = ${done.taskId}`;
    expect(task!.owner).toBe(user.id);
    const seen = await sqlAsUser(user.id, `select status from ${table} where id = ${inserted!.id}`);
    expect(seen).toEqual([{ status: "succeeded" }]);
    await expect(sqlAsUser(user.id, `update ${table} set status = 'succeeded' where id = ${inserted!.id}`)).rejects.toThrow(/permission denied/);

    // A failing submission: failed, exit code 1, the assertion in the tail.
    const [bad] = await sqlAsUser(user.id, `insert into ${table} (code) values ('${BAD}') returning id`);
    const failed = await waitFor(async () => ((await row(bad!.id)).status === "failed" ? row(bad!.id) : undefined), "the failing submission", 20_000);
    expect(failed.exitCode).toBe(1);
    expect(failed.outputTail).toContain("AssertionError");
  });

  it("an authenticated user cannot submit for another owner; anon cannot call it; the service role and postgres can", async () => {
    const [a, b] = [await newUser(), await newUser()];
    await expect(sqlAsUser(a.id, `select public.submit_task('{"command": "true"}', null, '${b.id}')`)).rejects.toMatchObject({
      code: "42501",
      message: expect.stringContaining("owner: only the service role"),
    });
    // Naming oneself is fine.
    const [own] = await sqlAsUser(a.id, `select public.submit_task('{"command": "true", "requirements": {"kind": "${kind}-none"}}', null, '${a.id}') as id`);
    const [t] = await sql<{ owner: string }[]>`select owner from public.tasks where id = ${own!.id}`;
    expect(t!.owner).toBe(a.id);
    await expect(
      sql.begin(async (tx) => {
        await tx`select set_config('role', 'anon', true), set_config('request.jwt.claims', '{"role": "anon"}', true)`;
        return await tx`select public.submit_task('{"command": "true"}')`;
      }),
    ).rejects.toThrow(/permission denied for function submit_task/);
    // A user cannot make a table an outcome target either.
    await expect(sqlAsUser(a.id, `select cogo.register_outcome_target('${table}', 'id', 'user_id', 'status')`)).rejects.toThrow(/permission denied/);

    // postgres (a table owner's trigger, an operator) and the service role name the owner.
    const [byPostgres] = await sql<{ id: string }[]>`select public.submit_task(${sql.json({ command: "true", requirements: { kind: `${kind}-none` } })}, null, ${b.id}) as id`;
    const [byService] = await sql.begin(async (tx) => {
      await tx`select set_config('role', 'service_role', true), set_config('request.jwt.claims', '{"role": "service_role"}', true)`;
      return await tx<{ id: string }[]>`select public.submit_task(${tx.json({ command: "true", requirements: { kind: `${kind}-none` } })}, null, ${b.id}) as id`;
    });
    const owners = await sql<{ owner: string }[]>`select owner from public.tasks where id in ${sql([byPostgres!.id, byService!.id])}`;
    expect(owners.map((o) => o.owner)).toEqual([b.id, b.id]);
    await sql`delete from public.tasks where owner in ${sql([a.id, b.id])}`;
  });

  it("bad specs are refused naming the field, and nothing is queued", async () => {
    const user = await newUser();
    const refused: [unknown, RegExp][] = [
      [{ command: "x".repeat(100_001) }, /^command: 100001 characters; a command has 1 to 100000 characters$/],
      [{ argv: Array.from({ length: 1001 }, () => "a") }, /^argv: 1001 items/],
      [{ command: "true", limits: { memoryBytes: 1 } }, /^limits\.memoryBytes: 1 is outside 16777216…1099511627776$/],
      [{ command: "true", limits: { memoryBytes: 64 * 1024 ** 3 } }, /^limits\.memoryBytes: 68719476736 is more than /],
      [{ command: "true", limits: { cpuTimeMs: 1.5 } }, /^limits\.cpuTimeMs: expected a whole number/],
      [{ command: "true", limits: { gpus: 1 } }, /^limits\.gpus: unknown limit/],
      [{ command: "true", timeoutMs: 3_600_001 }, /^timeoutMs: 3600001 is outside 100…3600000$/],
      [{ command: "true", requirements: { kind: "analysis" } }, /^requirements\.kind: "analysis" is reserved/],
      [{ command: "true", blockDetection: {} }, /^blockDetection: not supported by submit_task \(use POST \/execute\)$/],
      [{ command: "true", files: [{ path: "../x", content: "" }] }, /^files\.0\.path: workspace path contains '\.\.'$/],
      ["not an object", /^spec: expected a JSON object/],
    ];
    for (const [spec, message] of refused) {
      const err = await sqlAsUser(user.id, `select public.submit_task('${JSON.stringify(spec).replaceAll("'", "''")}'::jsonb)`).then(
        () => null,
        (e: { code: string; message: string }) => e,
      );
      expect(err, JSON.stringify(spec).slice(0, 80)).toMatchObject({ code: "22023", message: expect.stringMatching(message) });
    }
    const notify = await sqlAsUser(user.id, `select public.submit_task('{"command": "true"}', '{"table": "public.tasks", "key": "x"}')`).catch((e) => e);
    expect(notify).toMatchObject({ code: "22023", message: expect.stringContaining("notify.table: public.tasks is not an outcome target") });
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where owner = ${user.id}`;
    expect(n!.n).toBe(0);
  });

  it("the rate limit of POST /execute applies (the same bucket)", async () => {
    const user = await newUser({ executeBurst: 1, executePerSecond: 0.01 });
    const spec = `'{"command": "true", "requirements": {"kind": "${kind}-none"}}'`;
    await sqlAsUser(user.id, `select public.submit_task(${spec})`);
    await expect(sqlAsUser(user.id, `select public.submit_task(${spec})`)).rejects.toMatchObject({ code: "CG429", message: expect.stringContaining("rate limit for /execute") });
    await sql`delete from public.tasks where owner = ${user.id}`;
  });

  it("a task never writes a row of another tenant, whatever key it names", async () => {
    const [victim, attacker] = [await newUser(), await newUser()];
    const [mine] = await sqlAsUser(victim.id, `insert into ${table} (code) values ('${GOOD}') returning id`);
    await waitFor(async () => ((await row(mine!.id)).status === "succeeded" ? true : null), "the victim's own outcome", 20_000);
    // The attacker's task names the victim's row: it runs (it is the attacker's own task), and fails.
    const [attack] = await sqlAsUser(
      attacker.id,
      `select public.submit_task('{"command": "echo forged; exit 3", "requirements": {"kind": "${kind}"}}', '{"table": "${table}", "key": ${mine!.id}}') as id`,
    );
    await waitFor(async () => ((await sql`select 1 from public.tasks where id = ${attack!.id} and status = 'failed'`).length > 0 ? true : null), "the attack task", 20_000);
    expect(await row(mine!.id)).toMatchObject({ status: "succeeded", exitCode: 0, outputTail: "tests passed\n", userId: victim.id });
  });

  it("a target row someone holds locked never holds the worker: the write gives up after 1 s and the task still ends", async () => {
    const user = await newUser();
    const [ins] = await sqlAsUser(user.id, `insert into ${table} (code) values ('${GOOD}') returning id, task_id`);
    const t0 = Date.now();
    await sql.begin(async (tx) => {
      await tx.unsafe(`select 1 from ${table} where id = $1 for update`, [ins!.id]);
      await waitFor(
        async () => (await sql`select 1 from public.tasks where id = ${ins!.taskId} and status = 'succeeded'`).length > 0 || undefined,
        "the task to end while its row is locked",
        15_000,
      );
    });
    // Three writes (claimed, running, succeeded) each gave up; the row keeps what it had.
    expect(Date.now() - t0).toBeGreaterThan(2000);
    expect(await row(ins!.id)).toMatchObject({ exitCode: null, outputTail: null });
    expect((await row(ins!.id)).status).not.toBe("succeeded");
  });

  it("checks what POST /execute checks: the same bounds, and the same verdict and field on a corpus", async () => {
    const [b] = await sql<{ b: Record<string, unknown> }[]>`select cogo.task_spec_bounds() as b`;
    expect(b!.b).toEqual({
      commandChars: 100_000,
      argvItems: 1000,
      argChars: 100_000,
      files: MAX_FILES,
      filesChars: MAX_FILES_BYTES,
      envVars: 256,
      envValueChars: 32_768,
      priority: [USER_PRIORITY.min, USER_PRIORITY.max],
      timeoutMs: [100, MAX_WALL_TIME_MS],
      maxAttempts: [1, 20],
      labels: 32,
      idempotencyKeyChars: 200,
      defaultMemoryBytes: DEFAULT_MEMORY_BYTES,
      maxMemoryBytes: MAX_MEMORY_BYTES,
      limits: {
        cpuTimeMs: [100, MAX_CPU_TIME_MS],
        memoryBytes: [16 * 1024 * 1024, 1024 ** 4],
        processes: [1, MAX_PROCESSES],
        openFiles: [16, MAX_OPEN_FILES],
        fileSizeBytes: [1024, MAX_FILE_SIZE_BYTES],
        workspaceBytes: [1024 * 1024, MAX_WORKSPACE_BYTES],
        outputBytes: [1024, MAX_OUTPUT_BYTES],
      },
    });
    // tests/lifecycle/input.test.ts's corpus (less the NUL cases: jsonb refuses \u0000 before any
    // check), and edges of each bound.
    const k = `${kind}-none`;
    const corpus: Record<string, unknown>[] = [
      {},
      { command: "echo", argv: ["echo"] },
      { command: "" },
      { command: "echo", env: { "1BAD": "x" } },
      { command: "echo", env: { "A;rm -rf /": "x" } },
      { command: "echo", files: [{ path: "../escape", content: "x" }] },
      { command: "echo", files: [{ path: "/etc/passwd", content: "x" }] },
      {
        command: "echo",
        files: [
          { path: "a", content: "x" },
          { path: "a", content: "y" },
        ],
      },
      { command: "echo", files: [{ path: "a", content: "x", mode: 7 }] },
      { command: "echo", priority: 5000 },
      { command: "echo", priority: 899 },
      { command: "echo", priority: 900 },
      { command: "echo", timeoutMs: "soon" },
      { command: "echo", timeoutMs: 3_600_001 },
      { command: "echo", timeoutMs: 100 },
      { command: "echo", maxAttempts: 0 },
      { command: "echo", limits: { wallTimeMs: 1000 } },
      { command: "echo", limits: { cpuTimeMs: 86_400_000 } },
      { command: "echo", limits: { processes: 4096, openFiles: 65_536, outputBytes: 1024, onOutputLimit: "truncate" } },
      { command: "echo", limits: { processes: 4097 } },
      { command: "echo", requirements: { kind: "Bad Kind!" } },
      { command: "echo", requirements: { labels: ["$(reboot)"] } },
      { command: "echo", requirements: { kind: k, labels: ["gpu", "x86_64"] } },
      { command: "echo", requirements: { kind: k, os: "linux" } },
      { command: "echo", limits: { memoryBytes: 1 } },
      { command: "echo", limits: { onOutputLimit: "ignore" } },
      { command: "echo", surprise: true },
      { command: "echo", stdin: "pipe", idempotencyKey: "k1", network: true },
      { command: "echo", stdin: "tty" },
      { command: "echo", idempotencyKey: "" },
      { argv: [] },
      { argv: ["echo", 3] },
      { argv: ["sh", "-c", "echo hi"], env: { A: "1", _b: "2" }, files: [{ path: "a/./b.txt", content: "aGk=", encoding: "base64", executable: true }] },
    ];
    const differences: string[] = [];
    for (const spec of corpus) {
      const z = ExecuteRequestSchema.safeParse(spec);
      const zodFields = z.success ? [] : z.error.issues.map((i) => (i.path.length ? i.path.join(".") : "body"));
      const sqlError = await sql`select cogo.check_task_spec(${sql.json(spec as never)})`.then(
        () => null,
        (e: { message: string }) => e.message,
      );
      const sqlField = sqlError === null ? null : sqlError.slice(0, sqlError.indexOf(":"));
      if (z.success !== (sqlError === null)) differences.push(`${JSON.stringify(spec)}: zod ${z.success ? "accepts" : `refuses ${zodFields}`}, SQL ${sqlError ?? "accepts"}`);
      // For an unknown key zod names the object holding it ("body" at the top), SQL the key itself.
      else if (sqlField !== null && !zodFields.some((f) => sqlField === f || sqlField.startsWith(`${f}.`) || (f === "body" && sqlField in spec)))
        differences.push(`${JSON.stringify(spec)}: zod names ${zodFields}, SQL ${sqlError}`);
    }
    expect(differences).toEqual([]);
  });
});
