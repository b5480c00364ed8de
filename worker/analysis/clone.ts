// The clone step of an analysis, inside the sandbox: a shallow fetch of one ref into a bare
// repository, then the tree listing (modes, blob hashes, sizes, paths) and the contents of blobs
// not seen before, written as files the worker reads back without following links. Nothing
// from the repository is ever checked out, so its paths and symlinks never touch a filesystem.
import { lookup } from "node:dns/promises";
import { realpath, stat } from "node:fs/promises";
import { CogoError } from "../../functions/_shared/errors.ts";
import { addressRefusal, parseAddress } from "../../functions/_shared/analysis/addresses.ts";
import { checkSource, isUnder, PUBLIC_HOSTS_ONLY, SourceRefused, type AnalysisPolicy } from "../../functions/_shared/analysis/source.ts";
import { collectFile, startSandbox, type SandboxOptions, type SandboxSpec } from "../sandbox/index.ts";

/** A clone that did not complete; `details` (the worker's log only) has what git or DNS said. */
export class CloneFailed extends CogoError {}

/**
 * What a user is told for any failure to reach the repository: DNS, connection (refused, reset,
 * timed out), TLS, HTTP status, a server that is not git. One message for all, so the reason
 * cannot be used to tell open, closed and filtered ports or live hosts apart.
 */
export const COULD_NOT_FETCH =
  "could not fetch the repository (no answer from the host as a git server, or the repository does not exist or needs credentials); the worker's log has the details";

/** The addresses a host name resolves to, looked up once. */
export type Resolver = (host: string) => Promise<string[]>;

const dnsResolver: Resolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export interface TreeEntry {
  mode: string;
  type: string;
  hash: string;
  size: number;
  path: string;
}

export interface CloneResult {
  commit: string;
  entries: TreeEntry[];
  /** Contents of regular-file blobs up to maxFileBytes that were not in `known`. */
  blobs: Map<string, Buffer>;
}

export interface CloneRequest {
  source: string;
  ref: string;
  /** Blob hashes already stored for this repository: listed, not fetched again. */
  known: string[];
  maxFileBytes: number;
  maxTotalBytes: number;
  timeoutMs: number;
  policy: AnalysisPolicy;
  /** How the source's host name is resolved. @default getaddrinfo (node:dns lookup) */
  resolve?: Resolver;
}

// A remote source is fetched (one ref, depth 1) into a bare repository in the workspace; a local
// one is read where it is bound (read-only), which saves packing and unpacking every object.
const SCRIPT = `set -eu
if [ -n "\${LOCAL_GIT_DIR:-}" ]; then
  export GIT_DIR="$LOCAL_GIT_DIR"
  git rev-parse --verify --end-of-options "$REF^{commit}" > commit
else
  git init --quiet --bare repo.git
  export GIT_DIR=repo.git
  git fetch --quiet --no-tags --depth 1 -- "$SRC" "$REF"
  git rev-parse --verify 'FETCH_HEAD^{commit}' > commit
fi
C=$(cat commit)
git ls-tree -r -z --long --full-tree "$C" > tree
git ls-tree -r --full-tree --format='%(objectmode) %(objectname) %(objectsize)' "$C" \\
  | awk -v max="$MAX_FILE_BYTES" '($1 == "100644" || $1 == "100755") && $3 + 0 <= max + 0 { print $2 }' \\
  | sort -u | grep -vxF -f known | git cat-file --batch > blobs
`;

/** git settings for the fetch: only the transport the source needs, no redirects, no prompts. */
function gitConfig(pairs: [string, string][]): Record<string, string> {
  const env: Record<string, string> = { GIT_CONFIG_COUNT: String(pairs.length), GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1" };
  pairs.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return env;
}

/** Checks the source again on this machine (symlinks resolved, host addresses looked up) and plans the sandbox. */
async function prepare(req: CloneRequest): Promise<Pick<SandboxSpec, "env" | "network" | "readOnlyBinds" | "files">> {
  const source = checkSource(req.source, req.policy);
  if (source.kind === "workspace") throw new CloneFailed("not_a_repository", "workspaces are read from the database, not cloned");
  const base: [string, string][] = [
    ["protocol.allow", "never"],
    ["http.followRedirects", "false"],
    ["core.askPass", "/bin/false"],
  ];
  if (source.kind === "local") {
    const real = await realpath(source.path).catch(() => {
      throw new SourceRefused(`${source.path} does not exist on this worker`);
    });
    const roots = await Promise.all(req.policy.localRoots.map((r) => realpath(r).catch(() => r)));
    if (!roots.some((r) => isUnder(real, r))) throw new SourceRefused(`${source.path} resolves to ${real}, outside the allowed directories`);
    const workTree = await stat(`${real}/.git`).then(
      (st) => st.isDirectory(),
      () => false,
    );
    return {
      network: false,
      readOnlyBinds: [{ source: real, target: "/mnt/source" }],
      env: { LOCAL_GIT_DIR: workTree ? "/mnt/source/.git" : "/mnt/source", ...gitConfig(base) },
      // The repository belongs to another uid than the sandbox user: git reads it only when
      // safe.directory says so in the global config (HOME is /workspace).
      files: [{ path: ".gitconfig", content: "[safe]\n\tdirectory = /mnt/source\n\tdirectory = /mnt/source/.git\n" }],
    };
  }
  const pins: [string, string][] = parseAddress(source.host)
    ? [] // an address literal, checked by checkSource: git resolves nothing
    : [["http.curloptResolve", await pinAddresses(source.host, source.port, req.policy, req.resolve)]];
  return {
    network: true,
    env: {
      SRC: source.url,
      ...gitConfig([...base, ["protocol.https.allow", "always"], ["protocol.http.allow", req.policy.allowPrivateHosts ? "always" : "never"], ...pins]),
    },
  };
}

/**
 * Resolves `host` once, refuses it when any address is not public (unless the policy allows
 * private hosts), and returns git's http.curloptResolve entry (`host:port:addr,[addr6]`) that
 * makes curl connect to exactly the addresses checked here: a second DNS answer (rebinding)
 * is never asked for.
 */
export async function pinAddresses(host: string, port: number, policy: AnalysisPolicy, resolve: Resolver = dnsResolver): Promise<string> {
  const addresses = await resolve(host).catch((err: Error) => {
    throw new CloneFailed("source_unreachable", COULD_NOT_FETCH, { host, resolve: err.message });
  });
  if (!addresses.length) throw new CloneFailed("source_unreachable", COULD_NOT_FETCH, { host, resolve: "no addresses" });
  if (!policy.allowPrivateHosts) {
    for (const address of addresses) {
      const why = addressRefusal(address);
      // The address and its range go to the log: the user learns only that the name is refused.
      if (why) throw new SourceRefused(`host ${host} resolves to an address that is not public; ${PUBLIC_HOSTS_ONLY}`, { host, address, why });
    }
  }
  return `${host}:${port}:${addresses.map((a) => (a.includes(":") ? `[${a}]` : a)).join(",")}`;
}

/**
 * Runs the clone step in a sandbox; throws SourceRefused, or CloneFailed: COULD_NOT_FETCH when the
 * repository could not be fetched (what DNS or git said is in its details only), git's message
 * for a failure after the fetch.
 */
export async function cloneInSandbox(req: CloneRequest, sandboxOptions: SandboxOptions, onStart?: (stop: () => void) => void): Promise<CloneResult> {
  const plan = await prepare(req);
  const workspaceBytes = Math.min(2 * req.maxTotalBytes + 64 * 1024 * 1024, 8 * 1024 ** 3);
  const sandbox = await startSandbox(
    {
      command: ["/bin/sh", "-c", SCRIPT],
      env: { ...plan.env, REF: req.ref, MAX_FILE_BYTES: String(req.maxFileBytes) },
      network: plan.network,
      readOnlyBinds: plan.readOnlyBinds,
      files: [...(plan.files ?? []), { path: "known", content: req.known.length ? req.known.join("\n") + "\n" : "" }],
      limits: { wallTimeMs: req.timeoutMs, workspaceBytes, memoryBytes: workspaceBytes + 512 * 1024 * 1024, processes: 64, outputBytes: 1024 * 1024 },
    },
    sandboxOptions,
  );
  try {
    onStart?.(() => sandbox.kill("killed"));
    let stderr = "";
    sandbox.stdout.resume();
    sandbox.stderr.on("data", (b: Buffer) => (stderr = (stderr + b.toString("utf8")).slice(-4000)));
    const exit = await sandbox.exited;
    if (exit.reason !== "exited" || exit.exitCode !== 0) {
      const why = exit.reason === "exited" ? `exit code ${exit.exitCode}` : exit.reason;
      const msg = stderr.trim().replace(/\/mnt\/source/g, req.source) || "no message";
      const details = { source: req.source, ref: req.ref, exit: why, stderr: msg };
      // `commit` is written once the fetch has succeeded; before that, git talked to the network.
      const fetched = plan.network
        ? await collectFile(sandbox.workspace, "commit", 200).then(
            () => true,
            () => false,
          )
        : true;
      if (!fetched) {
        const missing = /couldn't find remote ref /.test(msg);
        throw new CloneFailed("clone_failed", missing ? `ref ${req.ref} was not found in the repository` : COULD_NOT_FETCH, details);
      }
      throw new CloneFailed("clone_failed", `cloning ${req.source} at ${req.ref} failed (${why}): ${msg}`, details);
    }
    const commit = (await collectFile(sandbox.workspace, "commit", 200)).toString("utf8").trim();
    if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(commit)) throw new CloneFailed("clone_failed", `git reported no commit for ${req.ref}`);
    const entries = parseTree(await collectFile(sandbox.workspace, "tree", 512 * 1024 * 1024));
    const blobs = parseBlobs(await collectFile(sandbox.workspace, "blobs", req.maxTotalBytes + 64 * 1024 * 1024));
    return { commit, entries, blobs };
  } finally {
    await sandbox.cleanup();
  }
}

/** `git ls-tree -r -z --long`: "<mode> <type> <hash> <size>\t<path>\0". */
export function parseTree(buf: Buffer): TreeEntry[] {
  const out: TreeEntry[] = [];
  for (const rec of buf.toString("utf8").split("\0")) {
    if (!rec) continue;
    const tab = rec.indexOf("\t");
    const m = /^(\d{6}) (\w+) ([0-9a-f]+)\s+(-|\d+)$/.exec(rec.slice(0, tab));
    if (tab < 0 || !m) throw new CloneFailed("clone_failed", `unexpected tree line ${JSON.stringify(rec.slice(0, 200))}`);
    out.push({ mode: m[1]!, type: m[2]!, hash: m[3]!, size: m[4] === "-" ? 0 : Number(m[4]), path: rec.slice(tab + 1) });
  }
  return out;
}

/** `git cat-file --batch`: "<hash> blob <size>\n<content>\n" per object. */
export function parseBlobs(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let at = 0;
  while (at < buf.length) {
    const nl = buf.indexOf(10, at);
    if (nl < 0) throw new CloneFailed("clone_failed", "truncated blob stream");
    const header = buf.toString("utf8", at, nl);
    const m = /^([0-9a-f]+) (\w+) (\d+)$/.exec(header);
    if (!m) {
      at = nl + 1; // "<hash> missing": skip
      continue;
    }
    const size = Number(m[3]);
    if (nl + 1 + size > buf.length) throw new CloneFailed("clone_failed", "truncated blob stream");
    if (m[2] === "blob") out.set(m[1]!, buf.subarray(nl + 1, nl + 1 + size));
    at = nl + 1 + size + 1;
  }
  return out;
}
