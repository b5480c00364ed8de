// Percentiles and a plain table for bench output.
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface Row {
  metric: string;
  value: string;
  target?: string;
  ok?: boolean;
  /** Side-by-side rows: this figure against ours, e.g. "cogo ÷ peer 1.8×". */
  ratio?: string;
}

export function printTable(title: string, rows: Row[]): void {
  const withRatio = rows.some((r) => r.ratio !== undefined);
  const cells = (r: Row) => [r.metric, r.value, ...(withRatio ? [r.ratio ?? ""] : []), r.target ?? "", r.ok === undefined ? "" : r.ok ? "yes" : "NO"];
  const head = ["metric", "value", ...(withRatio ? ["ratio"] : []), "target", "met"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => cells(r)[i]!.length)));
  const line = (c: string[]) => "| " + c.map((x, i) => x.padEnd(widths[i]!)).join(" | ") + " |";
  console.log(`\n${title}`);
  console.log(line(head));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const r of rows) console.log(line(cells(r)));
}

export const ms = (v: number) => `${v.toFixed(1)} ms`;
