// HTTP plumbing for the edge function: typed errors to responses, CORS, caller claims.
import { AuthError, credentialOf, type Authenticator, type Caller, type Role } from "./auth.ts";
import { CogoError } from "./errors.ts";
import { sqlStateEntry } from "./sqlstate.ts";

/** An error with an HTTP status; everything the API refuses is one of these. */
export class HttpError extends CogoError {
  readonly status: number;
  constructor(status: number, code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
    this.status = status;
  }
}

// As Supabase's functions docs show: browsers may call with these headers from any origin.
export const corsHeaders = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type, idempotency-key",
  "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
  // So a browser client can read when to retry a 429.
  "Access-Control-Expose-Headers": "retry-after",
};

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...corsHeaders, "content-type": "application/json", ...headers },
  });
}

/** The JSON object a database error carries in its DETAIL (quota and rate-limit errors), if any. */
export function detailJsonOf(err: unknown): Record<string, unknown> | undefined {
  const detail = (err as { detail?: unknown } | null)?.detail;
  if (typeof detail !== "string") return undefined;
  try {
    const parsed: unknown = JSON.parse(detail);
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Retry-After in whole seconds, at least 1 (RFC 9110 delay-seconds), from a wait in seconds. */
export function retryAfterSeconds(wait: unknown): number | undefined {
  if (typeof wait !== "number" || !Number.isFinite(wait)) return undefined;
  return Math.max(1, Math.ceil(wait));
}

/** Maps any thrown value to a JSON error response; unknown errors are 500 without internals. */
export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError) {
    return json(err.status, { error: { code: err.code, message: err.message, ...(err.details ?? {}) } });
  }
  const mapped = sqlStateEntry(err);
  if (mapped) {
    const details = mapped.detailJson ? detailJsonOf(err) : undefined;
    const retry = retryAfterSeconds(details?.retryAfterSeconds);
    const headers: Record<string, string> = retry === undefined ? {} : { "retry-after": String(retry) };
    return json(mapped.http, { error: { ...details, code: mapped.code, message: (err as Error).message } }, headers);
  }
  console.error("unhandled error", err);
  return json(500, { error: { code: "internal", message: "internal error; see the function log" } });
}

export type { Caller, Role } from "./auth.ts";

/** The caller of a request, proven by `auth`; a refused credential is a 401 saying why. */
export async function callerFrom(req: Request, auth: Authenticator): Promise<Caller> {
  try {
    return await auth.verify(credentialOf((h) => req.headers.get(h)));
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    if (err.reason === "forbidden_role") throw new HttpError(403, "forbidden", err.message);
    throw new HttpError(401, "unauthorized", err.message);
  }
}

export function requireRole(caller: Caller, ...roles: Role[]): void {
  if (!roles.includes(caller.role)) {
    const need = roles.map((r) => (r === "authenticated" ? "a user token" : r === "service_role" ? "the service key" : r)).join(" or ");
    throw new HttpError(403, "forbidden", `this needs ${need}; you called as ${caller.role}`);
  }
}
