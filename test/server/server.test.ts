// The server as clients see it, listening on a real port: health before and after start-up,
// GraphiQL, GraphQL over HTTP, subscriptions over graphql-ws and SSE, request ids, a busy port,
// graceful shutdown, and two servers starting at once on one Postgres.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createClient } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { loadConfig, type Config } from '../../src/config.ts';
import { readMigrations } from '../../src/db/migrate.ts';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { configureLogging } from '../../src/log.ts';
import { startServer, type RunningServer } from '../../src/app/serve.ts';
import { StartError } from '../../src/lifecycle.ts';
import { createTestDatabase, skipWithoutPostgres, type TestDatabase } from '../helpers/db.ts';
import { pollUntil, withDeadline } from '../helpers/wait.ts';

let tmp: string;
let testDb: TestDatabase;
let config: Config;
let server: RunningServer;
const healthBeforeReady: number[] = [];
const logLines: string[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

before(async () => {
  configureLogging({ json: true, write: (line) => logLines.push(line) });
  tmp = mkdtempSync(join(tmpdir(), 'sdql-server-'));
  const modelsDir = join(tmp, 'models');
  mkdirSync(modelsDir);
  await createFixturePipeline(join(modelsDir, 'demo'));
  testDb = await createTestDatabase();
  const port = await freePort();
  config = loadConfig({ port: String(port), 'data-dir': join(tmp, 'data'), 'models-dir': modelsDir }, {});
  const starting = startServer(config, { database: testDb.target });
  // Asks /healthz back to back, from the moment the port opens until the server is ready.
  let settled = false;
  starting.finally(() => (settled = true)).catch(() => {});
  const polling = (async () => {
    while (!settled) {
      const status = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status, () => 0);
      if (status) healthBeforeReady.push(status);
    }
  })();
  await withDeadline(polling, 'the start of the server');
  server = await starting;
});

after(async () => {
  await server?.close();
  await testDb?.drop();
  rmSync(tmp, { recursive: true, force: true });
  configureLogging({ write: (line) => process.stdout.write(`${line}\n`) });
});

test('/healthz answers 503 while starting and 200 once the database is migrated', async () => {
  // 503s, then (answered while startServer's promise settles) possibly 200s.
  assert.match(healthBeforeReady.join(','), /^503(,503)*(,200)*$/, `statuses while starting: ${healthBeforeReady}`);
  const response = await fetch(`${server.url}/healthz`);
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { status: 'ok', database: testDb.target.kind });
});

test('GET /graphql in a browser is GraphiQL; / leads there; other paths are 404', async () => {
  const page = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /text\/html/);
  assert.match(await page.text(), /graphiql/i);
  const root = await fetch(`${server.url}/`, { redirect: 'manual' });
  assert.equal(root.status, 302);
  assert.equal(root.headers.get('location'), '/graphql');
  assert.equal((await fetch(`${server.url}/nothing-here`)).status, 404);
});

test('each operation is logged once with its request id, taken from x-request-id when sent', async () => {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'test-request-42' },
    body: JSON.stringify({ query: 'query ListModels { models { name supported } }' }),
  });
  assert.equal(response.headers.get('x-request-id'), 'test-request-42');
  assert.deepEqual(await response.json(), { data: { models: [{ name: 'demo', supported: true }] } });
  const lines = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.requestId === 'test-request-42');
  assert.deepEqual(
    lines.map((l) => [l.msg, l.operation, l.kind]),
    [['graphql operation', 'ListModels', 'query']],
  );
  const generated = await fetch(`${server.url}/healthz`);
  assert.match(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
});

/** Calls rescanModels until `received` is true: a subscription may not be registered yet the first time. */
async function rescanUntil(received: () => boolean): Promise<void> {
  const rescan = async () => {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'mutation { rescanModels { scannedAt } }' }),
    });
    assert.equal(response.status, 200);
    return received();
  };
  await pollUntil(rescan, (done) => done, 'a modelsChanged event after rescanModels');
}

test('subscriptions work over graphql-ws', async () => {
  const client = createClient({ url: `${server.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
  try {
    const events: unknown[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const unsubscribe = client.subscribe(
        { query: 'subscription { modelsChanged { models { name } loras { tagName } } }' },
        {
          next: (value) => {
            events.push(value);
            unsubscribe();
            resolve();
          },
          error: reject,
          complete: resolve,
        },
      );
    });
    await rescanUntil(() => events.length > 0);
    await withDeadline(done, 'the first modelsChanged event over graphql-ws');
    assert.deepEqual(events[0], { data: { modelsChanged: { models: [{ name: 'demo' }], loras: [] } } });
  } finally {
    await client.dispose();
  }
});

test('graphql-ws reports an invalid subscription as an error, not a dropped socket', async () => {
  const client = createClient({ url: `${server.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
  try {
    const settled = new Promise<unknown>((resolve) => {
      client.subscribe({ query: 'subscription { noSuchEvent }' }, { next: () => {}, error: resolve, complete: () => resolve(undefined) });
    });
    const error = await withDeadline(settled, 'the answer to an invalid subscription');
    assert.ok(Array.isArray(error), String(error));
    assert.match((error as { message: string }[])[0].message, /noSuchEvent/);
  } finally {
    await client.dispose();
  }
});

test('subscriptions work over server-sent events', async () => {
  const controller = new AbortController();
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query: 'subscription { modelsChanged { models { name } } }' }),
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  let event: unknown;
  const reading = (async () => {
    while (!event) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      const data = /event: next\ndata: (.*)\n/.exec(text);
      if (data) event = JSON.parse(data[1]);
    }
  })();
  await rescanUntil(() => event !== undefined);
  await withDeadline(reading, 'the first modelsChanged event over SSE');
  controller.abort();
  assert.deepEqual(event, { data: { modelsChanged: { models: [{ name: 'demo' }] } } });
});

test('a port in use is reported clearly', async () => {
  await assert.rejects(startServer(config, { database: testDb.target }), (error: Error) => {
    assert.ok(error instanceof StartError);
    assert.equal(error.message, `port ${config.port} on 127.0.0.1 is in use (another sdql?): stop that process or choose another PORT / --port`);
    return true;
  });
});

test('two servers started at once on one Postgres migrate it once and both serve', { skip: skipWithoutPostgres }, async () => {
  const shared = await createTestDatabase();
  try {
    // With Redis: without it, the second would be refused (test/server/cli.test.ts).
    const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
    const [a, b] = await Promise.all(
      [0, 1].map(async () => startServer({ ...config, port: 0, redisUrl }, { database: shared.target })),
    );
    try {
      for (const s of [a, b]) assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
      const rows = await a.app.db.prisma.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM _prisma_migrations');
      assert.equal(rows[0].n, readMigrations().length);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  } finally {
    await shared.drop();
  }
});

test('shutdown closes WebSockets, stops listening and closes the database', async () => {
  const closed = new Promise<number>((resolve) => {
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init' })));
    socket.on('message', () => void server.close());
    socket.on('close', (code) => resolve(code));
  });
  assert.equal(await withDeadline(closed, 'the close of the WebSocket at shutdown'), 1001);
  await server.close();
  await assert.rejects(fetch(`${server.url}/healthz`));
  const { db } = server.app;
  if (db.kind === 'pglite') {
    assert.equal(db.pglite.closed, true);
  } else {
    const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [new URL(db.connectionString).pathname.slice(1)]);
      assert.equal(rows[0].n, 0);
    } finally {
      await client.end();
    }
  }
});
