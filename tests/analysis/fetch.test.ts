// The fetch path of the clone step: an http(s) source served by git's own smart-HTTP backend on
// loopback (allowed here only because the test's policy allows private hosts), fetched at one ref
// inside a sandbox with network.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cloneInSandbox } from "../../worker/analysis/clone.ts";
import { api, newUser, startWorker } from "../helpers/env.ts";
import { git, makeRepo, ROOT, setPolicy, waitForAnalysis } from "./helpers.ts";

/** git http-backend as CGI behind a Node server bound to 127.0.0.1. */
function gitHttpServer(projectRoot: string): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const cgi = spawn("/usr/lib/git-core/git-http-backend", [], {
      env: {
        PATH: "/usr/bin:/bin",
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: "1",
        REQUEST_METHOD: req.method ?? "GET",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
        REMOTE_ADDR: "127.0.0.1",
        GIT_CONFIG_COUNT: "1",
        GIT_CONFIG_KEY_0: "safe.directory",
        GIT_CONFIG_VALUE_0: "*",
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString().split("\r\n")) {
        const [k, ...v] = line.split(":");
        if (k!.toLowerCase() === "status") status = Number.parseInt(v.join(":").trim(), 10);
        else res.setHeader(k!, v.join(":").trim());
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.on("close", () => res.end());
  });
}

describe("analysis of a repository fetched over http", () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    rmSync(ROOT, { recursive: true, force: true });
    makeRepo("served", { "lib/a.py": "def served_function():\n    return 1\n", "README.md": "# served\n" });
    server = gitHttpServer(ROOT).listen(0, "127.0.0.1");
    await once(server, "listening");
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await setPolicy([], true);
    await startWorker({ kind: "analysis", concurrency: 2, allowNetwork: true });
  });
  afterAll(async () => {
    server?.close();
    await setPolicy([]);
    rmSync(ROOT, { recursive: true, force: true });
  });

  it("fetches one ref at depth 1 in the sandbox and analyses it", async () => {
    const user = await newUser();
    const start = await api("POST", "/analyze/repository", { token: user.token, body: { source: `${base}/served/.git` } });
    expect(start.status, JSON.stringify(start.body)).toBe(202);
    const done = await waitForAnalysis(user.token, start.body.analysisId);
    expect(done.commit).toBe(git(`${ROOT}/served`, "rev-parse", "HEAD"));
    expect(done.filesTotal).toBe(2);
    const s = await api("GET", `/analysis/${done.analysisId}/search?q=served_function`, { token: user.token });
    expect(s.body.hits.map((h: any) => h.path)).toEqual(["lib/a.py"]);

    const missing = await api("POST", "/analyze/repository", { token: user.token, body: { source: `${base}/served/.git`, ref: "no-such-branch" } });
    expect(missing.status).toBe(202);
    await expect(waitForAnalysis(user.token, missing.body.analysisId)).rejects.toThrow(/no-such-branch/);
  });

  it("is refused at the API once the operator disallows private hosts", async () => {
    await setPolicy([], false);
    const user = await newUser();
    const r = await api("POST", "/analyze/repository", { token: user.token, body: { source: `${base}/served/.git` } });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/host 127\.0\.0\.1 is in 127\.0\.0\.0\/8 \(loopback\); refused/);
  });

  it("connects git to the address the worker resolved and checked, never asking DNS again", async () => {
    // A name no DNS answers (.invalid): the fetch works only if git uses the pinned address.
    const calls: string[] = [];
    const root = mkdtempSync(path.join(tmpdir(), "cogo-pin-"));
    try {
      const clone = await cloneInSandbox(
        {
          source: `${base.replace("127.0.0.1", "repo.pinned.invalid")}/served/.git`,
          ref: "HEAD",
          known: [],
          maxFileBytes: 1024 * 1024,
          maxTotalBytes: 16 * 1024 * 1024,
          timeoutMs: 30_000,
          policy: { allowPrivateHosts: true, localRoots: [] },
          resolve: async (host) => (calls.push(host), ["127.0.0.1"]),
        },
        { root, allowNetwork: true },
      );
      expect(clone.commit).toBe(git(`${ROOT}/served`, "rev-parse", "HEAD"));
      expect(calls).toEqual(["repo.pinned.invalid"]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
