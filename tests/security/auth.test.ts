// The API's trust boundary, tried as an attacker holding the anon key and a user token would:
// forged tokens in every shape, through the gateway, straight at the function's own port, and
// against the function's own check alone (the handler with no gateway in front, as on a hosted
// project whose verify_jwt is off). Every case asserts the refusal and that nothing was written.
import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { functionKeyEnv, loadOrCreateKeys, mintAsymmetricUserToken, type ProjectKeys } from "../../embedded/keys.ts";
import { signJwt } from "../../embedded/jwt.ts";
import { createApi } from "../../functions/_shared/api.ts";
import { authConfigFromEnv, Authenticator, GATEWAY_HEADER } from "../../functions/_shared/auth.ts";
import { api, forgedToken, functionsUrl, newUser, sql, stack, uniqueKind, userToken } from "../helpers/env.ts";

const b64url = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

let keys: ProjectKeys;
let victim: Awaited<ReturnType<typeof newUser>>;
let victimTask: string;
/** The function's handler alone, with the keys the stack gives the function and no gateway. */
let handler: (req: Request) => Promise<Response>;

beforeAll(async () => {
  keys = await loadOrCreateKeys(stack.dataDir);
  handler = createApi(sql, {
    runtime: { runtime: "node (test)", env: {} },
    auth: new Authenticator(authConfigFromEnv((k) => functionKeyEnv(keys)[k])),
  });
  victim = await newUser();
  // Queued for a kind no worker serves: it stays put, so anything done to it shows.
  const r = await api("POST", "/execute", { token: victim.token, body: { command: "cat", requirements: { kind: uniqueKind("auth-victim") } } });
  expect(r.status).toBe(202);
  victimTask = r.body.taskId;
});

/** Every forged credential, as headers. Each must be refused everywhere. */
async function forgeries(): Promise<[string, Record<string, string>][]> {
  const header = { alg: "HS256", typ: "JWT" };
  const valid = await userToken(randomUUID());
  const [h, , s] = valid.split(".");
  const other = await generateKeyPair("ES256");
  const otherProject = await new SignJWT({ role: "service_role", exp: now() + 3600 }).setProtectedHeader({ alg: "ES256", kid: keys.signingKey.kid }).sign(other.privateKey);
  return [
    // The reported bypass: an `sb_` bearer whose middle is base64 claims, plus the anon key as sb-api-key.
    ["sb_ bearer with service_role claims", { authorization: `Bearer sb_x.${b64url({ role: "service_role" })}.y`, "sb-api-key": stack.anonKey }],
    ["sb_ bearer impersonating the victim", { authorization: `Bearer sb_x.${b64url({ role: "authenticated", sub: victim.id })}.y`, "sb-api-key": stack.anonKey }],
    ["unknown sb_secret key", { authorization: `Bearer sb_secret_${"A".repeat(32)}` }],
    ["unknown sb_publishable key in apikey", { apikey: `sb_publishable_${"A".repeat(32)}` }],
    ["alg none", { authorization: `Bearer ${b64url({ alg: "none", typ: "JWT" })}.${b64url({ role: "service_role", exp: now() + 3600 })}.` }],
    ["wrong HS256 secret", { authorization: `Bearer ${await forgedToken({ role: "service_role" })}` }],
    ["expired user token", { authorization: `Bearer ${await userToken(victim.id, -60)}` }],
    ["tampered claims, real signature", { authorization: `Bearer ${h}.${b64url({ role: "service_role", exp: now() + 3600 })}.${s}` }],
    ["victim's sub on a real signature", { authorization: `Bearer ${h}.${b64url({ role: "authenticated", sub: victim.id, exp: now() + 3600 })}.${s}` }],
    ["another project's ES256 key, our kid", { authorization: `Bearer ${otherProject}` }],
    ["HS256 signed with the public JWK", { authorization: `Bearer ${await signJwt(JSON.stringify(await exportJWK(other.publicKey)), { role: "service_role" })}` }],
    ["no exp", { authorization: `Bearer ${b64url(header)}.${b64url({ role: "service_role" })}.${s}` }],
    ["not a bearer", { authorization: `Basic ${b64url("service_role:x")}` }],
  ];
}

/** What an attacker tries with a credential: read, write stdin, cancel, the fleet, metrics. */
const attacks = () =>
  [
    ["GET", `/tasks/${victimTask}`, undefined],
    ["GET", `/tasks/${victimTask}/output`, undefined],
    ["POST", `/tasks/${victimTask}/stdin`, { data: "pwned\n" }],
    ["DELETE", `/tasks/${victimTask}`, undefined],
    ["GET", "/metrics", undefined],
    ["POST", "/workers", { name: `evil-${victimTask.slice(0, 8)}`, kind: "evil" }],
  ] as const;

async function expectNothingWritten() {
  const [task] = await sql<{ status: string; cancelRequestedAt: Date | null }[]>`
    select status, cancel_requested_at from public.tasks where id = ${victimTask}`;
  expect(task).toEqual({ status: "queued", cancelRequestedAt: null });
  const [stdin] = await sql<{ n: number }[]>`select count(*)::int as n from public.task_stdin where task_id = ${victimTask}`;
  expect(stdin?.n).toBe(0);
  const [workers] = await sql<{ n: number }[]>`select count(*)::int as n from public.workers where name like 'evil-%'`;
  expect(workers?.n).toBe(0);
}

describe("forged credentials", () => {
  it("are refused by the gateway (401) on every route, and nothing is written", async () => {
    let tried = 0;
    for (const [name, headers] of await forgeries()) {
      for (const [method, route, body] of attacks()) {
        const r = await api(method, route, { headers, body });
        expect([name, method, route, r.status]).toEqual([name, method, route, 401]);
        expect(r.body.code, name).toMatch(/^UNAUTHORIZED_/);
        tried++;
      }
    }
    expect(tried).toBeGreaterThanOrEqual(13 * 6);
    await expectNothingWritten();
  });

  it("are refused by the function's own check with no gateway in front (401/403), and nothing is written", async () => {
    for (const [name, headers] of await forgeries()) {
      for (const [method, route, body] of attacks()) {
        const res = await handler(
          new Request(`http://function.local/sandbox${route}`, {
            method,
            headers: { ...headers, ...(body ? { "content-type": "application/json" } : {}) },
            body: body ? JSON.stringify(body) : undefined,
          }),
        );
        const json = (await res.json()) as { error: { code: string; message: string } };
        expect([name, method, route, res.status, json.error.code]).toEqual([name, method, route, 401, "unauthorized"]);
      }
    }
    await expectNothingWritten();
  });

  it("a validly signed token with a role the API does not know is 403; a user token without sub is 401", async () => {
    const admin = await signJwt(stack.jwtSecret, { role: "supabase_admin" });
    expect((await api("GET", "/health", { token: admin })).status).toBe(401); // the gateway: not one of ours
    const res = await handler(new Request("http://f/sandbox/health", { headers: { authorization: `Bearer ${admin}` } }));
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe('role "supabase_admin" may not use this API');
    for (const [name, claims] of [
      ["no sub", { role: "authenticated", aud: "authenticated" }],
      ["sub not a UUID", { role: "authenticated", aud: "authenticated", sub: "not-a-uuid" }],
      ["no aud", { role: "authenticated", sub: victim.id }],
      ["aud of another audience", { role: "authenticated", aud: "other", sub: victim.id }],
    ] as const) {
      const token = await signJwt(stack.jwtSecret, claims);
      const r = await handler(new Request(`http://f/sandbox/tasks/${victimTask}`, { headers: { authorization: `Bearer ${token}` } }));
      expect([name, r.status]).toEqual([name, 401]);
    }
  });

  it("a key carrying a user's sub is still nobody: it cannot reach that user's tasks", async () => {
    // Signed with the project's secret: only someone holding it could make this, but a `sub` on a
    // key must never become auth.uid() all the same.
    const anonWithSub = await signJwt(stack.jwtSecret, { role: "anon", sub: victim.id });
    const caller = await new Authenticator({ jwtSecret: stack.jwtSecret, anonKeys: [], serviceKeys: [], legacyKeys: [] }).verify(anonWithSub);
    expect(caller).toMatchObject({ role: "anon", userId: null });
    expect(caller.claims).not.toHaveProperty("sub"); // so auth.uid() is null in Postgres
    for (const [method, route, body] of attacks().filter(([, r]) => r.startsWith("/tasks"))) {
      const res = await handler(
        new Request(`http://f/sandbox${route}`, {
          method,
          headers: { authorization: `Bearer ${anonWithSub}`, "content-type": "application/json" },
          body: body ? JSON.stringify(body) : undefined,
        }),
      );
      expect([method, route, res.status >= 400 && res.status < 500]).toEqual([method, route, true]);
    }
    await expectNothingWritten();
  });
});

describe("the function's own port", () => {
  it("refuses every caller that skipped the gateway, even with a valid service key", async () => {
    const direct = `http://127.0.0.1:${stack.functionPort}/sandbox`;
    for (const [method, route, body] of attacks()) {
      for (const headers of <Record<string, string>[]>[
        { authorization: `Bearer ${stack.serviceRoleKey}` },
        { authorization: `Bearer ${stack.serviceRoleKey}`, [GATEWAY_HEADER]: "guessed" },
        { authorization: `Bearer sb_x.${b64url({ role: "service_role" })}.y` },
      ]) {
        const res = await fetch(direct + route, { method, headers: { ...headers, "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
        const json = (await res.json()) as { error: { code: string } };
        expect([method, route, res.status, json.error.code]).toEqual([method, route, 401, "gateway_required"]);
      }
    }
    await expectNothingWritten();
  });

  it("a client's own gateway header is replaced by the gateway (the request still needs a real key)", async () => {
    const r = await api("GET", "/health", { headers: { [GATEWAY_HEADER]: "anything" } });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe("UNAUTHORIZED_NO_AUTH_HEADER");
  });
});

describe("real credentials", () => {
  it("publishable and secret API keys act as anon and service_role; they are compared, not decoded", async () => {
    const pub = await api("GET", "/health", { headers: { authorization: `Bearer ${keys.publishableKey}` } });
    expect(pub.status).toBe(200);
    const pubMetrics = await api("GET", "/metrics", { headers: { authorization: `Bearer ${keys.publishableKey}` } });
    expect(pubMetrics.status).toBe(403);
    const secret = await fetch(`${functionsUrl}/metrics`, { headers: { authorization: `Bearer ${keys.secretKey}` } });
    expect(secret.status).toBe(200);
    // One character off is unknown, wherever it differs.
    const off = keys.secretKey.slice(0, -1) + (keys.secretKey.endsWith("A") ? "B" : "A");
    expect((await api("GET", "/metrics", { headers: { authorization: `Bearer ${off}` } })).status).toBe(401);
    const apikeyOnly = await api("GET", "/health", { headers: { apikey: keys.publishableKey } });
    expect(apikeyOnly.status).toBe(200);
  });

  it("an ES256 user token signed with the project's key (JWKS) is that user, and sees only their tasks", async () => {
    const token = await mintAsymmetricUserToken(keys.signingKey, victim.id);
    const mine = await api("GET", `/tasks/${victimTask}`, { token });
    expect(mine.status).toBe(200);
    expect(mine.body.id).toBe(victimTask);
    const stranger = await mintAsymmetricUserToken(keys.signingKey, randomUUID());
    const theirs = await api("GET", `/tasks/${victimTask}`, { token: stranger });
    expect(theirs.status).toBe(404);
    const expired = await mintAsymmetricUserToken(keys.signingKey, victim.id, -60);
    expect((await api("GET", `/tasks/${victimTask}`, { token: expired })).status).toBe(401);
  });
});
