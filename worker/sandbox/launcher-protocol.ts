/**
 * The protocol between a worker (launcher.ts) and its fork server (launcher.py), defined once.
 *
 * Framing: one JSON object per line, UTF-8, in both directions; a frame is at most
 * `MAX_FRAME_BYTES` including its newline. The worker writes `id` first in every request, so the
 * launcher can still answer a request it cannot parse or that is too large.
 *
 * The launcher starts by announcing itself (`hello`: protocol version and capabilities); the
 * worker refuses a launcher of another version. Every request then gets exactly one reply with
 * its `id`: its result, or an `error` naming what was wrong with that request; nothing a request
 * carries can end the launcher or touch another request's sandbox. `exit` events come unasked,
 * once per started process (`task` is the id of its `start` or `enter`). An `error` with `id: null`
 * answers a frame without a readable id.
 *
 * Protocol 3 adds persistent sandboxes: `start` with `persistent`, `pin` (its PID 1 and
 * namespaces), `enter` (a command run inside it from outside), and `kill` of an `enter` id
 * (that command's cgroup leaf only). Protocol 4 adds terminals: `enter` with `pty` (a pty of the
 * sandbox's own devpts on the command's stdio, relayed by its helper) and `resize`. Protocol 5
 * adds `pin.prepare` (a spare that is the sandbox user already, its command process waiting).
 *
 * launcher.py reads the same schemas from launcher-protocol.json, generated from this module
 * (`npx tsx worker/sandbox/launcher-protocol.ts` rewrites it; tests/sandbox/launcher-protocol.test.ts
 * fails when it is stale) and checks every request against them before acting on it.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** Bump on any change a launcher of the previous version would not understand. */
export const PROTOCOL_VERSION = 5;
/** Largest frame (a line, newline included) either side accepts. A start request is a few KiB. */
export const MAX_FRAME_BYTES = 1 << 20;

export const PROTOCOL_FILE = fileURLToPath(new URL('./launcher-protocol.json', import.meta.url));

const id = z.int().positive();
const fd = z
  .int()
  .min(0)
  .max(1 << 20);
/** No NUL: the launcher hands these to C (execve, mount). */
const cString = z.string().regex(/^[^\0]*$/);
const absolutePath = z.string().regex(/^\/[^\0]*$/);
/** A namespace's inode number (as bwrap's --json-status-fd reports it). */
const inode = z.int().positive();
/** A terminal's size in characters (struct winsize; the API allows 1..1000). */
const ptySize = z.strictObject({ cols: z.int().min(1).max(1000), rows: z.int().min(1).max(1000) });

export const RLIMIT_NAMES = ['RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_CORE', 'RLIMIT_AS', 'RLIMIT_DATA', 'RLIMIT_STACK', 'RLIMIT_MEMLOCK'] as const;
export type RlimitName = (typeof RLIMIT_NAMES)[number];

const cgroupRequest = z.strictObject({
  /** Parent directory per controller (one shared by all under v2). */
  parents: z.record(z.string(), absolutePath),
  prefix: z.string().regex(/^[\w.-]+$/),
  sparePrefix: z.string().regex(/^[\w.-]+$/),
  rename: z.boolean(),
  /** Limit files (e.g. `memory.max`) and their values. */
  limits: z.record(z.string().regex(/^[\w]+\.[\w.]+$/), z.int().min(0)),
  /** Limit files that may be absent (e.g. swap without swap accounting). */
  optional: z.array(z.string()),
});

const rlimits = z.array(z.tuple([z.enum(RLIMIT_NAMES), z.int().min(0), z.int().min(0)]));

export const requests = {
  /** Start a process (bwrap) in a fresh session; reply `started`, later an `exit` event. */
  start: z.strictObject({
    id,
    op: z.literal('start'),
    path: absolutePath,
    argv: z.array(cString).min(1),
    env: z.record(z.string().regex(/^[^\0=]+$/), cString),
    uid: z.int().min(0).nullable(),
    gid: z.int().min(0).nullable(),
    rlimits,
    cgroup: cgroupRequest.nullable(),
    stdin: z.boolean(),
    /** Memory files at these descriptors (>= 4) of the child. */
    fds: z.array(z.strictObject({ fd: fd.min(4), data: z.string() })),
    /** Descriptors of the child for the seccomp programs, one per program. */
    filterFds: z.array(fd.min(4)),
    /**
     * A persistent sandbox (needs `cgroup`): its cgroup holds the limits of the whole sandbox,
     * bwrap runs in its `init/` leaf, and commands get leaves of their own (`enter`).
     */
    persistent: z.boolean().optional(),
  }),
  /**
   * Checks that `pid` is the PID 1 of the persistent sandbox `task` (a child of its bwrap, alive,
   * each namespace with the inode bwrap reported) and keeps its namespaces for `enter`. Reply `ok`.
   */
  pin: z.strictObject({
    id,
    op: z.literal('pin'),
    task: id,
    pid: z.int().positive(),
    namespaces: z.strictObject({ mnt: inode, pid: inode, net: inode, ipc: inode, uts: inode, cgroup: inode }),
    /**
     * What its commands will most likely ask (each `enter` then updates it): the sandbox's spare
     * helper becomes that user with those rlimits, and forks the next command's process into the
     * sandbox, before any command comes. An `enter` asking for other ids or rlimits is served
     * the slower way. Protocol 5.
     */
    prepare: z.strictObject({ uid: z.int().min(0), gid: z.int().min(0), rlimits }).optional(),
  }),
  /**
   * Runs `argv` inside the pinned persistent sandbox `sandbox` as `uid`/`gid` (ids inside it), in
   * `cwd` (resolved inside), in a new cgroup leaf under the sandbox's cgroup: `cgroup.name`, or,
   * when the sandbox's spare helper serves the command (already joined to a leaf of its own), that
   * leaf, named `cmd-…` by the launcher. Reply `started` (`cgroups`: the leaf the command is in),
   * later an `exit` event with this id.
   */
  enter: z.strictObject({
    id,
    op: z.literal('enter'),
    sandbox: id,
    argv: z.array(cString).min(1),
    env: z.record(z.string().regex(/^[^\0=]+$/), cString),
    cwd: absolutePath,
    uid: z.int().min(0),
    gid: z.int().min(0),
    rlimits,
    stdin: z.boolean(),
    cgroup: z.strictObject({ name: z.string().regex(/^cmd-[\w.-]+$/) }).nullable(),
    /**
     * A terminal of this size on the command's stdin, stdout and stderr (its controlling terminal):
     * a pty of the sandbox's own devpts, opened by the helper as the sandbox user; the helper
     * relays it to the pipes (output on `stdout`). Needs `stdin`.
     */
    pty: ptySize.nullable().optional(),
  }),
  /** New size of the terminal of the running command `task` (entered with `pty`). Reply `ok`. */
  resize: z.strictObject({ id, op: z.literal('resize'), task: id, cols: ptySize.shape.cols, rows: ptySize.shape.rows }),
  /** The worker has opened its copies of `task`'s pipes: the launcher closes its own. Reply `ok`. */
  opened: z.strictObject({ id, op: z.literal('opened'), task: id }),
  /**
   * SIGKILL `task`'s process group (and `inner`) unless it was already reaped; for an `enter` id
   * also every process of its cgroup leaf (never the rest of the sandbox). Reply `ok`.
   */
  kill: z.strictObject({ id, op: z.literal('kill'), task: id, inner: z.int().positive().nullable() }),
  /** Mount a tmpfs (nosuid, nodev) on `target`. Reply `ok`. */
  mount: z.strictObject({ id, op: z.literal('mount'), target: absolutePath, options: cString }),
  /** Unmount `target`, detaching it if busy. Reply `ok`. */
  umount: z.strictObject({ id, op: z.literal('umount'), target: absolutePath }),
  /** The seccomp filter built at start. Reply `filter`. */
  filter: z.strictObject({ id, op: z.literal('filter') }),
} as const;

export type Op = keyof typeof requests;
export type Request<O extends Op> = z.input<(typeof requests)[O]>;
/** A request's fields other than `id` and `op`, which the client adds. */
export type RequestBody<O extends Op> = Omit<Request<O>, 'id' | 'op'>;

export const ERROR_CODES = [
  /** The frame is not a JSON object with an id (answered with `id: null` when none could be read). */
  'bad_frame',
  /** The frame exceeds MAX_FRAME_BYTES; it was skipped up to its newline. */
  'frame_too_large',
  /** No such `op`. */
  'unknown_op',
  /** The request does not match its schema; the message names the field. */
  'invalid_request',
  /** The request was valid but failed (e.g. mount(2) refused, no cgroup could be made). */
  'failed',
  /** The launcher raised while handling the request (a bug): the request was abandoned. */
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const filterInfo = z.strictObject({
  denied: z.array(z.string()),
  rules: z.array(z.string()),
  bytes: z.int(),
  /** base64 cBPF programs */
  programs: z.array(z.string()),
});

export const replies = {
  hello: z.strictObject({
    type: z.literal('hello'),
    protocol: z.int(),
    pid: z.int().positive(),
    python: z.string(),
    capabilities: z.strictObject({
      /** The seccomp filter was built (the launcher exits without it, so always true today). */
      seccomp: z.boolean(),
      /** The launcher can mount (it runs as root). */
      mount: z.boolean(),
    }),
  }),
  started: z.strictObject({
    type: z.literal('started'),
    id,
    pid: z.int().positive(),
    /** The launcher's descriptors of the worker's pipe ends, for /proc/<launcher>/fd/<n>. */
    fds: z.strictObject({ stdout: fd, stderr: fd, status: fd, stdin: fd.optional() }),
    cgroups: z.record(z.string(), z.string()).nullable(),
  }),
  ok: z.strictObject({ type: z.literal('ok'), id }),
  filter: z.strictObject({ type: z.literal('filter'), id, filter: filterInfo }),
  exit: z.strictObject({ type: z.literal('exit'), task: id, exit: z.int().nullable(), signal: z.int().nullable() }),
  error: z.strictObject({ type: z.literal('error'), id: id.nullable(), code: z.enum(ERROR_CODES), message: z.string() }),
} as const;

export const reply = z.discriminatedUnion('type', [replies.hello, replies.started, replies.ok, replies.filter, replies.exit, replies.error]);
export type Reply = z.output<typeof reply>;
export type FilterInfo = z.output<typeof filterInfo>;

/** What launcher.py reads (launcher-protocol.json). */
export function protocolDocument(): object {
  const schema = (s: z.ZodType) => {
    const { $schema: _, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12' }) as Record<string, unknown>;
    return rest;
  };
  return {
    comment: 'Generated from launcher-protocol.ts (npx tsx worker/sandbox/launcher-protocol.ts); do not edit.',
    version: PROTOCOL_VERSION,
    maxFrameBytes: MAX_FRAME_BYTES,
    errorCodes: ERROR_CODES,
    requests: Object.fromEntries(Object.entries(requests).map(([op, s]) => [op, schema(s)])),
    replies: Object.fromEntries(Object.entries(replies).map(([type, s]) => [type, schema(s)])),
  };
}

export function protocolText(): string {
  return JSON.stringify(protocolDocument(), null, 1) + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) writeFileSync(PROTOCOL_FILE, protocolText());
