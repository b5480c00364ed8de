import { CogoError } from '../../functions/_shared/errors.ts';

/** The machine cannot run sandboxes (bwrap or a helper missing, unusable root directory). */
export class SandboxUnavailable extends CogoError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('sandbox_unavailable', message, details);
  }
}

/** A task's spec is malformed; `details.field` names the offending field. */
export class InvalidSandboxSpec extends CogoError {
  constructor(field: string, problem: string) {
    super('invalid_sandbox_spec', `${field}: ${problem}`, { field, problem });
  }
}

/** A path that must stay inside the workspace does not. */
export { InvalidWorkspacePath } from '../../functions/_shared/paths.ts';

/** collectFile refused a file (symlink, device, fifo, missing, too large...). */
export class ArtifactRejected extends CogoError {
  constructor(path: string, problem: string, details?: Record<string, unknown>) {
    super('artifact_rejected', `artifact ${JSON.stringify(path)}: ${problem}`, { path, problem, ...details });
  }
}

/** Files given for the workspace do not fit in workspaceBytes. */
export class WorkspaceFull extends CogoError {
  constructor(limitBytes: number) {
    super('workspace_full', `files exceed the workspace limit of ${limitBytes} bytes`, { limitBytes });
  }
}

/** Every sandbox uid slot is in use (by this or another worker on the machine). */
export class SandboxBusy extends CogoError {
  constructor(slots: number) {
    super('sandbox_busy', `all ${slots} sandbox uid slots are in use`, { slots });
  }
}

/** bwrap (or the launcher before it) failed before the command started. */
export class SandboxStartFailed extends CogoError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('sandbox_start_failed', message, details);
  }
}

/** A terminal request (resize) that cannot be applied: the command has no terminal, or it has ended. */
export class TerminalUnavailable extends CogoError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('terminal_unavailable', message, details);
  }
}
