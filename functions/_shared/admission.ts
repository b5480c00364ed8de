// Host admission at the API: a task asking more memory than any live worker of its kind can give
// is refused (400 naming the maximum) instead of being queued for ever or cut to fit. Workers
// claim only what fits their budget (cogo.claim_tasks, migrations/20261206000400_host_admission.sql).
import type { TransactionSql } from "postgres";
import { HttpError } from "./http.ts";
import { DEFAULT_MEMORY_BYTES, MAX_MEMORY_BYTES } from "./limits.ts";

/** One memory request to check: the field it came from (for the message), the kind and the bytes (undefined: the default). */
export interface MemoryAsk {
  field: string;
  kind: string;
  memoryBytes: number | undefined;
}

/** A kind's live workers as cogo.kind_memory_budgets reports them. */
export interface KindBudget {
  live: number;
  /** The largest budget among them; null when none registered one. */
  maxBudgetBytes: number | null;
  /** Live workers without a budget (registered the old way): they count as giving MAX_MEMORY_BYTES. */
  unbudgeted: number;
}

/** The most memory one task of a kind may ask, and whether a live worker said so (else the static maximum). */
export function kindMemoryMax(budget: KindBudget | undefined): { maxBytes: number; live: boolean } {
  if (!budget || budget.live === 0) return { maxBytes: MAX_MEMORY_BYTES, live: false };
  const budgeted = budget.maxBudgetBytes === null ? 0 : Number(budget.maxBudgetBytes);
  return { maxBytes: Math.max(budgeted, budget.unbudgeted > 0 ? MAX_MEMORY_BYTES : 0), live: true };
}

/** One message per request over its kind's maximum, naming the field and the maximum; empty when all fit. */
export function memoryRefusals(asks: MemoryAsk[], budgets: Record<string, KindBudget>): string[] {
  const refusals: string[] = [];
  for (const ask of asks) {
    const bytes = ask.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    const { maxBytes, live } = kindMemoryMax(budgets[ask.kind]);
    if (bytes <= maxBytes) continue;
    const asked = ask.memoryBytes === undefined ? `${bytes} (the default)` : `${bytes}`;
    refusals.push(
      live
        ? `${ask.field}: ${asked} is more than any worker of kind ${ask.kind} can give (max ${maxBytes})`
        : `${ask.field}: ${asked} is more than a task may ask while no worker of kind ${ask.kind} is live (max ${maxBytes})`,
    );
  }
  return refusals;
}

/**
 * Refuses the request (400 invalid_request, nothing written) when a task of it asks more memory
 * than its kind can give. Runs in the request's transaction, before anything is inserted.
 */
export async function checkTaskMemory(tx: TransactionSql, asks: MemoryAsk[]): Promise<void> {
  if (asks.length === 0) return;
  const kinds = [...new Set(asks.map((a) => a.kind))];
  const [row] = await tx<{ budgets: Record<string, KindBudget> }[]>`select cogo.kind_memory_budgets(${kinds}::text[]) as budgets`;
  const refusals = memoryRefusals(asks, row?.budgets ?? {});
  if (refusals.length > 0) throw new HttpError(400, "invalid_request", refusals.join("; "));
}
