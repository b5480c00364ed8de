// HS256 JWTs signed with the project's secret, as Supabase's legacy keys and Auth tokens are.
import { jwtVerify, SignJWT, type JWTPayload } from "jose";

export type Claims = JWTPayload & { role?: string };

const TEN_YEARS_S = 10 * 365 * 24 * 3600;

export async function signJwt(secret: string, claims: Claims, expiresInS = TEN_YEARS_S): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({ iat: now, exp: now + expiresInS, ...claims }).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(new TextEncoder().encode(secret));
}

/** Verifies signature and expiry; throws on anything else. */
export async function verifyJwt(secret: string, token: string): Promise<Claims> {
  const { payload } = await jwtVerify(token, new TextEncoder().encode(secret), { algorithms: ["HS256"] });
  return payload as Claims;
}
