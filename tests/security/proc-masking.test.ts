// What a task learns about the host from /proc: the entries Docker masks (and the kernel's boot
// command line, build config, pressure figures) read empty, and neither PID 1's command line nor
// the mount table names a host path or the host uid the task runs as.
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { PROC_MASKED_DIRS, PROC_MASKED_FILES } from "../../worker/sandbox/bwrap.ts";
import { SECURITY_UID_BASE, securitySuite } from "./helpers.ts";

const s = securitySuite("proc");

const files = PROC_MASKED_FILES.filter((n) => existsSync(`/proc/${n}`));
const dirs = PROC_MASKED_DIRS.filter((n) => existsSync(`/proc/${n}`));
/** tmpfs mounts bwrap makes itself: the kernel prints their owner (the slot uid) in their options. */
const BWRAP_TMPFS = new Set(["/", "/dev", "/tmp", "/dev/shm", ...dirs.map((d) => `/proc/${d}`)]);

describe("/proc masking", () => {
  it("masked files read empty and take no writes to the host; masked directories are empty and read-only", async () => {
    // The host has them (else there is nothing to show); the check below must see them unmasked.
    expect(files).toEqual(expect.arrayContaining(["cmdline", "config.gz", "kallsyms", "keys", "timer_list"]));
    expect(dirs).toEqual(expect.arrayContaining(["pressure"]));
    const r = await s.run({
      command: [
        ...files.map((f) => `printf '%s %s\\n' ${f} "$(cat /proc/${f} | wc -c)"`),
        ...dirs.map((d) => `printf '%s %s\\n' ${d} "$(ls -A /proc/${d} | wc -l)"; { touch /proc/${d}/x 2>/dev/null && echo ${d} writable; true; }`),
      ].join("; "),
    });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe([...files.map((f) => `${f} 0`), ...dirs.map((d) => `${d} 0`), ""].join("\n"));
    await s.expectHealthy();
  });

  it("the same files are not empty on the host (so the check above can fail)", async () => {
    expect(readFileSync("/proc/cmdline", "utf8").length).toBeGreaterThan(0);
    expect(readFileSync("/proc/timer_list", "utf8").length).toBeGreaterThan(0);
  });

  it("PID 1's command line and the mount table name no host path and no host uid", async () => {
    const command = "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/self/mountinfo";
    const r = await s.run({ command });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    const [cmdline, ...mountinfo] = r.stdout.trimEnd().split("\n");
    // bwrap reads its options from a descriptor: its argv is just that and the task's command.
    expect(cmdline).toBe(`/usr/bin/bwrap --args 4 -- /bin/sh -c ${command} `);
    for (const line of [cmdline!, ...mountinfo]) {
      for (const hostPath of [s.root, "/var/tmp", "cogo-sec", ".etc-"]) expect({ line, hostPath, found: line.includes(hostPath) }).toMatchObject({ found: false });
    }
    // The slot uid shows only where the kernel prints it itself: as the owner of bwrap's own tmpfs
    // mounts (in the initial user namespace's terms), never in what the worker mounts or binds.
    const inSlotRange = (uid: number) => uid >= SECURITY_UID_BASE && uid < SECURITY_UID_BASE + 10_000;
    let owned = 0;
    for (const line of mountinfo) {
      const mountPoint = line.split(" ")[4]!;
      const owner = / - tmpfs tmpfs .*,uid=(\d+),gid=(\d+)$/.exec(line);
      if (owner && BWRAP_TMPFS.has(mountPoint)) {
        expect(inSlotRange(Number(owner[1])) && owner[1] === owner[2]).toBe(true);
        owned++;
      }
      const rest = owner && BWRAP_TMPFS.has(mountPoint) ? line.slice(0, owner.index) : line;
      expect({ line, slotUid: (rest.match(/\d+/g) ?? []).map(Number).some(inSlotRange) }).toMatchObject({ slotUid: false });
    }
    expect(owned).toBe(BWRAP_TMPFS.size);
    expect(mountinfo.find((l) => l.split(" ")[4] === "/workspace")).toMatch(/ - tmpfs cogo-workspace rw,size=\d+k,mode=7[01][01]$/);
    await s.expectHealthy();
  });
});
