// One file operation of a live sandbox, run inside it (docs/design/persistent-sandboxes.md §3.6).
// The op is an ordinary command of the sandbox (the `enter` path of worker/sandbox/persistent.ts:
// same uid, seccomp filter, cgroup and mount namespace as the tenant's commands) with a fixed
// argv: python3 running worker/sandbox/fileop.py, which walks every path from /workspace without
// following a symlink. So no new privileged code, and nothing on the host side ever opens a path
// of the workspace. Ops are not tasks: no tasks row, no output rows.
import { readFileSync } from "node:fs";
import { MAX_SANDBOX_FILE_BYTES, type SandboxFileOp, type SandboxOpError } from "../../functions/_shared/sandbox-files.ts";
import type { PersistentSandbox } from "../sandbox/index.ts";

/** The helper's source, passed as `python3 -c` (the sandbox sees the host's /usr, not this repository). */
const FILEOP_SCRIPT = readFileSync(new URL("../sandbox/fileop.py", import.meta.url), "utf8");
const PYTHON = "/usr/bin/python3";
/** An op that takes longer is killed and reported failed. */
const OP_WALL_TIME_MS = 60_000;
/** Room for the outcome line on stderr (and a Python traceback) past the data cap. */
const OUTCOME_ROOM_BYTES = 64 * 1024;

export interface FileOpRequest {
  op: SandboxFileOp;
  /** Relative to /workspace ('' is the workspace itself, for list and tar). */
  path: string;
  args: { recursive?: boolean };
}

export interface FileOpOutcome {
  ok: boolean;
  result: Record<string, unknown> | null;
  error: SandboxOpError | null;
  /** The bytes of a read or a tar download. */
  output: Buffer | null;
}

const failed = (code: string, message: string): FileOpOutcome => ({ ok: false, result: null, error: { code, message }, output: null });

/** Runs `req` inside `live`, with `input` as the helper's stdin (a write's bytes, a tar to extract). */
export async function runFileOp(live: PersistentSandbox, req: FileOpRequest, input: Buffer | null): Promise<FileOpOutcome> {
  const request = JSON.stringify({ op: req.op, path: req.path, recursive: req.args.recursive === true, maxBytes: MAX_SANDBOX_FILE_BYTES });
  const proc = await live.exec({
    command: [PYTHON, "-I", "-S", "-c", FILEOP_SCRIPT, request],
    stdin: input ? "pipe" : "closed",
    leftovers: "kill",
    limits: { wallTimeMs: OP_WALL_TIME_MS, outputBytes: MAX_SANDBOX_FILE_BYTES + OUTCOME_ROOM_BYTES },
    onOutputLimit: "stop",
  });
  const out: Buffer[] = [];
  let outBytes = 0;
  let err = "";
  proc.stdout.on("data", (c: Buffer) => {
    out.push(c);
    outBytes += c.length;
  });
  proc.stderr.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-OUTCOME_ROOM_BYTES)));
  if (input && proc.stdin) proc.stdin.end(input);
  const exit = await proc.exited;
  await proc.cleanup().catch(() => {});
  if (exit.reason === "output_limit" || outBytes > MAX_SANDBOX_FILE_BYTES) {
    return failed("too_large", `${req.path || "."}: more than ${MAX_SANDBOX_FILE_BYTES} bytes, the cap of one download`);
  }
  const last = err.trimEnd().split("\n").pop() ?? "";
  let outcome: { ok?: unknown; code?: unknown; message?: unknown } & Record<string, unknown>;
  try {
    outcome = JSON.parse(last);
  } catch {
    const why = exit.reason === "exited" ? `exit ${exit.exitCode ?? exit.signal}` : exit.reason;
    return failed("op_failed", `the file operation ended without an outcome (${why}): ${err.slice(-500).trim()}`);
  }
  if (outcome.ok !== true) return failed(String(outcome.code ?? "op_failed"), String(outcome.message ?? "the file operation failed"));
  const { ok: _ok, ...result } = outcome;
  return { ok: true, result, error: null, output: req.op === "read" || req.op === "tar_get" ? Buffer.concat(out) : null };
}
