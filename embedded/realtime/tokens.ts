// The JWT rules of the hosted Realtime server (channels_authorization.ex, jwt_verification.ex):
// HS256 with the project secret, and the claims `role` and `exp` must be present.
import { errors } from "jose";
import { verifyJwt, type Claims } from "../jwt.ts";
import { RealtimeError } from "./errors.ts";

export type TokenFailure = "expired" | "missing_claims" | "malformed" | "signature";

/** `code` and `message` are the hosted server's; join errors join them as "code: message". */
export class TokenError extends RealtimeError {
  readonly failure: TokenFailure;
  constructor(failure: TokenFailure, code: string, message: string) {
    super(code, message);
    this.failure = failure;
  }

  /** The body of the 401 the server answers a refused WebSocket upgrade with (user_socket.ex). */
  get connectMessage(): string {
    return this.failure === "expired" ? "Token has expired" : this.message;
  }
}

/** Realtime strips whitespace (and URI escapes) from tokens before verifying them. */
function cleanToken(token: string): string {
  let decoded = token;
  try {
    decoded = decodeURIComponent(token);
  } catch {
    // not URI-encoded; keep as is
  }
  return decoded.replace(/\s/g, "");
}

/**
 * Tokens that verified, so the same token on every join (supabase-js sends it each time; a flood
 * sends the anon key thousands of times) costs one HMAC, not one per join. Expiry is checked on
 * each use; a failed verification is never kept.
 */
const VERIFIED_MAX = 1024;
const verified = new Map<string, { secret: string; claims: Claims }>();

function remembered(secret: string, token: string): Claims | undefined {
  const hit = verified.get(token);
  if (!hit || hit.secret !== secret) return undefined;
  verified.delete(token);
  if ((hit.claims.exp as number) * 1000 <= Date.now()) return undefined;
  verified.set(token, hit); // most recently used last
  return hit.claims;
}

function remember(secret: string, token: string, claims: Claims): void {
  if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value!);
  verified.set(token, { secret, claims });
}

export async function verifyRealtimeToken(secret: string, token: string): Promise<Claims> {
  const known = remembered(secret, token);
  if (known) return known;
  let claims: Claims;
  try {
    claims = await verifyJwt(secret, cleanToken(token));
  } catch (err) {
    if (err instanceof errors.JWTExpired) {
      const exp = typeof err.payload.exp === "number" ? err.payload.exp : 0;
      const ago = Math.floor(Date.now() / 1000) - exp;
      throw new TokenError("expired", "InvalidJWTToken", `Token has expired ${ago} seconds ago`);
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) {
      throw new TokenError("signature", "JwtSignatureError", "Failed to validate JWT signature");
    }
    throw new TokenError("malformed", "MalformedJWT", "The token provided is not a valid JWT");
  }
  if (!("role" in claims) || typeof claims.exp !== "number") {
    throw new TokenError("missing_claims", "InvalidJWTToken", "Fields `role` and `exp` are required in JWT");
  }
  remember(secret, token, claims);
  return claims;
}
