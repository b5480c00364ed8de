/** uid/gid of the user inside the sandbox (mapped to the slot uid on the host). */
export const SANDBOX_UID = 1000;
const SANDBOX_USER = 'sandbox';

/**
 * Generated /etc/<name> files (bwrap writes them into the sandbox's root, read-only), so no host
 * account or host name leaks in.
 */
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
