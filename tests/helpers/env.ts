// What every test file needs: the running stack, tokens, clients, and workers that are stopped
// (and checked for leaks) after each file.
import { randomUUID } from "node:crypto";
import { createClient, type RealtimeChannel, type SupabaseClient } from "@supabase/supabase-js";
import { afterAll, inject } from "vitest";
import WebSocket from "ws";
import { mintUserToken } from "../../embedded/keys.ts";
import { signJwt } from "../../embedded/jwt.ts";
import { connect } from "../../functions/_shared/db.ts";
import { Worker } from "../../worker/worker.ts";
import type { WorkerOptions } from "../../worker/config.ts";
import { createSandboxClient } from "../../sdk/index.ts";
import { WORKSPACES } from "./worker-process.ts";

export const stack = inject("stack");
export const functionsUrl = `${stack.apiUrl}/functions/v1/sandbox`;

export const sql = connect(stack.dbUrl, { max: 4 });
afterAll(() => sql.end({ timeout: 5 }));

export const newUserId = () => randomUUID();
export const userToken = (userId: string, expiresInS = 3600) => mintUserToken(stack.jwtSecret, userId, expiresInS);
export const forgedToken = (claims: Record<string, unknown>) => signJwt("not-the-project-secret-at-all-0123456789", claims);

/**
 * A fresh user with its own supabase-js client (official client, ws transport) and SDK. `limits`
 * are set by the operator first (cogo.set_tenant_limits): tests that need one user to fill a
 * worker pass `{ maxRunning: 100 }`, since a tenant holds 3/4 of a kind's capacity by default.
 */
export async function newUser(limits?: Record<string, unknown>) {
  const id = newUserId();
  if (limits) await sql`select cogo.set_tenant_limits(${id}, ${sql.json(limits as never)})`;
  const token = await userToken(id);
  const supabase = supabaseAs(token);
  await supabase.realtime.setAuth(); // so the first private join already carries the user's token
  return { id, token, supabase, sandbox: createSandboxClient(supabase) };
}

/** Runs one SQL statement as a signed-in user would reach the database (role authenticated, their claims). */
export const sqlAsUser = (userId: string, statement: string) =>
  sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ sub: userId, role: "authenticated" })}, true)`;
    return await tx.unsafe(statement);
  });

const clients: SupabaseClient[] = [];
export function supabaseAs(token: string): SupabaseClient {
  const client = createClient(stack.apiUrl, stack.anonKey, {
    accessToken: async () => token,
    realtime: { transport: WebSocket as never },
  });
  clients.push(client);
  return client;
}
afterAll(async () => {
  for (const c of clients.splice(0)) {
    await c.removeAllChannels();
    c.realtime.disconnect();
  }
});

/** Subscribes to a private topic's broadcasts (every event); resolves once SUBSCRIBED. */
export function subscribeBroadcast(supabase: SupabaseClient, topic: string, onMessage: (event: string, payload: unknown) => void): Promise<RealtimeChannel> {
  const channel = supabase.channel(topic, { config: { private: true } });
  channel.on("broadcast", { event: "*" }, ({ event, payload }) => onMessage(event, payload));
  return new Promise((resolve, reject) =>
    channel.subscribe((status, err) => {
      if (status === "SUBSCRIBED") resolve(channel);
      else if (status !== "CLOSED") reject(err ?? new Error(status));
    }),
  );
}

export async function api(method: string, route: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await fetch(functionsUrl + route, {
    method,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
      ...opts.headers,
    },
    body: opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json, headers: res.headers };
}

const workers: Worker[] = [];
/** An in-process worker of a kind no other test file uses, so files never claim each other's tasks. */
export async function startWorker(options: Partial<WorkerOptions> = {}): Promise<Worker> {
  const w = new Worker({
    databaseUrl: stack.dbUrl,
    concurrency: 4,
    // Long enough that a loaded machine (the suite must pass with every core busy) does not lose
    // leases to slow heartbeats; tests about lease expiry set their own short lease.
    leaseMs: 10_000,
    pollIntervalMs: 500,
    graceMs: 2000,
    workspaceRoot: WORKSPACES,
    log: () => {},
    ...options,
  });
  await w.start();
  workers.push(w);
  return w;
}
afterAll(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop(0)));
});

/** A worker kind unique to the calling file. */
/** Stops every live (starting or ready) sandbox of `owner`: nothing of a file's may stay up for other files' workers. */
export async function stopLiveSandboxes(owner: string): Promise<void> {
  for (const s of await sql`select id from public.sandboxes where owner = ${owner} and status in ('starting', 'ready')`) await sql`select cogo.stop_sandbox(${s.id})`;
}

export const uniqueKind = (prefix = "t") => `${prefix}-${randomUUID().slice(0, 8)}`;

export { waitFor } from "./wait.ts";
