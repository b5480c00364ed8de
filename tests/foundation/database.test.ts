// The embedded database is shaped like a Supabase one: roles, auth helpers, realtime pieces.
import { describe, expect, it } from "vitest";
import { sql } from "../helpers/env.ts";

describe("Supabase-shaped database", () => {
  it("has the Supabase roles with their attributes", async () => {
    const roles = await sql<{ rolname: string; rolbypassrls: boolean; rolcanlogin: boolean; rolinherit: boolean }[]>`
      select rolname, rolbypassrls, rolcanlogin, rolinherit from pg_roles
       where rolname in ('anon', 'authenticated', 'service_role', 'authenticator') order by rolname`;
    expect(roles).toEqual([
      { rolname: "anon", rolbypassrls: false, rolcanlogin: false, rolinherit: false },
      { rolname: "authenticated", rolbypassrls: false, rolcanlogin: false, rolinherit: false },
      { rolname: "authenticator", rolbypassrls: false, rolcanlogin: true, rolinherit: false },
      { rolname: "service_role", rolbypassrls: true, rolcanlogin: false, rolinherit: false },
    ]);
    const [m] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_auth_members am join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member
       where m.rolname = 'authenticator' and r.rolname in ('anon', 'authenticated', 'service_role')`;
    expect(m!.n).toBe(3);
  });

  it("auth.uid(), auth.role() and auth.jwt() read request.jwt.claims as Supabase defines them", async () => {
    const claims = { sub: "0b0e6c4a-1b43-4bc4-8b0e-c56a6f4b1111", role: "authenticated", email: "a@b.c" };
    const [row] = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
      return await tx<{ uid: string; role: string; email: string; jwt: typeof claims }[]>`
        select auth.uid() as uid, auth.role() as role, auth.email() as email, auth.jwt() as jwt`;
    });
    expect(row).toEqual({ uid: claims.sub, role: "authenticated", email: "a@b.c", jwt: claims });
    // The legacy per-claim setting wins, as in Supabase's definition.
    const [legacy] = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                      set_config('request.jwt.claim.sub', '11111111-1111-4111-8111-111111111111', true)`;
      return await tx<{ uid: string }[]>`select auth.uid() as uid`;
    });
    expect(legacy!.uid).toBe("11111111-1111-4111-8111-111111111111");
    const [none] = await sql<{ uid: string | null; jwt: unknown }[]>`select auth.uid() as uid, auth.jwt() as jwt`;
    expect(none).toEqual({ uid: null, jwt: null });
  });

  it("realtime.send stores a broadcast row with Supabase's columns and never raises", async () => {
    const topic = `db-test-${Date.now()}`;
    await sql`select realtime.send(${sql.json({ hello: "world" })}, 'greet', ${topic}, false)`;
    const [row] = await sql<{ topic: string; event: string; private: boolean; extension: string; payload: { hello: string; id: string } }[]>`
      select topic, event, private, extension, payload from realtime.messages where topic = ${topic}`;
    expect(row).toMatchObject({ topic, event: "greet", private: false, extension: "broadcast", payload: { hello: "world" } });
    expect(row!.payload.id).toMatch(/^[0-9a-f-]{36}$/);
    const [topicFn] = await sql.begin(async (tx) => {
      await tx`select set_config('realtime.topic', 'room-1', true)`;
      return await tx<{ t: string }[]>`select realtime.topic() as t`;
    });
    expect(topicFn!.t).toBe("room-1");
    // An invalid payload type is a warning, not an error, as on Supabase.
    await expect(sql`select realtime.send('[1]'::jsonb, 'e', 't', true)`).resolves.toBeDefined();
  });

  it("realtime.messages has RLS on and the signatures Supabase has", async () => {
    const [rls] = await sql<{ relrowsecurity: boolean }[]>`select relrowsecurity from pg_class where oid = 'realtime.messages'::regclass`;
    expect(rls!.relrowsecurity).toBe(true);
    const fns = await sql<{ sig: string }[]>`
      select p.oid::regprocedure::text as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname in ('realtime', 'auth') and p.proname in ('send', 'topic', 'uid', 'role', 'jwt', 'broadcast_changes') order by 1`;
    expect(fns.map((f) => f.sig)).toEqual([
      "auth.jwt()",
      "auth.role()",
      "auth.uid()",
      "realtime.broadcast_changes(text,text,text,text,text,record,record,text)",
      "realtime.send(jsonb,text,text,boolean)",
      "realtime.topic()",
    ]);
  });
});
