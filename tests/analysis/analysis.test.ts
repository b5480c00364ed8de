// Repository analysis end to end: a multi-language repository made here and a real package tree
// from node_modules, cloned in the sandbox, parsed in batches by two workers, searched; counts
// checked against cloc; re-analysis after one change parses exactly one file.
import { cpSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { api, newUser, sql, startWorker } from "../helpers/env.ts";
import { clocByFile, git, makeRepo, ROOT, setPolicy, waitForAnalysis, writeFiles } from "./helpers.ts";

const FILES: Record<string, string> = {
  "src/index.ts": `// Entry point
import { helper } from "./util";
import type { Shape } from "./types.js";
export * from "./types";

/**
 * Creates the client.
 */
export function createSandboxClient(name: string): Shape {
  return { name: helper(name) };
}

export class SandboxRunner {
  run(): void {}
  /* inline */ stop(): void {}
}

const privateValue = "http://not-a-comment";
export const arrow = (x: number) => x * 2;
`,
  "src/util.ts": `export function helper(s: string): string {
  return s.trim(); // trailing comment
}
`,
  "src/types.ts": `export interface Shape { name: string }
export type Id = string;
export enum Color { Red, Green }
`,
  "web/app.js": `const fs = require("fs");
import("./lazy.js");
/* a block
   comment */
function main() { return fs; }
module.exports = { main };
`,
  "web/lazy.js": "export default 1;\n",
  "py/pkg/__init__.py": "",
  "py/pkg/core.py": `"""Module docstring."""
import os
from .helpers import assist


class Engine:
    """An engine."""

    def start(self):
        # comment line
        return assist(os.getcwd())


def build_engine():
    return Engine()
`,
  "py/pkg/helpers.py": "def assist(x):\n    return x\n",
  "go/main.go": `package main

import (
	"fmt"
)

// Server serves.
type Server struct{}

type Handler interface{}

func (s *Server) Serve() {}

func main() {
	fmt.Println("hi")
}
`,
  "rust/src/lib.rs": `use std::fmt;
mod util;

/// A thing.
pub struct Thing;

pub trait Named { fn name(&self) -> String; }

impl Thing {
    pub fn new() -> Self { Thing }
}

fn hidden() {}
`,
  "rust/src/util.rs": "pub fn util() {}\n",
  "java/com/example/App.java": `package com.example;

import java.util.List;

public class App {
    public App() {}
    // greet
    public String greet() { return "hi"; }
}
`,
  "c/main.c": `#include <stdio.h>
#include "util.h"

/* entry */
int main(void) {
    return util();
}

static int helper(void) { return 0; }
`,
  "c/util.h": "int util(void);\nstruct Point { int x; int y; };\n",
  "cpp/widget.cpp": `#include <vector>

namespace ui {
class Widget {
 public:
  int size() { return 1; }
};
}

int render() { return 0; }
`,
  "dart/lib/app.dart": `import 'package:app/src/model.dart';

class AppState {
  void refresh() {}
}

int compute() => 42;
`,
  "dart/lib/src/model.dart": "class Model {}\n",
  "README.md": "# Demo\n\nSome text.\n\n<!-- a comment -->\n",
  "config.json": '{\n  "a": 1\n}\n',
};

const symbolsOf = async (token: string, id: string, file: string) => {
  const r = await api("GET", `/analysis/${id}/results?section=symbols&path=${encodeURIComponent(file)}&limit=1000`, { token });
  expect(r.status).toBe(200);
  return (r.body.symbols as { name: string; kind: string; parent: string | null; exported: boolean }[])
    .map((s) => `${s.kind} ${s.parent ? s.parent + "." : ""}${s.name}${s.exported ? " +" : ""}`)
    .sort();
};

describe("repository analysis", () => {
  let user: Awaited<ReturnType<typeof newUser>>;
  let repo: string;
  let first: any;
  const workerIds: string[] = [];

  beforeAll(async () => {
    rmSync(ROOT, { recursive: true, force: true });
    repo = makeRepo("multi", FILES);
    // Things the analysis must not follow or read as text.
    symlinkSync("/etc/passwd", path.join(repo, "leak"));
    writeFileSync(path.join(repo, "image.bin"), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3]));
    git(repo, "add", "-A");
    git(repo, "commit", "-qm", "extras");
    await setPolicy([ROOT]);
    user = await newUser();
    for (let i = 0; i < 2; i++) workerIds.push((await startWorker({ kind: "analysis", concurrency: 1, name: `analysis-${i}` })).workerId!);
  });
  afterAll(async () => {
    await setPolicy([]);
    rmSync(ROOT, { recursive: true, force: true });
  });

  it("analyses a multi-language repository in parallel batches with live progress", async () => {
    const events: any[] = [];
    const start = await api("POST", "/analyze/repository", { token: user.token, body: { source: repo, options: { batchFiles: 2 } } });
    expect(start.status, JSON.stringify(start.body)).toBe(202);
    const id = start.body.analysisId as string;
    const channel = user.supabase.channel(start.body.topic, { config: { private: true } }).on("broadcast", { event: "progress_update" }, (m) => events.push(m.payload));
    await new Promise<void>((resolve, reject) => channel.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : s === "CHANNEL_ERROR" ? reject(err) : undefined)));
    first = await waitForAnalysis(user.token, id);
    expect(first.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(first.filesTotal).toBe(Object.keys(FILES).length + 1); // + image.bin; the symlink is skipped
    expect(first.filesSkipped).toBe(1);
    expect(first.percentage).toBe(100);

    // Every blob in exactly one batch, every batch done once, by the two analysis workers. Which
    // of them does how many is scheduling: on a starved machine one can take all of the ~1 s of
    // work before the other's wake-up runs (seen in 3 of 8 runs at load 5–7), so it is not asserted.
    const batches = await sql<{ batch: number; blobs: number; doneBy: string | null }[]>`
      select batch, blobs, done_by from public.analysis_batches where analysis_id = ${id} order by batch`;
    expect(batches.length).toBe(first.batches.total);
    expect(batches.length).toBeGreaterThanOrEqual(9);
    expect(batches.every((b) => b.doneBy !== null)).toBe(true);
    for (const b of batches) expect(workerIds).toContain(b.doneBy);
    const [cover] = await sql<{ files: number; inBatch: number; distinctBlobs: number; batchBlobs: number }[]>`
      select count(*)::int as files, count(batch)::int as in_batch,
             count(distinct (hash, language))::int as distinct_blobs,
             (select sum(blobs)::int from public.analysis_batches where analysis_id = ${id}) as batch_blobs
        from public.analysis_files where analysis_id = ${id}`;
    expect(cover!.inBatch).toBe(cover!.files);
    expect(cover!.batchBlobs).toBe(cover!.distinctBlobs);

    await new Promise((r) => setTimeout(r, 300));
    expect(events.length).toBeGreaterThan(2);
    expect(events.every((e) => e.stage === "analyzing" && e.analysisId === id)).toBe(true);
    expect(events.at(-1)).toMatchObject({ phase: "completed", percentage: 100 });
    await user.supabase.removeChannel(channel);

    // The topic is private to the analysis's owner.
    const stranger = await newUser();
    const denied = stranger.supabase.channel(start.body.topic, { config: { private: true } });
    await expect(
      new Promise<void>((resolve, reject) => denied.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : s === "CHANNEL_ERROR" ? reject(err) : undefined))),
    ).rejects.toThrow(/Unauthorized/);
    await stranger.supabase.removeChannel(denied);
    expect((await api("GET", `/analysis/${id}/status`, { token: stranger.token })).status).toBe(404);
  });

  it("extracts known symbols exactly, per language", async () => {
    const id = first.analysisId;
    expect(await symbolsOf(user.token, id, "src/index.ts")).toEqual(
      ["class SandboxRunner +", "function arrow +", "function createSandboxClient +", "method SandboxRunner.run", "method SandboxRunner.stop", "variable privateValue"].sort(),
    );
    expect(await symbolsOf(user.token, id, "web/app.js")).toEqual(["function main", "variable fs"]);
    expect(await symbolsOf(user.token, id, "src/types.ts")).toEqual(["enum Color +", "interface Shape +", "type Id +"]);
    expect(await symbolsOf(user.token, id, "py/pkg/core.py")).toEqual(["class Engine +", "function build_engine +", "method Engine.start"]);
    expect(await symbolsOf(user.token, id, "go/main.go")).toEqual(["function main", "interface Handler +", "method Server.Serve +", "struct Server +"]);
    expect(await symbolsOf(user.token, id, "rust/src/lib.rs")).toEqual([
      "function hidden",
      "method Named.name",
      "method Thing.new +",
      "module util",
      "struct Thing +",
      "trait Named +",
    ]);
    expect(await symbolsOf(user.token, id, "java/com/example/App.java")).toEqual(["class App +", "method App.App +", "method App.greet +"]);
    expect(await symbolsOf(user.token, id, "c/main.c")).toEqual(["function helper", "function main +"]);
    expect(await symbolsOf(user.token, id, "cpp/widget.cpp")).toEqual(["class Widget +", "function render +", "method Widget.size +", "module ui +"]);
    expect(await symbolsOf(user.token, id, "dart/lib/app.dart")).toEqual(["class AppState +", "function compute +", "method AppState.refresh +"]);
  });

  it("resolves the import graph inside the repository", async () => {
    const r = await api("GET", `/analysis/${first.analysisId}/results?section=imports&limit=1000`, { token: user.token });
    expect(r.status).toBe(200);
    const edges = Object.fromEntries((r.body.imports as any[]).map((i) => [`${i.path} ${i.specifier}`, i.resolvedPath]));
    expect(edges).toMatchObject({
      "src/index.ts ./util": "src/util.ts",
      "src/index.ts ./types.js": "src/types.ts",
      "src/index.ts ./types": "src/types.ts",
      "web/app.js fs": null,
      "web/app.js ./lazy.js": "web/lazy.js",
      "py/pkg/core.py .helpers": "py/pkg/helpers.py",
      "py/pkg/core.py os": null,
      "c/main.c util.h": "c/util.h",
      "c/main.c stdio.h": null,
      "rust/src/lib.rs std::fmt": null,
      "dart/lib/app.dart package:app/src/model.dart": "dart/lib/src/model.dart",
    });
    expect(r.body.summary.imports.resolved).toBeGreaterThanOrEqual(6);
  });

  it("counts lines within 2 % of cloc for every language, and totals by language and directory", async () => {
    const r = await api("GET", `/analysis/${first.analysisId}/results?limit=1000`, { token: user.token });
    expect(r.status).toBe(200);
    const ours = Object.fromEntries((r.body.files as any[]).map((f) => [f.path, f]));
    const cloc = clocByFile(repo, Object.keys(FILES));
    expect(Object.keys(cloc).length).toBeGreaterThanOrEqual(10);
    for (const [language, files] of Object.entries(cloc)) {
      for (const key of ["code", "comment", "blank"] as const) {
        const theirs = Object.values(files).reduce((n, f) => n + f[key], 0);
        const mine = Object.keys(files).reduce((n, p) => n + (ours[p]?.[key] ?? 0), 0);
        expect(Math.abs(mine - theirs), `${language} ${key}: ours ${mine}, cloc ${theirs}`).toBeLessThanOrEqual(Math.ceil(theirs * 0.02));
      }
    }
    for (const f of Object.values(ours) as any[]) {
      expect(f.parseError, f.path).toBeNull();
      if (["TypeScript", "JavaScript", "Python", "Go", "Rust", "Java", "C", "C++", "Dart"].includes(f.language)) expect(f.parser, f.path).toMatch(/^ast-grep:/);
    }
    const ts = (r.body.summary.languages as any[]).find((l) => l.language === "TypeScript");
    expect(ts).toMatchObject({ files: 3 });
    expect((r.body.summary.directories as any[]).map((d) => d.directory)).toEqual(expect.arrayContaining([".", "src", "py", "go", "rust"]));
    expect(ours["image.bin"]).toMatchObject({ binary: true, code: null });
  });

  it("searches contents and symbols, ranked, with snippets", async () => {
    const r = await api("GET", `/analysis/${first.analysisId}/search?q=createSandboxClient`, { token: user.token });
    expect(r.status).toBe(200);
    expect(r.body.hits[0].path).toBe("src/index.ts");
    expect(r.body.hits[0].snippet).toContain("«createSandboxClient»");
    expect(r.body.hits[0].symbols.map((s: any) => s.name)).toEqual(["createSandboxClient"]);
    const none = await api("GET", `/analysis/${first.analysisId}/search?q=nothingcallsthisanywhere`, { token: user.token });
    expect(none.body.hits).toEqual([]);
    const other = await newUser();
    expect((await api("GET", `/analysis/${first.analysisId}/search?q=x`, { token: other.token })).status).toBe(404);
  });

  it("writes no blob or result for a task whose lease is over", async () => {
    const [clone] = await sql<{ id: string; attempt: number; workerId: string; repoId: string }[]>`
      select t.id, t.attempt, t.worker_id, a.repo_id from public.analyses a join public.tasks t on t.id = a.clone_task_id where a.id = ${first.analysisId}`;
    await expect(sql`select cogo.store_analysis_blobs(${clone!.id}, ${clone!.attempt}, ${clone!.workerId}, ${clone!.repoId},
      ${["0".repeat(40)]}::text[], ${["Text"]}::text[], ${[1]}::bigint[], ${["f"]}::text[]::boolean[], ${["x"]}::text[])`).rejects.toMatchObject({ code: "CG409" });
    const [batch] = await sql<{ id: string; attempt: number; workerId: string }[]>`
      select t.id, t.attempt, t.worker_id from public.analysis_batches b join public.tasks t on t.id = b.task_id where b.analysis_id = ${first.analysisId} limit 1`;
    await expect(sql`select cogo.store_analysis_batch_results(${batch!.id}, ${batch!.attempt}, ${batch!.workerId}, '[]'::jsonb)`).rejects.toMatchObject({ code: "CG409" });
    const [stray] = await sql<{ n: number }[]>`select count(*)::int as n from public.analysis_blobs where hash = ${"0".repeat(40)}`;
    expect(stray!.n).toBe(0);
  });

  it("re-analysis after a one-file change parses exactly that file and reports the change", async () => {
    writeFiles(repo, { "src/util.ts": "export function helper(s: string): string {\n  return s.toUpperCase();\n}\nexport function added() {}\n" });
    git(repo, "commit", "-qam", "change util");
    const start = await api("POST", "/analyze/repository", { token: user.token, body: { source: repo, options: { batchFiles: 2 } } });
    expect(start.status).toBe(202);
    const second = await waitForAnalysis(user.token, start.body.analysisId);
    expect(second.blobsToParse).toBe(1);
    expect(second.batches.total).toBe(1);
    expect(second.filesReused).toBe(second.filesTotal - 1);
    expect(second.changes).toMatchObject({ previousAnalysisId: first.analysisId, modified: ["src/util.ts"], added: [], deleted: [] });
    expect(await symbolsOf(user.token, second.analysisId, "src/util.ts")).toEqual(["function added +", "function helper +"]);
    const s = await api("GET", `/analysis/${second.analysisId}/search?q=createSandboxClient`, { token: user.token });
    expect(s.body.hits[0].path).toBe("src/index.ts");

    // Same ref again: nothing to parse at all.
    const third = await api("POST", "/analyze/repository", { token: user.token, body: { source: repo } });
    const done = await waitForAnalysis(user.token, third.body.analysisId);
    expect(done).toMatchObject({ blobsToParse: 0, batches: { total: 0 } });
    expect(done.changes.counts).toEqual({ unchanged: done.filesTotal });
  });

  it("analyses a real package tree from node_modules, matching cloc per language", async () => {
    const dir = path.join(ROOT, "realtime-js");
    cpSync(path.join(PROJECT_ROOT, "node_modules/@supabase/realtime-js"), dir, { recursive: true });
    git(dir, "init", "-q");
    git(dir, "add", "-A");
    git(dir, "commit", "-qm", "package");
    const listed = git(dir, "ls-files").split("\n");
    const start = await api("POST", "/analyze/repository", { token: user.token, body: { source: `file://${dir}`, exclude: ["*.map"] } });
    expect(start.status, JSON.stringify(start.body)).toBe(202);
    const a = await waitForAnalysis(user.token, start.body.analysisId);
    expect(a.filesTotal).toBe(listed.filter((p) => !p.endsWith(".map")).length);
    const r = await api("GET", `/analysis/${a.analysisId}/results?limit=1000`, { token: user.token });
    const ours = Object.fromEntries((r.body.files as any[]).map((f) => [f.path, f]));
    const cloc = clocByFile(
      dir,
      listed.filter((p) => !p.endsWith(".map")),
    );
    expect(Object.keys(cloc)).toEqual(expect.arrayContaining(["TypeScript", "JavaScript"]));
    for (const [language, files] of Object.entries(cloc)) {
      for (const key of ["code", "comment", "blank"] as const) {
        const theirs = Object.values(files).reduce((n, f) => n + f[key], 0);
        const mine = Object.keys(files).reduce((n, p) => n + (ours[p]?.[key] ?? 0), 0);
        expect(Math.abs(mine - theirs), `${language} ${key}: ours ${mine}, cloc ${theirs}`).toBeLessThanOrEqual(Math.ceil(theirs * 0.02));
      }
    }
    expect((r.body.files as any[]).filter((f) => f.parseError !== null)).toEqual([]);
    const sym = await api("GET", `/analysis/${a.analysisId}/results?section=symbols&name=RealtimeClient&kind=class`, { token: user.token });
    expect(sym.body.symbols.map((s: any) => s.path)).toContain("src/RealtimeClient.ts");
  });

  it("refuses bad sources with a clear 4xx, and writes nothing", async () => {
    const [before] = await sql<{ n: number }[]>`select count(*)::int as n from public.analyses`;
    const notRepo = path.join(ROOT, "plain-dir");
    writeFiles(notRepo, { "a.txt": "x\n" });
    const cases: [unknown, number, RegExp][] = [
      [{ source: "ssh://git@github.com/a/b.git" }, 400, /scheme ssh/],
      [{ source: "git@github.com:a/b.git" }, 400, /scp-style/],
      [{ source: "http://169.254.169.254/latest/meta-data" }, 400, /169\.254\.0\.0\/16 \(link-local\); refused/],
      [{ source: "https://127.0.0.1/repo.git" }, 400, /loopback/],
      [{ source: "https://10.1.2.3/repo.git" }, 400, /private/],
      [{ source: "https://localhost/repo.git" }, 400, /loopback/],
      [{ source: "/etc" }, 400, /outside the directories/],
      [{ source: `${ROOT}/../../etc` }, 400, /outside the directories/],
      [{ source: notRepo }, 400, /not a git repository/],
      [{ source: path.join(ROOT, "missing") }, 400, /does not exist/],
      [{ source: "relative/path" }, 400, /neither an https URL nor an absolute path/],
      [{ source: repo, ref: "--upload-pack=evil" }, 400, /ref/],
      [{ source: repo, include: "src" }, 400, /include/],
      [{ source: repo, options: { maxFiles: 0 } }, 400, /options.maxFiles/],
    ];
    for (const [body, status, message] of cases) {
      const r = await api("POST", "/analyze/repository", { token: user.token, body });
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(r.body.error.message, JSON.stringify(body)).toMatch(message);
    }
    // A symlink inside an allowed root that points out of it is refused too.
    symlinkSync("/usr", path.join(ROOT, "escape"));
    const esc = await api("POST", "/analyze/repository", { token: user.token, body: { source: path.join(ROOT, "escape") } });
    expect(esc.status).toBe(400);
    expect(esc.body.error.message).toMatch(/outside the allowed directories/);
    const [after] = await sql<{ n: number }[]>`select count(*)::int as n from public.analyses`;
    expect(after!.n).toBe(before!.n);
    expect((await api("GET", "/analysis/not-a-uuid/status", { token: user.token })).status).toBe(400);
  });
});
