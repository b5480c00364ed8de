// Data in the embedded Postgres survives a stop and start of the same data directory.
import { rm } from "node:fs/promises";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { freePort } from "../../embedded/ports.ts";
import { startPostgres } from "../../embedded/postgres.ts";

describe("embedded Postgres", () => {
  it("keeps data across restarts, owned by the postgres user", async () => {
    const dataDir = `/var/tmp/cogo-test-persist-${process.pid}`;
    const port = await freePort();
    try {
      let pg = await startPostgres({ dataDir, port });
      let sql = postgres(pg.url, { onnotice: () => {} });
      const [v] = await sql<{ v: string }[]>`select current_setting('server_version') as v`;
      expect(v!.v).toMatch(/^17\./);
      await sql`create table kept (note text)`;
      await sql`insert into kept values ('still here')`;
      await sql.end();
      await pg.stop();

      pg = await startPostgres({ dataDir, port });
      sql = postgres(pg.url, { onnotice: () => {} });
      expect(await sql`select note from kept`).toEqual([{ note: "still here" }]);
      await sql.end();
      await pg.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it.runIf(process.getuid?.() === 0)("as root, refuses a data directory under /root, saying what to do", async () => {
    await expect(startPostgres({ dataDir: "/root/cogo-data", port: await freePort() })).rejects.toThrow(/under \/root.*Pick a directory/);
  });
});
