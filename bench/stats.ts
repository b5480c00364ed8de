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
}

export function printTable(title: string, rows: Row[]): void {
  const widths = [
    Math.max(6, ...rows.map((r) => r.metric.length)),
    Math.max(5, ...rows.map((r) => r.value.length)),
    Math.max(6, ...rows.map((r) => (r.target ?? "").length)),
  ];
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(widths[i] ?? 4)).join(" | ") + " |";
  console.log(`\n${title}`);
  console.log(line(["metric", "value", "target", "met"]));
  console.log(line(widths.map((w) => "-".repeat(w)).concat("---")));
  for (const r of rows) console.log(line([r.metric, r.value, r.target ?? "", r.ok === undefined ? "" : r.ok ? "yes" : "NO"]));
}

export const ms = (v: number) => `${v.toFixed(1)} ms`;
