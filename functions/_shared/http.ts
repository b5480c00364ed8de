// HTTP plumbing for the edge function: typed errors to responses, CORS, caller claims.
import { CogoError } from "./errors.ts";

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
  "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
};

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...corsHeaders, "content-type": "application/json" },
  });
}

const SQLSTATE_STATUS: Record<string, [number, string]> = {
  CG401: [403, "forbidden"],
  CG404: [404, "not_found"],
  CG409: [409, "conflict"],
  CG413: [413, "too_large"],
  "22023": [400, "invalid_parameter"],
  "23514": [400, "check_violation"],
};

/** Maps any thrown value to a JSON error response; unknown errors are 500 without internals. */
export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError) {
    return json(err.status, { error: { code: err.code, message: err.message, ...(err.details ?? {}) } });
  }
  const pg = err as { code?: string; message?: string };
  const mapped = pg?.code ? SQLSTATE_STATUS[pg.code] : undefined;
  if (mapped) return json(mapped[0], { error: { code: mapped[1], message: pg.message } });
  console.error("unhandled error", err);
  return json(500, { error: { code: "internal", message: "internal error; see the function log" } });
}

export type Role = "anon" | "authenticated" | "service_role";

export interface Caller {
  role: Role;
  userId: string | null;
  claims: Record<string, unknown>;
}

function decodeSegment(seg: string): unknown {
  const b64 = seg.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(seg.length / 4) * 4, "=");
  const bin = atob(b64);
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
}

/**
 * The caller from the bearer token. The signature was checked before the request reached us
 * (verify_jwt = true in supabase/config.toml, on the embedded gateway and on Supabase alike).
 */
export function callerFrom(req: Request): Caller {
  const auth = req.headers.get("authorization") ?? "";
  const token = auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
  const parts = token.split(".");
  if (parts.length !== 3) throw new HttpError(401, "unauthorized", "send Authorization: Bearer <anon key, service key or user JWT>");
  let claims: Record<string, unknown>;
  try {
    claims = decodeSegment(parts[1]!) as Record<string, unknown>;
  } catch {
    throw new HttpError(401, "unauthorized", "the bearer token is not a JWT");
  }
  const role = claims.role;
  if (role !== "anon" && role !== "authenticated" && role !== "service_role") {
    throw new HttpError(403, "forbidden", `role ${JSON.stringify(role)} may not use this API`);
  }
  const sub = typeof claims.sub === "string" ? claims.sub : null;
  return { role, userId: role === "authenticated" ? sub : null, claims };
}

export function requireRole(caller: Caller, ...roles: Role[]): void {
  if (!roles.includes(caller.role)) {
    const need = roles.map((r) => (r === "authenticated" ? "a user token" : r === "service_role" ? "the service key" : r)).join(" or ");
    throw new HttpError(403, "forbidden", `this needs ${need}; you called as ${caller.role}`);
  }
}
