// The integrated monitoring log: what every component reported, with timestamps, newest last.
// Fed by the fleet and user topics, task pages, Realtime channel states and API errors.
export interface LogEntry {
  at: string;
  /** fleet, tasks, task:<id>, realtime, api */
  source: string;
  kind: string;
  text: string;
}

const MAX_ENTRIES = 5000;
const entries: LogEntry[] = [];
const listeners = new Set<(e: LogEntry) => void>();

export function log(source: string, kind: string, text: string, at = new Date().toISOString()): void {
  const entry = { at, source, kind, text };
  entries.push(entry);
  if (entries.length > MAX_ENTRIES) entries.splice(0, entries.length - MAX_ENTRIES);
  for (const l of listeners) l(entry);
}

export function logEntries(): readonly LogEntry[] {
  return entries;
}

export function onLog(listener: (e: LogEntry) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
