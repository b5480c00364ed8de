// Terminals in persistent sandboxes (POST /sandboxes/:id/pty, POST /tasks/:id/resize, sdk/pty.ts)
// on the real stack: keystrokes reach the shell and its bytes come back, the size is the one asked
// for and follows a resize (SIGWINCH), the terminal is a pty of the sandbox's own devpts (a fresh
// instance: /dev/pts/0, none of the host's entries, not the host's devpts), Ctrl-C interrupts the
// foreground program, `cogo shell` runs one from a local terminal in raw mode, and another
// tenant, bad sizes and non-terminals are refused. One sandbox serves every test.
import { spawn } from "node:child_process";
import { statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LiveSandbox, PtyHandle } from "../../sdk/index.ts";
import { api, newUser, sql, sqlAsUser, stack, startWorker, uniqueKind, stopLiveSandboxes } from "../helpers/env.ts";
import { isRoot, requireRoot } from "../helpers/root.ts";

requireRoot("Terminals in persistent sandboxes");
const kind = uniqueKind("pty");
let a: Awaited<ReturnType<typeof newUser>>;
let b: Awaited<ReturnType<typeof newUser>>;
let sbx: LiveSandbox;
/** `cogo shell` on a terminal of its own (script(1)), started in beforeAll: its start overlaps the other tests. */
let shell: ReturnType<typeof cliOnTerminal>;
const t0 = performance.now();

beforeAll(async () => {
  a = await newUser({ maxRunning: 100 });
  b = await newUser();
  if (!isRoot) return;
  await startWorker({ kind, concurrency: 2 });
  sbx = await a.sandbox.sandboxes.create({ requirements: { kind }, idleTimeoutMs: 60_000 });
  shell = cliOnTerminal(["shell", sbx.sandboxId]);
});
afterAll(async () => {
  shell?.kill(); // only if a failed test left it running
  await stopLiveSandboxes(a.id);
  console.log(`pty tests: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

/**
 * `cogo …` as user `a` on a local terminal of its own (script(1) gives it a pty, as a user's
 * terminal would be): what it prints, keys to type into that terminal, and its exit code.
 */
function cliOnTerminal(args: string[]) {
  const quoted = [process.execPath, "--import", "tsx", "sdk/cli.ts", ...args].map((a) => `'${a}'`).join(" ");
  const child = spawn("script", ["-qefc", quoted, "/dev/null"], {
    env: { PATH: process.env.PATH!, TERM: "xterm", SUPABASE_URL: stack.apiUrl, SUPABASE_ANON_KEY: stack.anonKey, COGO_TOKEN: a.token },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exit = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? -1)));
  return { out: () => out, type: (keys: string) => child.stdin.write(keys), exit, kill: () => child.exitCode === null && child.kill("SIGKILL") };
}

/** A terminal whose output is collected; `until` waits for a pattern in what came since `mark()`. */
async function terminal(size = { cols: 80, rows: 24 }) {
  let out = "";
  let from = 0;
  const decoder = new TextDecoder();
  const term: PtyHandle = await sbx.pty.create({ ...size, onData: (d) => (out += decoder.decode(d, { stream: true })) });
  return {
    term,
    out: () => out,
    mark: () => (from = out.length),
    until: (re: RegExp, timeout = 5000) => expect.poll(() => out.slice(from), { timeout, interval: 20 }).toMatch(re),
  };
}

describe.runIf(isRoot)("a terminal in a sandbox", () => {
  it("takes keystrokes, has the size asked for and follows a resize, on the sandbox's own devpts; Ctrl-C interrupts", async () => {
    const t = await terminal({ cols: 80, rows: 24 });
    expect(t.term.taskId).toMatch(/^[0-9a-f-]{36}$/);

    t.mark();
    await t.term.sendInput("echo hi\r");
    // The echo of the typed line, then the command's own line (after bash's escape sequences).
    await t.until(/echo hi\r\n[\s\S]*[\r\n]hi\r\n/);

    t.mark();
    await t.term.sendInput("stty size\r");
    await t.until(/[\r\n]24 80\r\n/);
    await t.term.resize({ cols: 100, rows: 30 });
    t.mark();
    await t.term.sendInput("stty size\r");
    await t.until(/[\r\n]30 100\r\n/);
    // The size is kept on the task, and the view says it is a terminal.
    expect((await a.sandbox.getTask(t.term.taskId)).pty).toEqual({ cols: 100, rows: 30 });

    // Its controlling terminal is /dev/pts/0 of a fresh devpts: no entry of the host's is visible,
    // and the filesystem is not the host's devpts.
    t.mark();
    await t.term.sendInput("tty; echo ctty=$(cut -d' ' -f7 /proc/$$/stat); echo pts=$(ls /dev/pts | tr '\\n' ' '); echo dev=$(stat -c %d /dev/pts/ptmx)\r");
    await t.until(/dev=\d+\r\n/);
    const seen = t.out();
    expect(seen).toMatch(/[\r\n]\/dev\/pts\/0\r\n/);
    // tty_nr: major 136 (Unix98 pty slaves), minor 0.
    expect(seen).toMatch(/\r\nctty=34816\r\n/);
    expect(seen).toMatch(/\r\npts=0 ptmx\r\n/);
    const inside = Number(/\r\ndev=(\d+)\r\n/.exec(seen)![1]);
    const host = statSync("/dev/pts/ptmx", { throwIfNoEntry: false });
    if (host) expect(inside).not.toBe(host.dev);

    // Ctrl-C reaches the foreground program through the terminal's line discipline.
    t.mark();
    await t.term.sendInput("sleep 100\r");
    await expect.poll(async () => (await sbx.commands.run("grep -lx sleep /proc/[0-9]*/comm || true")).stdout, { timeout: 5000, interval: 50 }).toMatch(/comm/);
    const interrupted = performance.now();
    await t.term.sendInput("\x03");
    await t.term.sendInput("echo status=$?\r");
    await t.until(/status=130\r\n/);
    console.log(`pty: Ctrl-C to the prompt again in ${(performance.now() - interrupted).toFixed(0)} ms`);

    await t.term.sendInput("exit 7\r");
    const end = await t.term.wait();
    expect(end).toMatchObject({ exitCode: 7, error: "exited with code 7" });
  });

  it("`cogo shell` puts the local terminal in raw mode: Ctrl-C goes to the sandbox's shell, not to cogo; it exits with the shell's code", async () => {
    await expect.poll(shell.out, { timeout: 15_000, interval: 20 }).toMatch(/\$ $/);
    shell.type("stty size; sleep 100\r");
    await expect.poll(async () => (await sbx.commands.run("grep -lx sleep /proc/[0-9]*/comm || true")).stdout, { timeout: 5000, interval: 50 }).toMatch(/comm/);
    // In cooked mode this would be SIGINT to cogo itself (exit 130, the shell left running).
    shell.type("\x03");
    shell.type("echo status=$?\r");
    await expect.poll(shell.out, { timeout: 5000, interval: 20 }).toMatch(/status=130\r+\n/);
    shell.type("exit 9\r");
    expect(await shell.exit).toBe(9);
    // No window size from script(1): the CLI asked for 80x24. (script's own terminal adds a \r per line.)
    expect(shell.out()).toMatch(/[\r\n]24 80\r+\n/);
    expect(shell.out()).not.toMatch(/\[cogo\]/);
  });

  it("refuses another tenant (404), bad sizes (400 naming the field), and resizing what is no live terminal (409)", async () => {
    const t = await terminal({ cols: 40, rows: 10 });
    const id = sbx.sandboxId;
    const task = t.term.taskId;
    // Another tenant: the sandbox and the terminal do not exist for it, and nothing changed.
    expect((await api("POST", `/sandboxes/${id}/pty`, { token: b.token, body: { cols: 80, rows: 24 } })).status).toBe(404);
    expect((await api("POST", `/tasks/${task}/resize`, { token: b.token, body: { cols: 80, rows: 24 } })).status).toBe(404);
    expect((await api("POST", `/tasks/${task}/stdin`, { token: b.token, body: { data: "x" } })).status).toBe(404);
    expect((await a.sandbox.getTask(task)).pty).toEqual({ cols: 40, rows: 10 });

    for (const [route, body, field] of [
      [`/sandboxes/${id}/pty`, { cols: 0, rows: 24 }, "cols"],
      [`/sandboxes/${id}/pty`, { cols: 80, rows: 1001 }, "rows"],
      [`/sandboxes/${id}/pty`, { cols: 80 }, "rows"],
      [`/sandboxes/${id}/pty`, { cols: "80", rows: 24 }, "cols"],
      [`/sandboxes/${id}/pty`, { cols: 80, rows: 24, shell: "zsh" }, "shell"],
      [`/tasks/${task}/resize`, { cols: 2.5, rows: 24 }, "cols"],
      [`/tasks/${task}/resize`, { cols: 80, rows: -1 }, "rows"],
      [`/tasks/${task}/resize`, { cols: 1e9, rows: 1e9 }, "cols"],
    ] as [string, unknown, string][]) {
      const r = await api("POST", route, { token: a.token, body });
      expect(r.status, `${route} ${JSON.stringify(body)}`).toBe(400);
      expect(r.body.error.message, `${route} ${JSON.stringify(body)}`).toMatch(new RegExp(`\\b${field}\\b`));
    }

    // A command without a terminal, and a terminal that has ended: 409 saying why.
    const plain = await sbx.commands.run("true");
    const noPty = await api("POST", `/tasks/${plain.taskId}/resize`, { token: a.token, body: { cols: 80, rows: 24 } });
    expect(noPty.status).toBe(409);
    expect(noPty.body.error.message).toMatch(/has no terminal/);
    await t.term.sendInput("exit\r");
    expect((await t.term.wait()).exitCode).toBe(0);
    const ended = await api("POST", `/tasks/${task}/resize`, { token: a.token, body: { cols: 80, rows: 24 } });
    expect(ended.status).toBe(409);
    expect(ended.body.error.message).toMatch(/already finished/);
    // A stopped sandbox takes no terminal.
    const other = await a.sandbox.sandboxes.create({ requirements: { kind } });
    await other.kill();
    expect((await api("POST", `/sandboxes/${other.sandboxId}/pty`, { token: a.token, body: { cols: 80, rows: 24 } })).status).toBe(409);
  });
});

describe("terminals in SQL (cogo.create_pty, cogo.resize_task, tasks.pty)", () => {
  /** The SQLSTATE and message a statement failed with (or "ok"). */
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => "ok",
      (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
    );
  it("owner only, sizes 1..1000 naming the field, and only sandbox commands with stdin can carry a pty", async () => {
    // A sandbox no worker serves stays `starting`: its commands wait queued, which is all this needs.
    const idle = uniqueKind("ptydb");
    const [box] = await sqlAsUser(a.id, `select * from cogo.create_sandbox('{"requirements": {"kind": "${idle}"}}'::jsonb)`);
    try {
      const [t] = await sqlAsUser(a.id, `select * from cogo.create_pty('${box!.id}', '{"cols": 80, "rows": 24}'::jsonb)`);
      expect(t).toMatchObject({ pty: { cols: 80, rows: 24 }, stdinMode: "pipe", blockDetection: { enabled: false }, sandboxId: box!.id });
      expect(t!.command).toMatch(/exec bash -i; exec sh -i$/);
      // Another tenant: neither the sandbox nor the terminal exist for it.
      expect(await failure(sqlAsUser(b.id, `select cogo.create_pty('${box!.id}', '{"cols": 80, "rows": 24}'::jsonb)`))).toMatch(/^CG404/);
      expect(await failure(sqlAsUser(b.id, `select cogo.resize_task('${t!.id}', 100, 30)`))).toMatch(/^CG404/);
      expect(await failure(sqlAsUser(a.id, `select cogo.resize_task('${t!.id}', 0, 30)`))).toMatch(/^22023: cols: /);
      expect(await failure(sqlAsUser(a.id, `select cogo.resize_task('${t!.id}', 30, 1001)`))).toMatch(/^22023: rows: /);
      expect(await failure(sqlAsUser(a.id, `select cogo.create_pty('${box!.id}', '{"cols": 80}'::jsonb)`))).toMatch(/^22023: rows: /);
      await sqlAsUser(a.id, `select cogo.resize_task('${t!.id}', 100, 30)`);
      expect((await sql`select pty from public.tasks where id = ${t!.id}`)[0]!.pty).toEqual({ cols: 100, rows: 30 });
      // Only through the functions: a user cannot write the column, and the table refuses a bad size,
      // extra keys, or a pty on a task that is no sandbox command.
      expect(await failure(sqlAsUser(a.id, `update public.tasks set pty = '{"cols": 5, "rows": 5}' where id = '${t!.id}'`))).toMatch(/^42501/);
      for (const bad of ['{"cols": 0, "rows": 5}', '{"cols": 5, "rows": 5, "x": 1}', '{"cols": 2.5, "rows": 5}', "[5, 5]"]) {
        expect(await failure(sql`update public.tasks set pty = ${bad}::jsonb where id = ${t!.id}`), bad).toMatch(/^23514: .*tasks_pty/);
      }
      const [plain] = await sql`select id from cogo.enqueue_task(${sql.json({ command: "true", stdin: "pipe", requirements: { kind: idle } })})`;
      expect(await failure(sql`update public.tasks set pty = '{"cols": 5, "rows": 5}' where id = ${plain!.id}`)).toMatch(/^23514: .*tasks_pty/);
      await sql`select cogo.cancel_task(${plain!.id})`;
    } finally {
      await sql`select cogo.stop_sandbox(${box!.id})`;
    }
  });
});
