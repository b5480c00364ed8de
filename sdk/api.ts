// Calls the `sandbox` edge function through supabase-js, so auth works as the app's client does.
import type { SupabaseClient } from "@supabase/supabase-js";
import { apiErrorFor, ApiError } from "./errors.ts";

export const FUNCTION_NAME = "sandbox";

export async function call<T>(supabase: SupabaseClient, method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", route: string, body?: unknown): Promise<T> {
  const { data, error } = await supabase.functions.invoke(`${FUNCTION_NAME}${route}`, {
    method,
    ...(body === undefined ? {} : { body: body as Record<string, unknown> }),
  });
  if (!error) return data as T;
  const res = httpErrorResponse(error);
  if (res) {
    let parsed: { error?: { code?: string; message?: string } & Record<string, unknown>; message?: string; code?: string } = {};
    try {
      parsed = await res.json();
    } catch {
      /* not JSON: keep the status */
    }
    const code = parsed.error?.code ?? parsed.code ?? "http_" + res.status;
    // The limit a 429/413 names (quota, limit, retryAfterSeconds…) comes along as details.
    const { code: _c, message: _m, ...details } = parsed.error ?? {};
    const retryAfter = Number(res.headers.get("retry-after"));
    if (Number.isFinite(retryAfter) && retryAfter > 0) details.retryAfterSeconds = retryAfter;
    throw apiErrorFor(res.status, code, parsed.error?.message ?? parsed.message ?? `HTTP ${res.status}`, details);
  }
  throw new ApiError(0, "network", `${method} ${route}: ${error.message}`);
}

/**
 * The response of a FunctionsHttpError, found by name rather than instanceof: the app's client may
 * come from another copy of supabase-js than the SDK's own (another version installed beside it),
 * and the SDK then needs no runtime import of supabase-js at all.
 */
function httpErrorResponse(error: unknown): Response | null {
  if (!(error instanceof Error) || error.name !== "FunctionsHttpError") return null;
  const context = (error as { context?: unknown }).context as Response | undefined;
  return typeof context?.json === "function" ? context : null;
}
