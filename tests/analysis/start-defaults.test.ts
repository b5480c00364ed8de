// Repository analysis with what `npm start` sets up (scripts/start-analysis.ts): the directory it
// runs in is a local root, so a git repository under it is analysable; one outside it, or a
// symlink leading out, is refused with a message naming the allowed root. The dashboard reads the
// roots through GET /analysis/sources to suggest them.
import { mkdirSync, rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyAnalysisRoots, startAnalysisRoots } from "../../scripts/start-analysis.ts";
import { api, newUser, sql, startWorker } from "../helpers/env.ts";
import { makeRepo, ROOT, setPolicy, waitForAnalysis } from "./helpers.ts";

/** Where the user ran `npm start` (npm's INIT_CWD). */
const cwd = path.join(ROOT, "home");

describe("analysis with npm start's defaults", () => {
  let user: Awaited<ReturnType<typeof newUser>>;
  let inside: string;
  let outside: string;
  beforeAll(async () => {
    rmSync(ROOT, { recursive: true, force: true });
    inside = makeRepo("home/project", { "src/app.ts": "export function startedHere(): number {\n  return 1;\n}\n" });
    outside = makeRepo("elsewhere", { "a.py": "def outside():\n    return 2\n" });
    symlinkSync(outside, path.join(cwd, "link-out"));
    mkdirSync(path.join(cwd, "plain"));
    await applyAnalysisRoots(sql, startAnalysisRoots(undefined, cwd));
    // As npm start runs it: kind analysis, with the network (https sources).
    await startWorker({ kind: "analysis", concurrency: 2, allowNetwork: true });
    user = await newUser();
  });
  afterAll(async () => {
    await setPolicy([]);
    rmSync(ROOT, { recursive: true, force: true });
  });

  it("lists the root for clients and analyses a repository under it, as a path and as file://", async () => {
    const sources = await api("GET", "/analysis/sources", { token: user.token });
    expect(sources.status).toBe(200);
    expect(sources.body).toEqual({ localRoots: [cwd], allowPrivateHosts: false });

    const start = await api("POST", "/analyze/repository", { token: user.token, body: { source: inside } });
    expect(start.status, JSON.stringify(start.body)).toBe(202);
    const done = await waitForAnalysis(user.token, start.body.analysisId);
    expect(done.filesTotal).toBe(1);
    const hits = await api("GET", `/analysis/${done.analysisId}/search?q=startedHere`, { token: user.token });
    expect(hits.body.hits.map((h: { path: string }) => h.path)).toEqual(["src/app.ts"]);

    const asUrl = await api("POST", "/analyze/repository", { token: user.token, body: { source: `file://${inside}` } });
    expect(asUrl.status, JSON.stringify(asUrl.body)).toBe(202);
  }, 60_000);

  it("refuses a repository outside the root, a symlink out of it, and a directory that is no repository, saying why", async () => {
    const refused = async (source: string) => {
      const r = await api("POST", "/analyze/repository", { token: user.token, body: { source } });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      return r.body.error.message as string;
    };
    expect(await refused(outside)).toBe(`source: ${outside} is outside the directories the deployment allows (${cwd})`);
    expect(await refused(path.join(cwd, "link-out"))).toBe(`source: ${path.join(cwd, "link-out")} resolves to ${outside}, outside the allowed directories`);
    expect(await refused(path.join(cwd, "plain"))).toMatch(/is not a git repository \(no \.git; run git init and commit/);
  });
});
