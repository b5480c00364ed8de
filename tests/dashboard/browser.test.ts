// The dashboard in a real browser (Debian's chromium driven by playwright-core) against the real
// stack: fleet live, a task's output streaming into the terminal, cancel from the UI, a persistent
// sandbox (list, a command run from its page, Stop), the event contract rendered as events land,
// and no console errors. Screenshots go to test-artifacts/dashboard/.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { chromium, type Browser, type Page, type WebSocketRoute } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildDashboard } from "../../scripts/build-dashboard.ts";
import type { ExecuteRequest } from "../../sdk/index.ts";
import { newUser, sql, stack, startWorker, uniqueKind, userToken, waitFor } from "../helpers/env.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = path.resolve("test-artifacts", "dashboard");

let browser: Browser;
let page: Page;
let user: Awaited<ReturnType<typeof newUser>>;
let consoleErrors: string[] = [];
/** The page's Realtime sockets, passed through to the server, so a test can drop them. */
const sockets: WebSocketRoute[] = [];
const kind = uniqueKind("dash");

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`No chromium at ${CHROMIUM}: the dashboard tests drive a real browser. Install Debian's: apt-get install -y chromium (or set CHROMIUM_PATH).`);
  }
  await Promise.all([buildDashboard(), mkdir(ARTIFACTS, { recursive: true })]);
  await startWorker({ kind, labels: ["browser-test"], leaseMs: 3000 });
  user = await newUser();
  // --no-sandbox: Chromium's own sandbox cannot start as root in CI containers.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  await page.routeWebSocket(/\/realtime\/v1\/websocket/, (ws) => {
    ws.connectToServer();
    sockets.push(ws);
  });
  await page.goto(`${stack.apiUrl}/dashboard/#token=${user.token}`);
}, 120_000);

afterEach(async (ctx) => {
  await page.screenshot({ path: path.join(ARTIFACTS, `${ctx.task.name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60)}.png`), fullPage: true });
  expect(consoleErrors, "console errors on the page").toEqual([]);
  consoleErrors = [];
});

afterAll(async () => {
  await browser?.close();
});

const terminalText = () => page.locator("[data-testid=terminal] .xterm-rows").innerText();

async function openTask(taskId: string): Promise<void> {
  await page.evaluate((id) => (location.hash = `#/tasks/${id}`), taskId);
  await page.locator("[data-testid=task-status]").waitFor({ timeout: 15_000 });
}

describe("dashboard in a browser", () => {
  it("shows the fleet live: the test worker, its heartbeat, and healthy services", async () => {
    const row = page.locator(`[data-testid=workers] tr:has(code:text-is("${kind}"))`);
    await row.waitFor({ timeout: 15_000 });
    expect(page.url()).not.toContain("token="); // the token left the address bar
    await expect.poll(() => row.innerText()).toMatch(/browser-test[\s\S]*\d\/4[\s\S]*ago[\s\S]*online/);
    for (const name of ["Postgres", "Functions", "Realtime"]) {
      await expect.poll(() => page.locator(`[data-health=${name}]`).getAttribute("data-state"), { timeout: 10_000 }).toBe("ok");
    }
    // A task queued for a kind no worker serves shows in the queue chart, live.
    const nobody = uniqueKind("nobody");
    const h = await user.sandbox.execute({ command: "true", priority: 42, requirements: { kind: nobody } });
    const [w] = await sql<{ id: string }[]>`select id from public.workers where kind = ${kind}`;
    await waitFor(async () => (await page.locator(`[data-queue="${nobody}:42"]`).count()) > 0, "queue row after the next heartbeat", 15_000);
    await h.cancel();
    expect(w).toBeDefined();
  });

  it("asks for a token when it has none or a bad one, and explains what is wrong", async () => {
    const context = await browser.newContext(); // its own localStorage
    try {
      const fresh = await context.newPage();
      const errors: string[] = [];
      fresh.on("pageerror", (e) => errors.push(e.message));
      await fresh.goto(`${stack.apiUrl}/dashboard/#token=${await userToken(user.id, -60)}`);
      await expect.poll(() => fresh.locator("form.signin").innerText()).toContain("that token has expired");
      await fresh.locator("textarea[aria-label='access token']").fill(stack.anonKey);
      await fresh.getByRole("button", { name: "Open the dashboard" }).click();
      await expect.poll(() => fresh.locator("form.signin").innerText()).toContain('role is "anon"');
      await fresh.locator("textarea[aria-label='access token']").fill(user.token);
      await fresh.getByRole("button", { name: "Open the dashboard" }).click();
      await fresh.locator(`[data-testid=workers] tr:has(code:text-is("${kind}"))`).waitFor({ timeout: 15_000 });
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("lists a task started through the SDK live and streams its output into the terminal as it is printed", async () => {
    await page.evaluate(() => (location.hash = "#/tasks"));
    await page.locator("[data-testid=tasks], .empty").first().waitFor();
    const lines = 40;
    const handle = await user.sandbox.execute({
      command: `for i in $(seq 1 ${lines}); do printf '\\033[32mline %s\\033[0m\\n' $i; sleep 0.15; done; echo oops >&2`,
      requirements: { kind },
    });
    // The row appears through the user topic, without a reload.
    const row = page.locator(`tr[data-task="${handle.taskId}"]`);
    await row.waitFor({ timeout: 10_000 });
    await row.click();
    await page.locator("[data-testid=terminal] .xterm-rows").waitFor();
    // Output shows while the task still runs, and keeps coming.
    await waitFor(async () => /line \d+/.test(await terminalText()), "first line in the terminal", 15_000);
    const first = Math.max(...[...(await terminalText()).matchAll(/line (\d+)/g)].map((m) => Number(m[1])));
    expect(first).toBeLessThan(lines);
    await waitFor(async () => [...(await terminalText()).matchAll(/line (\d+)/g)].some((m) => Number(m[1]) > first), "later lines arriving live", 15_000);
    // ANSI colour is rendered, not printed.
    expect(await page.locator("[data-testid=terminal] .xterm-rows span.xterm-fg-2").count()).toBeGreaterThan(0);
    expect(await terminalText()).not.toContain("[32m");

    const result = await handle.result();
    expect(result.status).toBe("succeeded");
    await expect.poll(() => page.locator("[data-testid=task-status] [data-status]").getAttribute("data-status"), { timeout: 10_000 }).toBe("succeeded");
    // Replay then live, joined mid-task: every line exactly once, in order.
    await page.getByRole("button", { name: "Plain text" }).click();
    const expected = Array.from({ length: lines }, (_, i) => `\x1b[32mline ${i + 1}\x1b[0m`).join("\n") + "\noops";
    await expect.poll(() => page.locator("[data-testid=raw-output]").textContent()).toBe(expected + "\n");
    await page.getByRole("button", { name: "Terminal" }).click();
    await expect.poll(() => page.locator("[data-testid=timeline] li[data-kind=status]").count()).toBeGreaterThanOrEqual(3);
  });

  it("a dropped Realtime connection loses nothing: every line once, in order, and the page reconnects", async () => {
    const lines = 50;
    const handle = await user.sandbox.execute({ command: `for i in $(seq 1 ${lines}); do echo line $i; sleep 0.1; done`, requirements: { kind } });
    await openTask(handle.taskId);
    await waitFor(async () => /line \d+/.test(await terminalText()), "first lines", 15_000);
    const before = sockets.length;
    expect(before).toBeGreaterThan(0);
    await Promise.all(sockets.map((ws) => ws.close({ code: 4000, reason: "dropped by the test" })));
    await expect.poll(() => page.locator("[data-health=Realtime]").getAttribute("data-state"), { timeout: 5_000 }).not.toBe("ok");
    expect((await handle.result()).status).toBe("succeeded");
    // realtime-js reconnects on its own (a new socket) and the channels rejoin.
    await expect.poll(() => sockets.length, { timeout: 15_000 }).toBeGreaterThan(before);
    await expect.poll(() => page.locator("[data-health=Realtime]").getAttribute("data-state"), { timeout: 15_000 }).toBe("ok");
    await page.getByRole("button", { name: "Plain text" }).click();
    const expected = Array.from({ length: lines }, (_, i) => `line ${i + 1}\n`).join("");
    await expect.poll(() => page.locator("[data-testid=raw-output]").textContent(), { timeout: 10_000 }).toBe(expected);
    await page.getByRole("button", { name: "Terminal" }).click();
  });

  it("lists a persistent sandbox, runs a command in it from its page and stops it", async () => {
    const sbx = await user.sandbox.sandboxes.create({ requirements: { kind }, idleTimeoutMs: 60_000 });
    await page.evaluate(() => (location.hash = "#/sandboxes"));
    const row = page.locator(`[data-testid=sandboxes] tr[data-sandbox="${sbx.sandboxId}"]`);
    await expect.poll(() => row.innerText(), { timeout: 10_000 }).toMatch(/ready/);
    await row.click();
    await page.locator("input[aria-label='sandbox command']").fill("mkdir sub; echo from-the-page > sub/f; touch '<i>x<i>'; cat sub/f");
    await page.getByRole("button", { name: "Run", exact: true }).click();
    await expect.poll(() => page.locator("[data-testid=sandbox-output]").textContent(), { timeout: 10_000 }).toContain("from-the-page\n");
    // Its file tree: the directory the command made; opened, it lists the file; clicked, the file shows.
    await page.locator("button[data-action=refresh-files]").click();
    const entry = (path: string) => page.locator(`[data-testid=sandbox-files] [data-path="${path}"] .name`);
    const paths = () => page.locator("[data-testid=sandbox-files] [data-path]").evaluateAll((els) => els.map((e) => e.getAttribute("data-path")));
    await entry("sub").click();
    await expect.poll(paths, { timeout: 10_000 }).toEqual(["sub", "sub/f", "<i>x<i>"]);
    await entry("sub/f").click();
    await expect.poll(() => page.locator("[data-testid=sandbox-file-text]").textContent(), { timeout: 10_000 }).toBe("from-the-page\n");
    // A name is text, never markup; a root file sits level with the root folder, the file under it further in.
    expect(await page.locator("[data-testid=sandbox-files] i").count()).toBe(0);
    const x = async (path: string) => (await entry(path).boundingBox())!.x;
    expect(await x("<i>x<i>")).toBe(await x("sub"));
    expect(await x("sub/f")).toBeGreaterThan(await x("sub"));
    // The command is listed with the sandbox, linked to its task page.
    await expect.poll(() => page.locator("[data-testid=sandbox-commands] tr[data-task] [data-status]").first().getAttribute("data-status"), { timeout: 10_000 }).toBe("succeeded");
    await page.locator("button[data-action=stop]").click();
    await expect.poll(() => page.locator("[data-testid=sandbox-status] [data-status]").getAttribute("data-status"), { timeout: 10_000 }).toBe("stopped");
    expect((await sbx.getInfo()).reason).toBe("deleted");
  });

  it.runIf(process.geteuid?.() === 0)("a terminal task is interactive: keys typed in the page run in the sandbox, a window resize resizes it", async () => {
    const sbx = await user.sandbox.sandboxes.create({ requirements: { kind } });
    try {
      const term = await sbx.pty.create({ cols: 80, rows: 24 });
      await openTask(term.taskId);
      await page.locator("[data-testid=terminal][data-interactive=true]").waitFor({ timeout: 10_000 });
      await waitFor(async () => (await terminalText()).includes("$"), "the shell's prompt", 15_000);
      await page.locator("[data-testid=terminal]").click();
      // The shell computes 42: what comes back is its output, not just the echo of the keys.
      await page.keyboard.type("echo typed-$((6*7))");
      await page.keyboard.press("Enter");
      await waitFor(async () => (await terminalText()).includes("typed-42"), "the command's output", 10_000);
      expect(await page.locator("[data-testid=stdin], input[aria-label=stdin]").count()).toBe(0);
      // A narrower window: the terminal gets the panel's new width.
      await page.setViewportSize({ width: 900, height: 1000 });
      await expect.poll(async () => (await user.sandbox.getTask(term.taskId)).pty?.cols, { timeout: 10_000 }).not.toBe(80);
      await page.keyboard.type("exit 5");
      await page.keyboard.press("Enter");
      expect((await term.wait()).exitCode).toBe(5);
    } finally {
      await page.setViewportSize({ width: 1400, height: 1000 });
      await sbx.kill();
    }
  });

  it("cancels a running task from the UI", async () => {
    let out = "";
    const handle = await user.sandbox.execute({ command: "echo started; sleep 120", requirements: { kind } }, { onStdout: (d) => (out += d) });
    await waitFor(() => out.includes("started"), "the task to start", 15_000);
    await openTask(handle.taskId);
    await waitFor(async () => (await terminalText()).includes("started"), "output in the terminal", 15_000);
    await page.locator("button[data-action=cancel]").click();
    const r = await handle.result();
    expect(r.status).toBe("cancelled");
    await expect.poll(() => page.locator("[data-testid=task-status] [data-status]").getAttribute("data-status"), { timeout: 10_000 }).toBe("cancelled");
    await expect.poll(() => page.locator("button[data-action=cancel]").isDisabled()).toBe(true);
  });

  it("renders progress, diagnostics, test results, resource samples and the block/recovery timeline as events land", async () => {
    const handle = await user.sandbox.execute({ command: "true", requirements: { kind: uniqueKind("nobody") } });
    await openTask(handle.taskId);
    const append = (type: string, data: Record<string, unknown>) => sql`select cogo.append_event_unchecked(${handle.taskId}, ${type}, ${sql.json(data as never)})`;
    await append("progress_update", { percentage: 40, stage: "compiling", message: "step 2 of 5", etaMs: 12_000, source: "plan" });
    await append("diagnostic", {
      tool: "tsc",
      file: "src/a.ts",
      line: 3,
      column: 7,
      severity: "error",
      code: "TS2322",
      message: "Type 'string' is not assignable to type 'number'.",
    });
    await append("test_results", { tool: "vitest", passed: 12, failed: 1, skipped: 2, failures: ["math > adds"] });
    // Shapes as functions/_shared/events.ts defines them (the dashboard reads them through it).
    const sample = (cpu: number, rss: number) => ({
      cpuPercent: cpu,
      cpuMs: 100,
      rssBytes: rss,
      processes: 2,
      threads: 2,
      outputBytes: 0,
      wallMs: 1000,
      memoryLimitBytes: null,
      processLimit: null,
    });
    for (const [cpu, rss] of [
      [5, 10e6],
      [97, 30e6],
      [99, 31e6],
    ] as const)
      await append("resource_sample", sample(cpu, rss));
    await append("block_detected", {
      reason: "infinite_loop",
      durationMs: 4000,
      usage: sample(99, 31e6),
      recoverable: true,
      evidence: { summary: "CPU 99 % for 4 s", lastOutput: [], processes: [] },
      plan: ["retry"],
    });
    await append("recovery_started", { action: "retry", attempt: 1, reason: "infinite_loop" });
    await append("recovery_succeeded", { action: "retry", attempt: 1, reason: "infinite_loop", message: "re-queued" });

    await expect.poll(() => page.locator("[data-testid=progress]").innerText(), { timeout: 10_000 }).toMatch(/compiling[\s\S]*step 2 of 5[\s\S]*40 %[\s\S]*ETA 12\.0 s/);
    await expect.poll(() => page.locator("[data-testid=diagnostics]").innerText()).toMatch(/error[\s\S]*src\/a\.ts:3:7[\s\S]*TS2322/);
    await expect.poll(() => page.locator("[data-testid=test-results]").innerText()).toMatch(/vitest: 12 passed, 1 failed, 2 skipped[\s\S]*math > adds/);
    await expect.poll(() => page.locator("[data-testid=timeline] li[data-kind=block]").innerText()).toMatch(/block detected: infinite_loop[\s\S]*after 4\.0 s[\s\S]*cpu 99 %/);
    await expect.poll(() => page.locator("[data-testid=timeline] li[data-kind=recovered]").innerText()).toMatch(/recovery succeeded: retry \(attempt 1\)/);
    await expect.poll(() => page.locator("[data-testid=task-events] tr[data-type=resource_sample]").count()).toBe(3);
    await page.screenshot({ path: path.join(ARTIFACTS, "task-page-with-contract-events.png"), fullPage: true });
    await handle.cancel();
    // The page-wide event log has the fleet, task and Realtime entries.
    await page.evaluate(() => (location.hash = "#/events"));
    await expect.poll(() => page.locator("[data-testid=event-log]").innerText()).toMatch(/block_detected[\s\S]*realtime[\s\S]*SUBSCRIBED/);
  });

  it("shows a real compiler error, progress and test results the worker found in the output", async () => {
    const handle = await user.sandbox.execute({
      command: "echo '::progress 40 compiling building bad.c'; gcc -c bad.c; echo '::test-results passed=3 failed=1 skipped=0 failures=math > adds'; sleep 60",
      files: [{ path: "bad.c", content: "int main(void) { return x; }\n" }],
      requirements: { kind },
    });
    await openTask(handle.taskId);
    const progress = page.locator("[data-testid=progress]");
    await expect.poll(() => progress.innerText(), { timeout: 20_000 }).toMatch(/compiling[\s\S]*building bad\.c[\s\S]*40 %/);
    await expect
      .poll(() => page.locator("[data-testid=diagnostics] tr[data-severity=error]").first().innerText(), { timeout: 20_000 })
      .toMatch(/error[\s\S]*bad\.c:1:\d+[\s\S]*.x. undeclared[\s\S]*\(gcc\)/);
    await expect.poll(() => page.locator("[data-testid=test-results]").innerText()).toMatch(/3 passed, 1 failed, 0 skipped[\s\S]*math > adds/);
    await page.locator("button[data-action=cancel]").click();
    expect((await handle.result()).status).toBe("cancelled");
    // Ended: the last report stays, without an ETA.
    await expect.poll(() => page.locator("[data-testid=task-status] [data-status]").getAttribute("data-status"), { timeout: 10_000 }).toBe("cancelled");
    expect(await progress.innerText()).toMatch(/40 %/);
    expect(await progress.innerText()).not.toContain("ETA");
  });

  it("shows a real block detected and recovered in the timeline", async () => {
    const spec: ExecuteRequest = {
      command: "echo looping; while :; do :; done",
      requirements: { kind },
      blockDetection: { sampleIntervalMs: 200, infiniteLoopMs: 2000 },
      recovery: { alternativeCommand: "echo recovered" },
    };
    const handle = await user.sandbox.execute(spec);
    await openTask(handle.taskId);
    await expect.poll(() => page.locator("[data-testid=timeline] li[data-kind=block]").innerText(), { timeout: 60_000 }).toMatch(/block detected: infinite_loop/);
    await expect
      .poll(() => page.locator("[data-testid=timeline] li[data-kind=recovered]").last().innerText(), { timeout: 60_000 })
      .toMatch(/recovery succeeded: alternative_command/);
    expect((await handle.result()).status).toBe("succeeded");
    await expect.poll(() => page.locator("[data-testid=task-status] [data-status]").getAttribute("data-status"), { timeout: 10_000 }).toBe("succeeded");
    await page.getByRole("button", { name: "Plain text" }).click();
    await expect.poll(() => page.locator("[data-testid=raw-output]").textContent()).toContain("recovered");
    await page.getByRole("button", { name: "Terminal" }).click();
    // The monitor's resource samples draw the chart.
    expect(await page.locator("[data-testid=task-events] tr[data-type=resource_sample]").count()).toBeGreaterThan(0);
  });

  it("shows a repository analysis: progress, language breakdown, file tree and search", async () => {
    const root = `/var/tmp/cogo-dashboard-test-${process.pid}`;
    const repo = path.join(root, "repo");
    await rm(root, { recursive: true, force: true });
    await mkdir(path.join(repo, "src", "lib"), { recursive: true });
    await writeFile(path.join(repo, "src", "main.ts"), "export function startDashboard(): number {\n  return 1;\n}\n");
    await writeFile(path.join(repo, "src", "lib", "util.py"), "def helper():\n    return 2\n");
    await writeFile(path.join(repo, "README.md"), "# demo\n");
    const git = (...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd: repo });
    git("init", "-q");
    git("add", "-A");
    git("commit", "-qm", "initial");
    const [policy] = await sql<{ localRoots: string[] }[]>`select local_roots from cogo.analysis_policy`;
    await sql`update cogo.analysis_policy set local_roots = ${[root]}`;
    try {
      await startWorker({ kind: "analysis", concurrency: 1 });
      await page.evaluate(() => (location.hash = "#/analyses"));
      // It suggests what this deployment accepts: the local root, then an https URL.
      await expect.poll(() => page.locator("[data-testid=analysis-sources]").innerText(), { timeout: 10_000 }).toContain(`a git repository under ${root}`);
      expect(await page.locator("#analysis-sources option").evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value))).toEqual([
        root,
        "https://github.com/supabase/supabase-js",
      ]);
      await page.locator("input[aria-label='repository source']").fill(repo);
      await page.getByRole("button", { name: "Analyze" }).click();
      await expect.poll(() => page.locator("[data-testid=analysis-status] [data-phase]").getAttribute("data-phase"), { timeout: 120_000 }).toBe("completed");
      await expect.poll(() => page.locator("[data-testid=languages]").innerText(), { timeout: 10_000 }).toMatch(/TypeScript[\s\S]*Python/);
      await expect.poll(() => page.locator("[data-testid=file-tree] [data-file='src/lib/util.py']").count(), { timeout: 10_000 }).toBe(1);
      await page.locator("input[aria-label=search]").fill("startDashboard");
      await page.getByRole("button", { name: "Search" }).click();
      await expect.poll(() => page.locator("[data-testid=search-hits] [data-path='src/main.ts']").count(), { timeout: 10_000 }).toBe(1);
    } finally {
      await sql`update cogo.analysis_policy set local_roots = ${policy!.localRoots}`;
      await rm(root, { recursive: true, force: true });
    }
  });
});
