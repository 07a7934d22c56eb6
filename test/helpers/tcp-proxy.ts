// A TCP proxy a test can cut and restore, to take a server away from the app as an outage does
// (Postgres stopped, a network cut) without touching the server itself, which others use.
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Where the proxy listens (127.0.0.1); the same after a restore. */
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  /** Listens on `port` (0: a free one). */
  async start(port = this.port): Promise<void> {
    const server = createServer((client) => {
      const upstream = createConnection(this.target);
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ]) {
        this.sockets.add(from);
        from.on('error', () => to.destroy());
        from.on('close', () => (this.sockets.delete(from), to.destroy()));
        from.pipe(to);
      }
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Breaks every connection and refuses new ones until restore(). */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  restore(): Promise<void> {
    return this.start(this.port);
  }

  /** `url` (a postgresql:// URL) with its host and port replaced by the proxy's. */
  url(url: string): string {
    const through = new URL(url);
    through.hostname = '127.0.0.1';
    through.port = String(this.port);
    return through.toString();
  }
}
