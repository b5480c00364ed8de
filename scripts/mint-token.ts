// `npm run token -- <user-id> [--expires-in SECONDS]`: a user JWT for the embedded default, shaped
// like the access tokens Supabase Auth issues (role authenticated, sub, exp).
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { mintUserToken } from "../embedded/keys.ts";

const USAGE = `Usage: npm run token -- <user-id (uuid)> [--expires-in SECONDS]

Prints a user access token signed with SUPABASE_JWT_SECRET (from .env.local, written by npm start).
Use it as COGO_TOKEN for the CLI or as the accessToken of a supabase-js client.`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { "expires-in": { type: "string", default: "3600" }, help: { type: "boolean", short: "h" } },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const userId = positionals[0];
if (!userId || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(userId)) {
  console.error(`a user id (uuid) is required\n\n${USAGE}`);
  process.exit(2);
}
if (!process.env.SUPABASE_JWT_SECRET && existsSync(".env.local")) process.loadEnvFile(".env.local");
const secret = process.env.SUPABASE_JWT_SECRET;
if (!secret) {
  console.error("SUPABASE_JWT_SECRET is not set; run npm start first (it writes .env.local).");
  process.exit(1);
}
console.log(await mintUserToken(secret, userId, Number(values["expires-in"])));
