// Estimated time remaining from history and progress. `historyMs` is the median duration of
// earlier runs of the same step (cogo.estimate_duration_ms); `percentage` the latest progress.
/** Below this percentage, a projection from progress alone is noise. */
const MIN_PERCENT_FOR_PROJECTION = 5;

export function estimateEtaMs(elapsedMs: number, percentage: number | null, historyMs: number | null): number | null {
  const projected = percentage !== null && percentage >= MIN_PERCENT_FOR_PROJECTION ? (elapsedMs * (100 - percentage)) / percentage : null;
  if (percentage === 100) return 0;
  if (historyMs !== null) {
    const left = historyMs - elapsedMs;
    // Past the usual duration, history says nothing more; progress may still.
    if (left > 0) return Math.round(projected === null ? left : (left + projected) / 2);
    return projected === null ? null : Math.round(projected);
  }
  return projected === null ? null : Math.round(projected);
}
