// `sdql serve` assembled: HTTP first (so /healthz answers "starting" at once), then the app and its
// jobs, then GraphQL over the app's services.
import type { Config } from '../config.ts';
import { GRAPHQL_PATH } from '../server/graphql.ts';
import { startHttpServer } from '../server/index.ts';
import { Lifecycle } from '../lifecycle.ts';
import { log } from '../log.ts';
import { createApp, startJobs, type App, type AppOptions } from './index.ts';

export interface RunningServer {
  /** http://host:port */
  url: string;
  port: number;
  app: App;
  /** The token created at this start, when SDQL_AUTH=tokens found no ADMIN token: shown once (`sdql serve` prints it). */
  adminToken?: string;
  /** Graceful shutdown: stop accepting, close sockets, run every shutdown hook, close the database. */
  close(): Promise<void>;
}

export async function startServer(config: Config, options: Omit<AppOptions, 'lifecycle'> = {}): Promise<RunningServer> {
  const started = performance.now();
  const http = await startHttpServer(config);
  const lifecycle = new Lifecycle();
  try {
    const app = await createApp(config, { ...options, lifecycle });
    // Hooks run newest first: the worker stops (its generation back in the queue) after the
    // sockets close and before the engine, the events and the database.
    await startJobs(app);
    const adminToken = app.auth.enabled ? await app.auth.tokens.ensureAdmin() : undefined;
    http.serve(app, lifecycle);
    lifecycle.onShutdown('http server and websockets', () => http.close());
    log.info('sdql is ready', { url: `${http.url}${GRAPHQL_PATH}`, database: app.db.location, auth: config.auth, ms: Math.round(performance.now() - started) });
    return { url: http.url, port: http.port, app, adminToken, close: () => lifecycle.shutdown() };
  } catch (error) {
    await lifecycle.shutdown();
    await http.close();
    throw error;
  }
}
