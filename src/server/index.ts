// The sdql server: listens at once (so /healthz can say "starting"), opens and migrates the
// database, scans the models, then serves GraphQL over HTTP and WebSocket and the other routes.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.ts';
import { databaseTarget, openDatabase, type DatabaseTarget } from '../db/index.ts';
import type { Services } from '../graphql/context.ts';
import { createEventBus, EventBusError } from '../graphql/pubsub.ts';
import { EngineThread, adapterSource, findTaesdDecoder } from '../diffusion/index.ts';
import { Jobs } from '../jobs/index.ts';
import { heartbeatInterval } from '../jobs/queue.ts';
import { log, withLogFields } from '../log.ts';
import { Registry } from '../registry/index.ts';
import { attachWebSockets, createGraphQLHandler, GRAPHQL_PATH, type Yoga } from './graphql.ts';
import { Lifecycle } from './lifecycle.ts';
import { health, routes, sendJson, type Route } from './routes.ts';

export { Lifecycle } from './lifecycle.ts';

/** A start-up failure with a one-line reason for the user. */
export class ServerStartError extends Error {
  override name = 'ServerStartError';
}

export interface RunningServer {
  /** http://host:port */
  url: string;
  port: number;
  services: Services;
  /** Graceful shutdown: stop accepting, close sockets, run every shutdown hook, close the database. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Instead of the one `config` names (tests pass a throwaway database). */
  database?: DatabaseTarget;
}

/** Open connections get this long to finish after the server stops accepting new ones. */
const DRAIN_MS = 2000;

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Largest request body: room for an init image as a base64 data URL or a multipart upload (LIMITS.maxImageBytes). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const started = performance.now();
  const lifecycle = new Lifecycle();
  let ready: { services: Services; yoga: Yoga; routes: Route[] } | undefined;

  const handle = async (req: IncomingMessage, res: ServerResponse, requestId: string) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') return health(ready?.services, res);
    if (!ready) return sendJson(res, 503, { errors: [{ message: 'sdql is starting: try again in a moment' }] });
    if (url.pathname === GRAPHQL_PATH) {
      if (Number(req.headers['content-length'] ?? 0) > MAX_REQUEST_BYTES) {
        return sendJson(res, 413, { errors: [{ message: `the request body is over ${MAX_REQUEST_BYTES} bytes`, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
      }
      limitBody(req);
      return ready.yoga.handle(req, res, { requestId });
    }
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
  const closeHttp = () => stopAccepting(http);

  try {
    const target = options.database ?? databaseTarget(config);
    const db = await openDatabase(target);
    lifecycle.onShutdown('database', () => db.close());
    const registry = new Registry(db.prisma, config.modelsDir, config.lorasDir);
    await registry.scan().catch((error: Error) => {
      throw new ServerStartError(`cannot scan the models folder: ${error.message}`, { cause: error });
    });
    const bus = await createEventBus(config.redisUrl).catch((error: unknown) => {
      throw error instanceof EventBusError ? new ServerStartError(error.message) : error;
    });
    lifecycle.onShutdown('events', () => bus.close());
    const jobs = new Jobs(db.prisma, bus.pubsub, config.dataDir);
    const services: Services = { config, db, registry, pubsub: bus.pubsub, lifecycle, jobs };
    // Hooks run newest first: the worker stops (its generation back in the queue) after the
    // sockets close and before the engine, the events and the database.
    await startJobs(services);
    const yoga = createGraphQLHandler(services);
    const closeSockets = attachWebSockets(http, yoga);
    // WebSockets hold their HTTP connections open: close them after the server stops accepting.
    lifecycle.onShutdown('http server and websockets', async () => {
      const closed = closeHttp();
      await closeSockets();
      await closed;
    });
    ready = { services, yoga, routes: routes(services) };
    log.info('sdql is ready', { url: `${url}${GRAPHQL_PATH}`, database: db.location, ms: Math.round(performance.now() - started) });
    return { url, port, services, close: () => lifecycle.shutdown() };
  } catch (error) {
    await lifecycle.shutdown();
    await closeHttp();
    throw error;
  }
}

/** Ends a body sent without a length (chunked) once it passes MAX_REQUEST_BYTES. */
function limitBody(req: IncomingMessage): void {
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > MAX_REQUEST_BYTES) req.destroy(new Error(`the request body is over ${MAX_REQUEST_BYTES} bytes`));
  });
}

/** Recovers what dead processes left running, then starts this process's worker unless SDQL_WORKER=false. */
export async function startJobs({ config, db, registry, lifecycle, jobs }: Services): Promise<void> {
  // The embedded database belongs to this process alone: whatever it shows running was left by a dead one.
  await jobs.startRecovery(config.workerLeaseSeconds * 1000, { exclusive: db.kind === 'pglite' });
  lifecycle.onShutdown('recovery', () => jobs.stopRecovery());
  if (!config.worker) return;
  const engine = new EngineThread({ cacheBudgetBytes: config.modelCacheBytes });
  lifecycle.onShutdown('engine', () => engine.close());
  await jobs.startWorker({
    engine,
    model: (id) => registry.model(id),
    modelHash: (id) => registry.modelSha256(id),
    previewDecoder: (model) => findTaesdDecoder(model, config.modelsDir),
    adapters: adapterSource(registry, config.embeddingsDir),
    heartbeatMs: heartbeatInterval(config.workerLeaseSeconds * 1000),
  });
  lifecycle.onShutdown('worker', () => jobs.stopWorker());
}

function listen(http: HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const where = `${host}:${port}`;
      if (error.code === 'EADDRINUSE') reject(new ServerStartError(`port ${port} on ${host} is in use (another sdql?): stop that process or choose another PORT / --port`));
      else if (error.code === 'EACCES') reject(new ServerStartError(`not allowed to listen on ${where} (ports below 1024 need privileges): choose another PORT / --port`));
      else if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND') reject(new ServerStartError(`HOST ${host} is not an address of this machine`));
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
function stopAccepting(http: HttpServer): Promise<void> {
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
