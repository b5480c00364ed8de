// Who is calling: every credential is proven here, never taken on its word. Shared by the edge
// function (Deno) and the embedded gateway (Node), so both apply one rule.
//
// - JWTs (user sessions, the legacy anon/service_role keys) are verified with jose: HS256 with the
//   project's JWT secret, or ES256/RS256 with the project's JWKS (Supabase's asymmetric signing
//   keys). `exp` is required; `alg: none` and every other algorithm are refused. Role and `sub`
//   come only from the verified claims.
// - API keys (`sb_publishable_…`, `sb_secret_…`) are opaque: compared, in constant time, with the
//   configured keys and never decoded.
import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload } from "jose";
import { CogoError } from "./errors.ts";

export type Role = "anon" | "authenticated" | "service_role";

export interface Caller {
  role: Role;
  /** The verified `sub` of a user token; null for keys. */
  userId: string | null;
  /** Verified claims (a key's are just its role); become `request.jwt.claims` in Postgres. */
  claims: Record<string, unknown>;
}

export interface AuthConfig {
  /** HS256 secret: the embedded default's, or a legacy hosted project's (set as COGO_JWT_SECRET). */
  jwtSecret?: string;
  /** The project's public signing keys (hosted sets SUPABASE_JWKS). */
  jwks?: JSONWebKeySet;
  /** Where to fetch the JWKS when it was not given (`<SUPABASE_URL>/auth/v1/.well-known/jwks.json`). */
  jwksUrl?: URL;
  /** Opaque keys that act as anon: publishable keys. */
  anonKeys: string[];
  /** Opaque keys that act as service_role: secret keys. */
  serviceKeys: string[];
  /**
   * Exact legacy JWT keys (SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY) the platform gave us: they
   * are accepted by comparison, so a hosted project without COGO_JWT_SECRET still takes them.
   */
  legacyKeys: string[];
}

/** Why a credential was refused; callers map it to their own error shape. */
export class AuthError extends CogoError {
  constructor(
    readonly reason: "missing" | "malformed" | "invalid" | "expired" | "forbidden_role" | "unverifiable",
    message: string,
  ) {
    super(`auth_${reason}`, message);
  }
}

/** The header by which the embedded gateway proves to a function that a request came through it. */
export const GATEWAY_HEADER = "x-cogo-gateway";

const ASYMMETRIC = ["ES256", "RS256"];
const ROLES: readonly string[] = ["anon", "authenticated", "service_role"];

/** The credential of a request: the bearer token, else the `apikey` header. */
export function credentialOf(get: (header: string) => string | null | undefined): string | undefined {
  const auth = get("authorization");
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (!m) throw new AuthError("malformed", "the Authorization header must be `Bearer <token>`");
    return m[1];
  }
  return get("apikey") ?? undefined;
}

const encoder = new TextEncoder();

const sha256 = async (s: string) => new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(s)));

/**
 * Secrets a credential is compared with, in time that does not depend on where they differ or
 * which one matched: each is hashed once, the candidate once per call, and every digest is
 * compared whole.
 */
export class SecretSet {
  #digests: Promise<Uint8Array[]> | undefined;
  constructor(private readonly secrets: readonly string[]) {}

  async has(candidate: string): Promise<boolean> {
    this.#digests ??= Promise.all(this.secrets.map(sha256));
    const [digests, c] = await Promise.all([this.#digests, sha256(candidate)]);
    let found = false;
    for (const d of digests) {
      let diff = 0;
      for (let i = 0; i < d.length; i++) diff |= d[i]! ^ c[i]!;
      found ||= diff === 0; // no early exit
    }
    return found;
  }
}

function decodePayload(jwt: string): Record<string, unknown> {
  const seg = jwt.split(".")[1] ?? "";
  const bin = atob(
    seg
      .replace(/-/g, "+")
      .replace(/_/g, "/")
      .padEnd(Math.ceil(seg.length / 4) * 4, "="),
  );
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function callerFromClaims(claims: Record<string, unknown>): Caller {
  const role = claims.role;
  if (typeof role !== "string" || !ROLES.includes(role)) {
    throw new AuthError("forbidden_role", `role ${JSON.stringify(role)} may not use this API`);
  }
  if (role !== "authenticated") {
    // A key is nobody: a `sub` on it must not become auth.uid() in Postgres.
    const { sub: _sub, ...rest } = claims;
    return { role: role as Role, userId: null, claims: rest };
  }
  // As Supabase Auth issues them: `sub` is the user's UUID, `aud` is "authenticated".
  if (typeof claims.sub !== "string" || !UUID.test(claims.sub)) throw new AuthError("invalid", "a user token's `sub` must be the user's UUID");
  const aud = claims.aud;
  if (!(aud === "authenticated" || (Array.isArray(aud) && aud.includes("authenticated")))) {
    throw new AuthError("invalid", 'a user token\'s `aud` must be "authenticated"');
  }
  return { role: "authenticated", userId: claims.sub, claims };
}

/** Verifies credentials against one project's keys; the remote JWKS is fetched once, lazily. */
export class Authenticator {
  #remote: ReturnType<typeof createRemoteJWKSet> | undefined;
  readonly #local: ReturnType<typeof createLocalJWKSet> | undefined;
  readonly #serviceKeys: SecretSet;
  readonly #anonKeys: SecretSet;
  readonly #legacyKeys: SecretSet;

  constructor(readonly config: AuthConfig) {
    this.#local = config.jwks ? createLocalJWKSet(config.jwks) : undefined;
    this.#serviceKeys = new SecretSet(config.serviceKeys);
    this.#anonKeys = new SecretSet(config.anonKeys);
    this.#legacyKeys = new SecretSet(config.legacyKeys);
  }

  /** The caller behind `token`, or an AuthError saying why not. */
  async verify(token: string | undefined): Promise<Caller> {
    if (!token) throw new AuthError("missing", "send Authorization: Bearer <user JWT, anon key or service key>");
    if (token.startsWith("sb_")) {
      if (await this.#serviceKeys.has(token)) return { role: "service_role", userId: null, claims: { role: "service_role" } };
      if (await this.#anonKeys.has(token)) return { role: "anon", userId: null, claims: { role: "anon" } };
      throw new AuthError("invalid", "unknown API key");
    }
    if (token.split(".").length !== 3) throw new AuthError("malformed", "the bearer token is not a JWT");
    if (await this.#legacyKeys.has(token)) return callerFromClaims(decodePayload(token));
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new AuthError("malformed", "the bearer token is not a JWT");
    }
    let payload: JWTPayload;
    try {
      if (alg === "HS256") {
        if (!this.config.jwtSecret) {
          throw new AuthError("unverifiable", "HS256 tokens cannot be verified here: set COGO_JWT_SECRET on the function (docs/deploy.md)");
        }
        ({ payload } = await jwtVerify(token, encoder.encode(this.config.jwtSecret), { algorithms: ["HS256"], requiredClaims: ["exp"] }));
      } else if (alg && ASYMMETRIC.includes(alg)) {
        const keys = this.#local ?? this.#remoteKeys();
        if (!keys) throw new AuthError("unverifiable", `${alg} tokens need the project's JWKS (SUPABASE_JWKS or SUPABASE_URL)`);
        ({ payload } = await jwtVerify(token, keys, { algorithms: ASYMMETRIC, requiredClaims: ["exp"] }));
      } else {
        throw new AuthError("invalid", `tokens signed with ${JSON.stringify(alg ?? null)} are not accepted`);
      }
    } catch (err) {
      if (err instanceof AuthError) throw err;
      const code = (err as { code?: string }).code;
      if (code === "ERR_JWT_EXPIRED") throw new AuthError("expired", "the token has expired");
      throw new AuthError("invalid", "the token's signature or claims are not valid for this project");
    }
    return callerFromClaims(payload as Record<string, unknown>);
  }

  #remoteKeys() {
    if (!this.config.jwksUrl) return undefined;
    this.#remote ??= createRemoteJWKSet(this.config.jwksUrl, { timeoutDuration: 5000, cooldownDuration: 30_000 });
    return this.#remote;
  }
}

/** Values of a JSON dictionary of keys (SUPABASE_PUBLISHABLE_KEYS / SUPABASE_SECRET_KEYS); a bare key too. */
function keyList(raw: string | undefined): string[] {
  if (!raw) return [];
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (parsed && typeof parsed === "object") return Object.values(parsed).filter((v): v is string => typeof v === "string" && v !== "");
  } catch {
    // a single key rather than a dictionary
  }
  return [raw];
}

/**
 * The function's keys from its environment, as hosted Supabase sets it (SUPABASE_URL,
 * SUPABASE_JWKS, SUPABASE_PUBLISHABLE_KEYS, SUPABASE_SECRET_KEYS, SUPABASE_ANON_KEY,
 * SUPABASE_SERVICE_ROLE_KEY) plus COGO_JWT_SECRET for HS256 (the platform does not pass its secret).
 */
export function authConfigFromEnv(get: (name: string) => string | undefined): AuthConfig {
  let jwks: JSONWebKeySet | undefined;
  const rawJwks = get("SUPABASE_JWKS");
  if (rawJwks) {
    try {
      const parsed = JSON.parse(rawJwks) as JSONWebKeySet;
      if (Array.isArray(parsed.keys) && parsed.keys.length > 0) jwks = parsed;
    } catch {
      throw new Error("SUPABASE_JWKS is not a JSON Web Key Set");
    }
  }
  const url = get("SUPABASE_URL");
  return {
    jwtSecret: get("COGO_JWT_SECRET") || undefined,
    jwks,
    jwksUrl: !jwks && url ? new URL("/auth/v1/.well-known/jwks.json", url) : undefined,
    anonKeys: keyList(get("SUPABASE_PUBLISHABLE_KEYS")),
    serviceKeys: keyList(get("SUPABASE_SECRET_KEYS")),
    legacyKeys: [get("SUPABASE_ANON_KEY"), get("SUPABASE_SERVICE_ROLE_KEY")].filter((k): k is string => Boolean(k)),
  };
}
