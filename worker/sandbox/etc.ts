import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** uid/gid of the user inside the sandbox (mapped to the slot uid on the host). */
export const SANDBOX_UID = 1000;
const SANDBOX_USER = 'sandbox';

/** Generated files bound read-only over /etc/<name>, so no host account or host name leaks in. */
export function etcFiles(hostname: string): Record<string, string> {
  return {
    passwd:
      'root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n' +
      `${SANDBOX_USER}:x:${SANDBOX_UID}:${SANDBOX_UID}:${SANDBOX_USER}:/workspace:/bin/sh\n` +
      'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
    group: `root:x:0:\n${SANDBOX_USER}:x:${SANDBOX_UID}:\nnogroup:x:65534:\n`,
    hosts: `127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 ${hostname}\n`,
    'nsswitch.conf': 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n',
    hostname: `${hostname}\n`,
  };
}

const written = new Map<string, Promise<string>>();

/** Writes the generated files once per (root, hostname) and returns their directory. */
export function ensureEtc(root: string, hostname: string): Promise<string> {
  const dir = join(root, `.etc-${hostname}`);
  let done = written.get(dir);
  if (!done) {
    done = (async () => {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      for (const [name, content] of Object.entries(etcFiles(hostname))) {
        const tmp = join(dir, `.${name}.${process.pid}`);
        await writeFile(tmp, content, { mode: 0o644 });
        await rename(tmp, join(dir, name));
      }
      return dir;
    })();
    done.catch(() => written.delete(dir));
    written.set(dir, done);
  }
  return done;
}
