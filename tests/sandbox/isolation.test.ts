import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect, isRoot, slotUid, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();

/** Node inside the sandbox tries a TCP connection and prints CONNECTED or the error code. */
const connectProbe = (port: number) => [
  'node',
  '-e',
  `require('net').connect(${port}, '127.0.0.1')
    .on('connect', () => { console.log('CONNECTED'); process.exit(0); })
    .on('error', (e) => { console.log('ERR ' + e.code); process.exit(3); });`,
];

describe('network', () => {
  let server: Server;
  let port = 0;
  let accepted = 0;
  beforeAll(async () => {
    server = createServer((s) => {
      accepted++;
      s.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('cannot reach a port listening on the host', async () => {
    const r = await sb.run({ command: connectProbe(port) });
    expect(r.stdout).toBe('ERR ECONNREFUSED\n');
    expect(accepted).toBe(0);
  });

  it('stays off when the task asks for network but the worker does not allow it', async () => {
    const r = await sb.run({ command: connectProbe(port), network: true });
    expect(r.stdout).toBe('ERR ECONNREFUSED\n');
    expect(accepted).toBe(0);
  });

  it('reaches the host when both task and worker allow it (the probe itself works)', async () => {
    const r = await sb.run({ command: connectProbe(port), network: true }, { allowNetwork: true });
    expect(r.stdout).toBe('CONNECTED\n');
    expect(accepted).toBe(1);
  });

  it('has no DNS and only a loopback interface', async () => {
    const r = await sb.run({
      command: [
        'getent hosts example.com; echo "getent=$?"',
        `node -e "require('dns').lookup('example.com', (e) => console.log('lookup=' + (e ? e.code : 'ok')))"`,
        'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "',
      ].join('; '),
    });
    expect(r.stdout).toMatch(/^getent=2\nlookup=(ENOTFOUND|EAI_AGAIN)\nlo\n$/);
  });
});

describe('sandboxes are private from each other', () => {
  it('keeps /tmp, /dev/shm, /workspace, processes and uids apart', async () => {
    const a = await sb.start({
      command:
        'echo A > /tmp/mark; echo A > /dev/shm/mark; echo A > /workspace/mark; sleep 30 & echo ready; read x; cat /tmp/mark /dev/shm/mark /workspace/mark; ls /tmp; ls /dev/shm',
      stdin: 'pipe',
    });
    const aDone = collect(a);
    let aOut = '';
    a.stdout.on('data', (c: Buffer) => (aOut += c.toString()));
    for (let i = 0; i < 100 && !aOut.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(aOut).toBe('ready\n');

    const b = await sb.start({
      command:
        'cat /tmp/mark /dev/shm/mark /workspace/mark 2>&1 | grep -c "No such file"; ps -e -o comm= > /tmp/ps; sort /tmp/ps | tr "\\n" " "; echo; echo B > /tmp/mark; echo B > /dev/shm/mark',
    });
    const bDone = await collect(b);
    // ps alone (a pipeline's members may not have exec'd yet when ps looks).
    expect(bDone.stdout).toBe('3\nbwrap ps sh \n');
    if (isRoot) expect(slotUid(b)).not.toBe(slotUid(a));

    a.stdin!.end('go\n');
    const aResult = await aDone;
    expect(aResult.stdout).toBe('ready\nA\nA\nA\nmark\nmark\n');
  });
});
