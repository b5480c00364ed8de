// The sandbox a worker runs each task in: bubblewrap + rlimits + cgroups (v1 or v2). See README.md.
export { startSandbox } from './run.ts';
export { startPersistentSandbox, type CleanupReport, type ExecSpec, type PersistentSandbox, type PersistentSandboxSpec } from './persistent.ts';
export { stopLauncher } from './launcher.ts';
export { collectFile, drainWorkspacePool } from './workspace.ts';
export { collectArtifacts, type Artifact } from './artifacts.ts';
export { validateWorkspacePath } from '../../functions/_shared/paths.ts';
export { sandboxFacts, type SandboxFacts } from './facts.ts';
export { DEFAULT_LIMITS, SANDBOX_DEFAULTS, type SandboxLimits, type SandboxOptions } from './options.ts';
export type { SandboxExit, SandboxExitReason, SandboxFile, SandboxProcess, SandboxSpec, SandboxUsage } from './types.ts';
export * from './errors.ts';
