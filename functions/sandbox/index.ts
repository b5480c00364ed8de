// COGO Sandbox API. Thin: routes live in ../_shared/routes/.
import { createApi } from "../_shared/api.ts";
import { authConfigFromEnv, Authenticator } from "../_shared/auth.ts";
import { connect } from "../_shared/db.ts";
import { isPostgresClosedSocketWrite, isPostgresTypeFetchFailure } from "../_shared/postgres-closed-socket.ts";

globalThis.addEventListener("error", (e) => {
  if (isPostgresClosedSocketWrite(e.error)) e.preventDefault(); // see postgres-closed-socket.ts
});
globalThis.addEventListener("unhandledrejection", (e) => {
  if (isPostgresTypeFetchFailure(e.reason)) e.preventDefault(); // see postgres-closed-socket.ts
});

const dbUrl = Deno.env.get("SUPABASE_DB_URL");
if (!dbUrl) throw new Error("SUPABASE_DB_URL is not set; Supabase sets it for every function");

const PLATFORM_ENV = ["SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_URL"];

Deno.serve(
  createApi(connect(dbUrl, { max: 10 }), {
    runtime: {
      runtime: `deno ${Deno.version.deno}`,
      env: Object.fromEntries(PLATFORM_ENV.map((k) => [k, Boolean(Deno.env.get(k))])),
    },
    auth: new Authenticator(authConfigFromEnv((k) => Deno.env.get(k))),
    gatewaySecret: Deno.env.get("COGO_GATEWAY_SECRET") || undefined,
  }),
);
