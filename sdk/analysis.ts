// Repository analysis from the client: start one, follow its progress on `analysis:<id>`, wait for
// it, read results and search.
import type { SupabaseClient } from "@supabase/supabase-js";
import type { AnalyzeRequest } from "../functions/_shared/analysis/schemas.ts";
import type { AnalysisView } from "../functions/_shared/analysis/views.ts";
import { call } from "./api.ts";
import { SandboxError } from "./errors.ts";

/** `progress_update` on `analysis:<id>`. */
export interface AnalysisProgress {
  analysisId: string;
  phase: AnalysisView["phase"];
  percentage: number | null;
  stage: "analyzing";
  message: string;
  etaMs: number | null;
  filesTotal: number | null;
  blobsParsed: number;
  blobsToParse: number | null;
}

export interface ResultsQuery {
  section?: "files" | "symbols" | "imports";
  offset?: number;
  limit?: number;
  language?: string;
  path?: string;
  kind?: string;
  name?: string;
  resolved?: "resolved" | "unresolved";
  depth?: number;
}

export class AnalysisFailedError extends SandboxError {}

const qs = (o: object) =>
  new URLSearchParams(
    Object.entries(o)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, String(v)]),
  ).toString();

export function analysisCalls(supabase: SupabaseClient) {
  const status = (id: string) => call<AnalysisView>(supabase, "GET", `/analysis/${id}/status`);
  return {
    /**
     * Starts an analysis and resolves with its id once accepted; `onProgress` receives the
     * analysis topic's progress updates. `wait()` polls the status (every `pollMs`, default 500)
     * as the source of truth and resolves when complete, or rejects with AnalysisFailedError.
     */
    async analyzeRepository(request: AnalyzeRequest, onProgress?: (p: AnalysisProgress) => void) {
      const { analysisId, topic } = await call<{ analysisId: string; topic: string }>(supabase, "POST", "/analyze/repository", request);
      const channel = onProgress
        ? supabase
            .channel(topic, { config: { private: true } })
            .on("broadcast", { event: "progress_update" }, (m) => onProgress(m.payload as AnalysisProgress))
            .subscribe()
        : null;
      const wait = async (pollMs = 500): Promise<AnalysisView> => {
        try {
          for (;;) {
            const s = await status(analysisId);
            if (s.phase === "completed") return s;
            if (s.phase === "failed") throw new AnalysisFailedError("analysis_failed", s.error ?? "analysis failed");
            await new Promise((r) => setTimeout(r, pollMs));
          }
        } finally {
          if (channel) await supabase.removeChannel(channel);
        }
      };
      return { analysisId, topic, wait };
    },
    analysisStatus: status,
    /** Summary (per language and directory) plus one page of files, symbols or imports. */
    analysisResults: (analysisId: string, query: ResultsQuery = {}) => call<Record<string, unknown>>(supabase, "GET", `/analysis/${analysisId}/results?${qs(query)}`),
    /** Full-text search over file words and symbol names, ranked, with snippets. */
    searchAnalysis: (analysisId: string, q: string, options: { limit?: number; offset?: number; language?: string; path?: string } = {}) =>
      call<{ hits: { path: string; language: string; rank: number; snippet: string; symbols: unknown[] }[]; next: number | null }>(
        supabase,
        "GET",
        `/analysis/${analysisId}/search?${qs({ q, ...options })}`,
      ),
  };
}
export type AnalysisCalls = ReturnType<typeof analysisCalls>;
