// A plan workspace (files API) as the source: analysed from the database, and re-analysed after a
// change through the files API parsing only the changed file.
import { beforeAll, describe, expect, it } from "vitest";
import { api, newUser, sql, startWorker } from "../helpers/env.ts";
import { waitForAnalysis } from "./helpers.ts";

describe("analysis of a files-API workspace", () => {
  beforeAll(async () => {
    await startWorker({ kind: "analysis", concurrency: 2 });
  });

  it("analyses the workspace, then only the file changed through the files API", async () => {
    const user = await newUser();
    const [ws] = await sql<{ id: string }[]>`insert into public.workspaces (owner) values (${user.id}) returning id`;
    const write = (files: { path: string; content: string }[]) => api("POST", "/files", { token: user.token, body: { workspaceId: ws!.id, files } });
    expect(
      (
        await write([
          { path: "app/main.py", content: "from app.util import helper\n\ndef main():\n    return helper()\n" },
          { path: "app/util.py", content: "def helper():\n    return 1\n" },
          { path: "README.md", content: "# ws\n" },
        ])
      ).status,
    ).toBe(200);

    const first = await api("POST", "/analyze/repository", { token: user.token, body: { source: `workspace:${ws!.id}` } });
    expect(first.status, JSON.stringify(first.body)).toBe(202);
    const a = await waitForAnalysis(user.token, first.body.analysisId);
    expect(a).toMatchObject({ filesTotal: 3, blobsToParse: 3 });
    expect(a.commit).toMatch(/^workspace revision \d+$/);
    const imports = await api("GET", `/analysis/${a.analysisId}/results?section=imports`, { token: user.token });
    expect(imports.body.imports).toEqual([expect.objectContaining({ path: "app/main.py", specifier: "app.util", resolvedPath: "app/util.py" })]);

    expect((await write([{ path: "app/util.py", content: "def helper():\n    return 2\n\ndef extra():\n    pass\n" }])).status).toBe(200);
    const second = await api("POST", "/analyze/repository", { token: user.token, body: { source: `workspace:${ws!.id}` } });
    const b = await waitForAnalysis(user.token, second.body.analysisId);
    expect(b).toMatchObject({ blobsToParse: 1, filesReused: 2 });
    expect(b.changes).toMatchObject({ modified: ["app/util.py"], added: [], deleted: [] });
    const syms = await api("GET", `/analysis/${b.analysisId}/results?section=symbols&path=app/util.py`, { token: user.token });
    expect(syms.body.symbols.map((s: any) => s.name)).toEqual(["helper", "extra"]);

    const stranger = await newUser();
    const refused = await api("POST", "/analyze/repository", { token: stranger.token, body: { source: `workspace:${ws!.id}` } });
    expect(refused.status).toBe(404);
    expect(refused.body.error.message).toMatch(/no workspace/);
  });

  it("works through the SDK: progress over Realtime, wait, results, search", async () => {
    const user = await newUser();
    const [ws] = await sql<{ id: string }[]>`insert into public.workspaces (owner) values (${user.id}) returning id`;
    await user.sandbox.writeFiles({ workspaceId: ws!.id, files: [{ path: "src/lib.rs", content: "pub fn sdk_entry() {}\nstruct Hidden;\n" }] });
    const progress: unknown[] = [];
    const run = await user.sandbox.analyzeRepository({ source: `workspace:${ws!.id}` }, (p) => progress.push(p));
    const done = await run.wait(100);
    expect(done).toMatchObject({ phase: "completed", filesTotal: 1, percentage: 100 });
    const results = await user.sandbox.analysisResults(run.analysisId, { section: "symbols" });
    expect((results.symbols as { name: string }[]).map((s) => s.name)).toEqual(["sdk_entry", "Hidden"]);
    const found = await user.sandbox.searchAnalysis(run.analysisId, "sdk_entry");
    expect(found.hits.map((h) => h.path)).toEqual(["src/lib.rs"]);
    await expect(user.sandbox.analyzeRepository({ source: "ssh://example.com/x" })).rejects.toThrow(/scheme ssh/);
  });
});
