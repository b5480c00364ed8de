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

export async function verifyRealtimeToken(secret: string, token: string): Promise<Claims> {
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
  return claims;
}
