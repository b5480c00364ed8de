// The functions gateway: JWT verification like Supabase's, CORS, the env the hosted runtime gives.
import { describe, expect, it } from "vitest";
import { api, forgedToken, stack, userToken, newUserId } from "../helpers/env.ts";

describe("functions gateway", () => {
  it("401 without a key, with the edge runtime's error shape", async () => {
    const r = await api("GET", "/health");
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ code: "UNAUTHORIZED_NO_AUTH_HEADER", message: "Missing authorization header" });
    expect(r.headers.get("sb-error-code")).toBe("UNAUTHORIZED_NO_AUTH_HEADER");
  });

  it("401 with a token signed by another secret, and with an expired one", async () => {
    const forged = await api("GET", "/health", { token: await forgedToken({ role: "service_role" }) });
    expect(forged.status).toBe(401);
    expect(forged.body.message).toBe("Invalid JWT");
    const expired = await api("GET", "/health", { token: await userToken(newUserId(), -60) });
    expect(expired.status).toBe(401);
    const garbage = await api("GET", "/health", { token: "not.a.jwt" });
    expect(garbage.status).toBe(401);
  });

  it("200 with the anon key; the function runs in Deno with the platform env", async () => {
    const r = await api("GET", "/health", { token: stack.anonKey });
    expect(r.status).toBe(200);
    expect(r.body.function.runtime).toMatch(/^deno 2\./);
    expect(r.body.function.env).toEqual({ SUPABASE_URL: true, SUPABASE_ANON_KEY: true, SUPABASE_SERVICE_ROLE_KEY: true, SUPABASE_DB_URL: true });
    expect(r.body.db.ok).toBe(true);
  });

  it("answers CORS preflight without a token", async () => {
    const res = await fetch(`${stack.apiUrl}/functions/v1/sandbox/execute`, {
      method: "OPTIONS",
      headers: { origin: "http://example.test", "access-control-request-method": "POST" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-headers")).toContain("authorization");
  });

  it("404 for an unknown function", async () => {
    const res = await fetch(`${stack.apiUrl}/functions/v1/nope`, { headers: { authorization: `Bearer ${stack.anonKey}` } });
    expect(res.status).toBe(404);
    expect(await res.text()).toBe("Function not found");
  });
});
