// A listening sdql server on a throwaway database with fixture models, and clients that talk to it
// as real clients do: GraphQL over HTTP (JSON and multipart), graphql-ws and SSE subscriptions.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { loadConfig, type Config } from '../../src/config.ts';
import { createFixturePipeline, type FixtureOptions } from '../../src/diffusion/fixtures/index.ts';
import { configureLogging } from '../../src/log.ts';
import { startServer, type RunningServer } from '../../src/app/serve.ts';
import { createTestDatabase, usingPostgres, type TestDatabase } from './db.ts';
import { EventLog, withDeadline } from './wait.ts';

export interface GraphQLResponse<T = Record<string, unknown>> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export interface TestServer {
  server: RunningServer;
  config: Config;
  tmp: string;
  /** The token `sdql serve` would print at this start (SDQL_AUTH=tokens and no ADMIN token yet). */
  adminToken: string | undefined;
  /** POSTs a GraphQL operation as JSON, with `token` as its bearer token when given. */
  gql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, token?: string): Promise<GraphQLResponse<T>>;
  /** Like gql, but fails on errors and returns data. */
  data<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, token?: string): Promise<T>;
  /** A graphql-ws client, sending `token` in its connectionParams when given. */
  wsClient(token?: string): Client;
  /** Stops the server; `keepData` leaves the data folder and database for a restart. */
  close(options?: { keepData?: boolean }): Promise<void>;
  restart(): Promise<void>;
}

export interface TestServerOptions {
  /** Fixture models to write into the models folder, by id. */
  models?: Record<string, FixtureOptions>;
  /** Use this models folder instead (e.g. the reference models). */
  modelsDir?: string;
  env?: Record<string, string>;
  /** A database of the test's own (one reached through a proxy, say); dropped by close(). */
  database?: TestDatabase;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  configureLogging({ json: true, write: () => {} });
  const tmp = mkdtempSync(join(tmpdir(), 'sdql-api-'));
  const modelsDir = options.modelsDir ?? join(tmp, 'models');
  if (!options.modelsDir) {
    mkdirSync(modelsDir);
    for (const [id, fixture] of Object.entries(options.models ?? { demo: {} })) await createFixturePipeline(join(modelsDir, id), fixture);
  }
  // On disk rather than in memory when embedded, so a restart finds the same database.
  const testDb: TestDatabase = options.database ?? (usingPostgres ? await createTestDatabase() : { target: { kind: 'pglite', dataDir: join(tmp, 'db') }, drop: async () => {} });
  const config = loadConfig({ port: '0', 'data-dir': join(tmp, 'data'), 'models-dir': modelsDir }, options.env ?? {});
  let server = await startServer(config, { database: testDb.target });
  const clients: Client[] = [];

  const gql = async <T,>(query: string, variables?: Record<string, unknown>, token?: string): Promise<GraphQLResponse<T>> => {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...bearer(token) },
      body: JSON.stringify({ query, variables }),
    });
    return (await response.json()) as GraphQLResponse<T>;
  };
  const close = async ({ keepData = false } = {}) => {
    for (const client of clients.splice(0)) await client.dispose();
    await server.close();
    if (!keepData) {
      await testDb.drop();
      rmSync(tmp, { recursive: true, force: true });
    }
  };
  return {
    get server() {
      return server;
    },
    config,
    tmp,
    get adminToken() {
      return server.adminToken;
    },
    gql,
    data: async <T,>(query: string, variables?: Record<string, unknown>, token?: string) => {
      const result = await gql<T>(query, variables, token);
      if (result.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
      return result.data as T;
    },
    wsClient: (token) => {
      const client = wsClient(server.url, token);
      clients.push(client);
      return client;
    },
    close,
    restart: async () => {
      const port = server.port;
      await close({ keepData: true });
      server = await startServer({ ...config, port }, { database: testDb.target });
    },
  };
}

/** The Authorization header of a bearer token, or no header. */
export const bearer = (token: string | undefined): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

function wsClient(url: string, token?: string): Client {
  const connectionParams = token ? { authorization: `Bearer ${token}` } : undefined;
  return createClient({ url: `${url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams });
}

/** A subscription's events as they arrive (see EventLog.next), and all of them once it completes. */
export interface Subscription<T> {
  events: T[];
  /** The first event that `match` accepts, already received or the next; fails at the deadline or if the stream ends first. */
  next(what: string, match?: (event: T) => boolean, timeoutMs?: number): Promise<T>;
  /** Every event, once the stream completes; fails at the deadline. */
  done(timeoutMs?: number): Promise<T[]>;
}

function subscription<T>(log: EventLog<T>, completed: Promise<T[]>, what: string): Subscription<T> {
  completed.then(
    () => log.end(new Error('the subscription completed')),
    (error: Error) => log.end(error),
  );
  return {
    events: log.events,
    next: (description, match, timeoutMs) => log.next(description, match, timeoutMs),
    done: (timeoutMs) => withDeadline(completed, `${what} to complete`, timeoutMs),
  };
}

/** Follows a graphql-ws subscription, collecting its events. */
export function collectWs<T = Record<string, any>>(client: Client, query: string, variables?: Record<string, unknown>): Subscription<T> {
  const log = new EventLog<T>();
  const completed = new Promise<T[]>((resolve, reject) => {
    client.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          if (result.errors?.length) reject(new Error(JSON.stringify(result.errors)));
          else log.push(result.data as T);
        },
        error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
        complete: () => resolve(log.events),
      },
    );
  });
  return subscription(log, completed, 'the graphql-ws subscription');
}

/** Follows a subscription over server-sent events (graphql-yoga's default transport), collecting its events. */
export function collectSse<T = Record<string, any>>(url: string, query: string, variables?: Record<string, unknown>, token?: string): Subscription<T> {
  const log = new EventLog<T>();
  const completed = (async () => {
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...bearer(token) },
      body: JSON.stringify({ query, variables }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    let buffer = '';
    const decoder = new TextDecoder();
    const reader = response.body!.getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      buffer += decoder.decode(chunk.value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trim())
          .join('\n');
        if (event === 'complete') {
          await reader.cancel();
          return log.events;
        }
        if (data) {
          const result = JSON.parse(data) as GraphQLResponse<T>;
          if (result.errors?.length) throw new Error(JSON.stringify(result.errors));
          log.push(result.data as T);
        }
      }
    }
    return log.events;
  })();
  return subscription(log, completed, 'the SSE subscription');
}

/** Keeps the worker busy until canceled (the fixture UNet is small: many images and steps), so that a test can subscribe before its generation starts. */
export const BLOCKER = { modelId: 'demo', prompt: 'busy', steps: 150, numImages: 8, previewEvery: 0 };

const STATUS = `subscription($id: ID!) { generationProgress(id: $id) { status error } }`;

/**
 * Waits until generation `id` on the server at `url` has one of `statuses`, following its
 * generationProgress subscription (whose first event is the state when subscribing); fails at the
 * deadline, or when the generation ends in another status, naming the statuses it went through.
 * `token`: the bearer token of a server with SDQL_AUTH=tokens.
 */
export async function waitForStatus(url: string, id: string, statuses: readonly string[], timeoutMs?: number, token?: string): Promise<void> {
  const client = wsClient(url, token);
  try {
    const progress = collectWs<{ generationProgress: { status: string; error: string | null } }>(client, STATUS, { id });
    await progress.next(`generation ${id} becoming ${statuses.join(' or ')}`, (e) => statuses.includes(e.generationProgress.status), timeoutMs);
  } finally {
    await client.dispose();
  }
}
