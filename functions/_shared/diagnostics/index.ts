// Structured diagnostics, test results and progress from tool output (pure: shared by the worker,
// the edge function and the SDK).
export * from "./types.ts";
export { createLineScanner, createParsers, stripAnsi, MAX_LINE_CHARS, type LineScanner, type ScannerOptions } from "./scanner.ts";
export { estimateEtaMs } from "./eta.ts";
