// `cogo <command> --help`: one text per command (usage, options with their defaults, an example).
// Bounds and defaults come from the modules that enforce them, so the help cannot drift from them.
import { DEFAULT_WALL_TIME_MS, MAX_WALL_TIME_MS } from "../functions/_shared/limits.ts";
import { FLAG_RANGES } from "./cli-args.ts";
import { USER_PRIORITY } from "../functions/_shared/plans/limits.ts";
import { FILES_USAGE, SHELL_HELP } from "./sandbox-cli.ts";
import { WATCH_DEFAULTS } from "./watch.ts";

/** A sandbox's idle timeout when none is given: SANDBOX_DEFAULTS in schemas.ts (a test compares them). */
export const SANDBOX_IDLE_DEFAULT_MS = 300_000;

const ID = "<taskId>";

export const COMMAND_HELP: Record<string, string> = {
  run: `Usage: cogo run [options] -- <cmd> [args…]

Runs a command in a sandbox, streams its stdout and stderr live, and exits with its exit code
(124 timed out, 130 cancelled). One argument runs via /bin/sh -c; several are an argv. The task's
id and its dashboard page are printed on stderr at start; stdout is the task's output only.

Options:
  --stdin              forward this terminal's stdin to the task (EOF when it ends)
  --timeout MS         wall time limit, ${FLAG_RANGES.timeout.min}…${MAX_WALL_TIME_MS} (default ${DEFAULT_WALL_TIME_MS})
  --priority N         ${USER_PRIORITY.min}…${USER_PRIORITY.max}, higher runs first (default 0; ${USER_PRIORITY.max + 1} and up are the system's)
  --kind KIND          worker kind to run on (default basic)
  --file PATH=LOCAL    put the local file LOCAL into the workspace at PATH (repeatable)
  -h, --help           this text

Ctrl-C cancels the task; a second Ctrl-C leaves it running; SIGTERM cancels it and exits. When
no live worker serves the kind, a line on stderr says so at once. COGO_DASHBOARD_URL sets the
dashboard's address (default: <SUPABASE_URL>/dashboard/, where npm start serves it).

Example:
  echo alice | cogo run --stdin --timeout 60000 -- 'read name; echo "hi $name"'`,
  logs: `Usage: cogo logs ${ID} [--follow]

Prints a task's stored output (stdout to stdout, the rest to stderr).

Options:
  -f, --follow         stream until the task ends, then exit with its exit code (default: print
                       what is stored and exit 0)
  -h, --help           this text

Example:
  cogo logs 6f1c2e1a-0000-4000-8000-000000000000 --follow`,
  status: `Usage: cogo status ${ID}

Prints the task (status, exit code, times, limits) as JSON.

Example:
  cogo status 6f1c2e1a-0000-4000-8000-000000000000`,
  cancel: `Usage: cogo cancel ${ID}

Cancels a task: a queued one at once, a running one is killed within a second. Prints the task
as JSON.

Example:
  cogo cancel 6f1c2e1a-0000-4000-8000-000000000000`,
  workers: `Usage: cogo workers

Prints the fleet (each worker's kind, capacity, running tasks, heartbeat) as JSON.

Example:
  cogo workers`,
  health: `Usage: cogo health

Prints queue and fleet health as JSON.

Example:
  cogo health`,
  usage: `Usage: cogo usage [--json]

Your running and queued tasks, stored bytes and rate limits against your quotas.

Options:
  --json               JSON instead of a table (default: a table)
  -h, --help           this text

Example:
  cogo usage --json`,
  plan: `Usage: cogo plan <plan.json> [--detach]

Submits a plan ({files?, steps: [{name, command, dependsOn?, inputs?, …}]}), prints
{planId, topic} on stdout and step events on stderr until it ends; exits 0 if it succeeded.

Options:
  --detach             print the plan id and exit at once (default: follow until it ends)
  -h, --help           this text

Example:
  cogo plan ./plan.json`,
  "plan-status": `Usage: cogo plan-status <planId>

Prints the plan, its steps and summary as JSON.

Example:
  cogo plan-status 6f1c2e1a-0000-4000-8000-000000000000`,
  "plan-cancel": `Usage: cogo plan-cancel <planId>

Cancels a plan's running and pending steps.

Example:
  cogo plan-cancel 6f1c2e1a-0000-4000-8000-000000000000`,
  watch: `Usage: cogo watch <dir> (--plan ID | --workspace ID) [options]

Uploads changes in <dir> to the workspace, one change per burst of saves; the plan steps they
affect re-run at high priority (with --plan their events are printed). Ctrl-C stops.

Options:
  --plan ID            the plan whose workspace to update (its events are printed)
  --workspace ID       the workspace to update
  --debounce MS        send once the directory is quiet this long (default ${WATCH_DEFAULTS.debounceMs})
  --ignore NAME        path component never uploaded (repeatable; default ${WATCH_DEFAULTS.ignore.join(", ")})
  --initial            upload every file once at start (default: changes only)
  -h, --help           this text

Example:
  cogo watch ./src --plan 6f1c2e1a-0000-4000-8000-000000000000`,
  sandbox: `Usage: cogo sandbox create [--kind KIND] [--idle-timeout MS] [--lifetime MS]
       cogo sandbox list
       cogo sandbox kill <sandboxId>

create: a persistent sandbox, printed as JSON once ready. list: yours as JSON. kill: every
process killed, its workspace removed.

Options (create):
  --kind KIND          worker kind (default basic)
  --idle-timeout MS    stopped after this long with no command running, ${FLAG_RANGES.sandboxClock.min}…${MAX_WALL_TIME_MS} (default ${SANDBOX_IDLE_DEFAULT_MS})
  --lifetime MS        stopped this long after creation, ${FLAG_RANGES.sandboxClock.min}…${MAX_WALL_TIME_MS} (default ${MAX_WALL_TIME_MS})
  -h, --help           this text

Example:
  cogo sandbox create --idle-timeout 600000`,
  exec: `Usage: cogo exec <sandboxId> [--cwd DIR] [--background] -- <cmd> [args…]

Runs a command in a live sandbox, streams it, and exits with its exit code.

Options:
  --cwd DIR            working directory inside the sandbox (default /workspace)
  --background         print {taskId, topic} and exit at once (default: stream until it ends)
  -h, --help           this text

Example:
  cogo exec 6f1c2e1a-0000-4000-8000-000000000000 -- 'ls -la'`,
  shell: `${SHELL_HELP}

Example:
  cogo shell 6f1c2e1a-0000-4000-8000-000000000000`,
  files: `Usage: cogo files ls|get|put|rm <sandboxId> …

${FILES_USAGE}

Options:
  --out FILE           (get) write to FILE (default: stdout)
  -r, --recursive      (rm) remove a directory and what is in it (default: files only)
  -h, --help           this text

Example:
  cogo files get 6f1c2e1a-0000-4000-8000-000000000000 out/report.txt --out report.txt`,
};

/** `--help`/`-h` among a command's own arguments: those after `--` are the task's, not ours. */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === "--help" || a === "-h");
}
