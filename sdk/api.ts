// Calls the `sandbox` edge function through supabase-js, so auth works as the app's client does.
import { FunctionsHttpError, type SupabaseClient } from "@supabase/supabase-js";
import { apiErrorFor, ApiError } from "./errors.ts";

export const FUNCTION_NAME = "sandbox";

export async function call<T>(supabase: SupabaseClient, method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", route: string, body?: unknown): Promise<T> {
  const { data, error } = await supabase.functions.invoke(`${FUNCTION_NAME}${route}`, {
    method,
    ...(body === undefined ? {} : { body: body as Record<string, unknown> }),
  });
  if (!error) return data as T;
  if (error instanceof FunctionsHttpError) {
    const res = error.context as Response;
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
