// The project's JWT secret (made once, kept in the data dir) and the anon/service_role keys signed
// with it, shaped like the keys `supabase start` prints.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { signJwt } from "./jwt.ts";

export interface ProjectKeys {
  jwtSecret: string;
  anonKey: string;
  serviceRoleKey: string;
}

export async function loadOrCreateKeys(dataDir: string): Promise<ProjectKeys> {
  const file = path.join(dataDir, "jwt-secret");
  if (!existsSync(file)) {
    await writeFile(file, randomBytes(32).toString("base64url") + "\n", { mode: 0o600, flag: "wx" });
  }
  const jwtSecret = (await readFile(file, "utf8")).trim();
  return {
    jwtSecret,
    anonKey: await signJwt(jwtSecret, { iss: "supabase-demo", role: "anon" }),
    serviceRoleKey: await signJwt(jwtSecret, { iss: "supabase-demo", role: "service_role" }),
  };
}

/** A user token as Supabase Auth would issue it: role authenticated, sub = user id. */
export async function mintUserToken(jwtSecret: string, userId: string, expiresInS = 3600): Promise<string> {
  return await signJwt(jwtSecret, { iss: "supabase-demo", aud: "authenticated", role: "authenticated", sub: userId }, expiresInS);
}
