// The seed's API names (its routes lived under `/api/sandbox/…`) and ours, one table: the router
// answers a seed name we do not serve with a 404 that says where it went, and docs/seed-api.md
// is the same table in prose. Pure: no I/O.

export interface SeedRoute {
  method: string;
  /** The seed's path after `/api/sandbox`, `:id` for an id. */
  seed: string;
  /** Ours, after `/functions/v1/sandbox`; null: the seed's path is served as it is. */
  ours: string | null;
}

export const SEED_ROUTES: readonly SeedRoute[] = [
  { method: "POST", seed: "/workers/create", ours: "POST /workers" },
  { method: "POST", seed: "/workers/register", ours: "POST /workers" },
  { method: "GET", seed: "/workers/list", ours: "GET /workers" },
  { method: "DELETE", seed: "/workers/:id", ours: null },
  { method: "POST", seed: "/workers/:id/remove", ours: "DELETE /workers/:id" },
  { method: "POST", seed: "/execute", ours: null },
  { method: "GET", seed: "/tasks/:id/status", ours: null },
  { method: "POST", seed: "/tasks/:id/cancel", ours: "DELETE /tasks/:id" },
  { method: "POST", seed: "/tasks/:id/recover", ours: null },
  { method: "GET", seed: "/health", ours: null },
  { method: "POST", seed: "/analyze/repository", ours: null },
  { method: "POST", seed: "/analysis/start", ours: "POST /analyze/repository" },
  { method: "GET", seed: "/analysis/:id/status", ours: null },
  { method: "GET", seed: "/analysis/:id/results", ours: null },
  { method: "POST", seed: "/files/create", ours: "POST /files" },
  { method: "POST", seed: "/files/read", ours: "GET /files/<path>?workspace=…" },
  { method: "GET", seed: "/files/read", ours: "GET /files/<path>?workspace=…" },
  { method: "POST", seed: "/files/delete", ours: "DELETE /files/<path>?workspace=…" },
  { method: "DELETE", seed: "/files/delete", ours: "DELETE /files/<path>?workspace=…" },
];

const SEED_PREFIX = "/api/sandbox";
const ID = /^[^/]+$/;

/** Whether `route` (a path after the function name) is `pattern` with `:id` segments filled. */
function matches(pattern: string, route: string): boolean {
  const want = pattern.split("/");
  const got = route.split("/");
  return want.length === got.length && want.every((w, i) => (w === ":id" ? ID.test(got[i]!) : w === got[i]));
}

/**
 * For a request no route served: the seed route it names and ours instead, or null. The seed's
 * `/api/sandbox` prefix is recognised too (a client pointed at the function with the seed's paths).
 */
export function seedHint(method: string, route: string): { seed: SeedRoute; message: string } | null {
  const prefixed = route.startsWith(SEED_PREFIX + "/");
  const bare = prefixed ? route.slice(SEED_PREFIX.length) : route;
  const seed = SEED_ROUTES.find((s) => s.method === method && matches(s.seed, bare));
  // A route we serve under the seed's own name that did not match has a bad id: the router says so.
  if (!seed || (seed.ours === null && !prefixed)) return null;
  const ours = seed.ours ?? `${seed.method} ${seed.seed}`;
  return {
    seed,
    message: `no route ${method} ${route}; the seed's ${seed.method} /api/sandbox${seed.seed} is ${ours} under /functions/v1/sandbox here (docs/seed-api.md)`,
  };
}
