// The HTTP server: listens at once (so /healthz can say "starting" while the app opens its database
// and scans the models), then serves GraphQL over HTTP and WebSocket and the other routes for the
// services it is handed.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as NodeHttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.ts';
import type { Services } from '../graphql/context.ts';
import { StartError, type Lifecycle } from '../lifecycle.ts';
import { log, withLogFields } from '../log.ts';
import { attachWebSockets, createGraphQLHandler, GRAPHQL_PATH, type Yoga } from './graphql.ts';
import { sendJson, type Route } from './http.ts';
import { MAX_REQUEST_BYTES } from './limits.ts';
import { isWildcard, originPolicy } from './origins.ts';
import { health, routes } from './routes.ts';

export interface HttpServer {
  /** http://host:port */
  url: string;
  port: number;
  /** From now on, serves GraphQL and the routes over `services`; until then all but /healthz answer 503. */
  serve(services: Services, lifecycle: Lifecycle): void;
  /** Stops accepting, closes the WebSockets, and gives open requests a moment to finish. */
  close(): Promise<void>;
}

/** Open connections get this long to finish after the server stops accepting new ones. */
const DRAIN_MS = 2000;

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Listens on config.host:config.port; StartError when it cannot. */
export async function startHttpServer(config: Config): Promise<HttpServer> {
  let ready: { services: Services; lifecycle: Lifecycle; yoga: Yoga; routes: Route[] } | undefined;
  let closeSockets = async () => {};
  const policy = originPolicy(config);

  const handle = async (req: IncomingMessage, res: ServerResponse, requestId: string) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') return health(ready, res);
    const refusal = policy.refusal(req.headers);
    if (refusal) return sendJson(res, 403, { errors: [{ message: refusal, extensions: { code: 'FORBIDDEN_ORIGIN' } }] });
    if (!ready) return sendJson(res, 503, { errors: [{ message: 'sdql is starting: try again in a moment' }] });
    if (url.pathname === GRAPHQL_PATH) {
      if (Number(req.headers['content-length'] ?? 0) > MAX_REQUEST_BYTES) {
        return sendJson(res, 413, { errors: [{ message: `the request body is over ${MAX_REQUEST_BYTES} bytes`, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
      }
      limitBody(req);
      return ready.yoga.handle(req, res, { requestId });
    }
    // Image files answer the pages SDQL_CORS_ORIGINS lists, as /graphql does (through yoga): without the
    // header such a page can show an image but not read its pixels.
    const origin = req.headers.origin;
    if (origin && policy.corsOrigins.includes(origin)) res.setHeader('access-control-allow-origin', origin).setHeader('vary', 'origin');
    const route = ready.routes.find((r) => r.method === req.method && (r.prefix ? url.pathname.startsWith(r.path) : url.pathname === r.path));
    if (route) return route.handle(req, res, url);
    sendJson(res, 404, { error: `nothing at ${url.pathname}; GraphQL is at ${GRAPHQL_PATH}` });
  };

  const http = createServer((req, res) => {
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('x-request-id', requestId);
    withLogFields({ requestId }, () =>
      handle(req, res, requestId).catch((error: unknown) => {
        log.error('request failed', { err: error, path: req.url });
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        else res.destroy();
      }),
    );
  });
  const port = await listen(http, config.port, config.host);
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  // Absolute URLs never come from a request's headers: SDQL_PUBLIC_URL, else the address listened on.
  const base = config.publicUrl ?? (isWildcard(config.host) ? null : url);
  return {
    url,
    port,
    serve(services, lifecycle) {
      const yoga = createGraphQLHandler(services, { corsOrigins: policy.corsOrigins, baseUrl: base });
      closeSockets = attachWebSockets(http, yoga, policy, services);
      ready = { services, lifecycle, yoga, routes: routes(services, yoga) };
    },
    // WebSockets hold their HTTP connections open: close them after the server stops accepting.
    async close() {
      const closed = stopAccepting(http);
      await closeSockets();
      await closed;
    },
  };
}

/** Ends a body sent without a length (chunked) once it passes MAX_REQUEST_BYTES. */
function limitBody(req: IncomingMessage): void {
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > MAX_REQUEST_BYTES) req.destroy(new Error(`the request body is over ${MAX_REQUEST_BYTES} bytes`));
  });
}

function listen(http: NodeHttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      if (error.code === 'EADDRINUSE') reject(new StartError(`port ${port} on ${host} is in use (another sdql?): stop that process or choose another PORT / --port`));
      else if (error.code === 'EACCES') reject(new StartError(`not allowed to listen on ${where} (ports below 1024 need privileges): choose another PORT / --port`));
      else if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND') reject(new StartError(`HOST ${host} is not an address of this machine`));
      else reject(error);
    };
    http.once('error', onError);
    http.listen(port, host, () => {
      http.off('error', onError);
      resolve((http.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting connections, closes idle keep-alive ones, and gives busy ones DRAIN_MS to finish. */
function stopAccepting(http: NodeHttpServer): Promise<void> {
  if (!http.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const drain = setTimeout(() => http.closeAllConnections(), DRAIN_MS);
    http.close(() => {
      clearTimeout(drain);
      resolve();
    });
    http.closeIdleConnections();
  });
}
