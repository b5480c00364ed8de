// The project's keys, made once and kept in the data dir, shaped like what `supabase start` and a
// hosted project give: an HS256 JWT secret with the legacy anon/service_role keys signed by it,
// opaque publishable/secret API keys, and an ES256 signing key whose public half is the JWKS.
import { createHmac, randomBytes } from "node:crypto";
import path from "node:path";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JSONWebKeySet, type JWK } from "jose";
import { signJwt } from "./jwt.ts";
import { loadOrCreatePrivateFile } from "./private-files.ts";

export interface ProjectKeys {
  jwtSecret: string;
  anonKey: string;
  serviceRoleKey: string;
  /** `sb_publishable_…`: acts as anon; opaque, compared and never decoded. */
  publishableKey: string;
  /** `sb_secret_…`: acts as service_role. */
  secretKey: string;
  /** Public half of the ES256 signing key, as hosted serves at /auth/v1/.well-known/jwks.json. */
  jwks: JSONWebKeySet;
  /** Private ES256 key (JWK) that signs asymmetric user tokens (mintAsymmetricUserToken). */
  signingKey: JWK;
}

/** An opaque key derived from the secret, so it needs no file of its own and changes with a reset. */
const derivedKey = (prefix: string, secret: string) => `${prefix}${createHmac("sha256", secret).update(prefix).digest("base64url").slice(0, 32)}`;

async function newSigningKey(): Promise<string> {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  return JSON.stringify({ ...(await exportJWK(privateKey)), kid: randomBytes(8).toString("hex"), alg: "ES256", use: "sig" });
}

export async function loadOrCreateKeys(dataDir: string): Promise<ProjectKeys> {
  const jwtSecret = await loadOrCreatePrivateFile(path.join(dataDir, "jwt-secret"), () => randomBytes(32).toString("base64url"));
  const signingKey = JSON.parse(await loadOrCreatePrivateFile(path.join(dataDir, "signing-key.json"), newSigningKey)) as JWK;
  const { d: _private, ...publicJwk } = signingKey;
  return {
    jwtSecret,
    anonKey: await signJwt(jwtSecret, { iss: "supabase-demo", role: "anon" }),
    serviceRoleKey: await signJwt(jwtSecret, { iss: "supabase-demo", role: "service_role" }),
    publishableKey: derivedKey("sb_publishable_", jwtSecret),
    secretKey: derivedKey("sb_secret_", jwtSecret),
    jwks: { keys: [publicJwk] },
    signingKey,
  };
}

/**
 * The keys as hosted Supabase passes them to a function, plus the HS256 secret as COGO_JWT_SECRET
 * (which hosted does not pass; docs/auth.md). Read by authConfigFromEnv.
 */
export function functionKeyEnv(keys: ProjectKeys): Record<string, string> {
  return {
    SUPABASE_ANON_KEY: keys.anonKey,
    SUPABASE_SERVICE_ROLE_KEY: keys.serviceRoleKey,
    SUPABASE_PUBLISHABLE_KEYS: JSON.stringify({ default: keys.publishableKey }),
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: keys.secretKey }),
    SUPABASE_JWKS: JSON.stringify(keys.jwks),
    COGO_JWT_SECRET: keys.jwtSecret,
  };
}

/** A user token as Supabase Auth would issue it: role authenticated, sub = user id. */
export async function mintUserToken(jwtSecret: string, userId: string, expiresInS = 3600): Promise<string> {
  return await signJwt(jwtSecret, { iss: "supabase-demo", aud: "authenticated", role: "authenticated", sub: userId }, expiresInS);
}

/** A user token signed with the project's asymmetric key, as projects on signing keys issue them. */
export async function mintAsymmetricUserToken(signingKey: JWK, userId: string, expiresInS = 3600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({ iss: "supabase-demo", aud: "authenticated", role: "authenticated", sub: userId, iat: now, exp: now + expiresInS })
    .setProtectedHeader({ alg: "ES256", typ: "JWT", kid: signingKey.kid })
    .sign(await importJWK(signingKey, "ES256"));
}
