// A TCP proxy in front of Postgres that can stop forwarding without closing anything: the
// connection a worker holds then hangs, as behind a dead switch or a stuck NAT.
import net from "node:net";

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private holes = false;

  private constructor(target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
      // Bytes sent while blackholed are swallowed, never delivered later.
      client.on("data", (d) => this.holes || upstream.write(d));
      upstream.on("data", (d) => this.holes || client.write(d));
    });
  }

  static async start(targetUrl: string): Promise<{ proxy: TcpProxy; url: string }> {
    const u = new URL(targetUrl);
    const proxy = new TcpProxy({ host: u.hostname, port: Number(u.port) });
    await new Promise<void>((r) => proxy.server.listen(0, "127.0.0.1", () => r()));
    u.port = String((proxy.server.address() as net.AddressInfo).port);
    return { proxy, url: u.toString() };
  }

  /** Stops forwarding on every connection, open or new; nothing is closed. */
  blackhole(): void {
    this.holes = true;
  }

  /** Forwards again; connections that were blackholed are reset (their streams are corrupt). */
  heal(): void {
    for (const [a, b] of this.pairs) a.resetAndDestroy(), b.destroy();
    this.pairs.clear();
    this.holes = false;
  }

  async close(): Promise<void> {
    this.heal();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
