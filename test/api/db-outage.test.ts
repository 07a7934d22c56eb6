// A lost database connection: the worker waits for Postgres and records the generation when it is
// back; subscribers never see FAILED for a generation that succeeds; the process lock is taken again. The outage is a TCP proxy
// between the app and Postgres, cut and restored (the Postgres server itself is shared).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startWorker } from '../../src/app/worker.ts';
import { holdProcessLock } from '../../src/db/index.ts';
import type { Lifecycle } from '../../src/lifecycle.ts';
import { configureLogging } from '../../src/log.ts';
import { collectWs, startTestServer } from '../helpers/api.ts';
import { createTestDatabase, skipWithoutPostgres } from '../helpers/db.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { EventLog } from '../helpers/wait.ts';

const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status step totalSteps error } }`;

/** A test database on the Postgres of DATABASE_URL and a proxy to it, started. */
async function proxiedDatabase() {
  const testDb = await createTestDatabase();
  assert.ok(testDb.target.kind === 'postgres');
  const direct = new URL(testDb.target.url);
  const proxy = new TcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  await proxy.start();
  return { testDb, directUrl: testDb.target.url, proxy };
}

test('a generation that finishes while Postgres is unreachable is recorded once it is back, and never reported FAILED', { skip: skipWithoutPostgres }, async () => {
  const { testDb, directUrl, proxy } = await proxiedDatabase();
  // A lease of 1 s: this process's own recovery runs every half second and would take the
  // generation for abandoned once the outage outlasts the lease.
  const api = await startTestServer({ database: { ...testDb, target: { kind: 'postgres', url: proxy.url(directUrl) } }, env: { SDQL_WORKER_LEASE: '1' } });
  const logs = new EventLog<{ msg: string; what?: string }>();
  configureLogging({ json: true, write: (line) => logs.push(JSON.parse(line)) });
  try {
    const { generate } = await api.data<any>(`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, {
      input: { modelId: 'demo', prompt: 'through the storm', steps: 60, numImages: 4, seed: 5, previewEvery: 0 },
    });
    const stream = collectWs<any>(api.wsClient(), PROGRESS, { id: generate.id });
    await stream.next('the first step', (e) => e.generationProgress.step >= 1);
    await proxy.cut();

    const last = await stream.next('the last step, run while the database is gone', (e) => e.generationProgress.step > 0 && e.generationProgress.step === e.generationProgress.totalSteps);
    assert.equal(last.generationProgress.status, 'RUNNING');
    await logs.next('the worker waiting to record the generation', (l) => l.msg === 'lost the database' && l.what === 'record a finished generation');
    const cutAt = logs.events.length;
    // Three failed recoveries span more than the lease: the generation's heartbeat is stale by then.
    const failedRecovery = (l: { msg: string }) => l.msg === 'could not recover abandoned generations';
    await logs.next('three failed recoveries', (l) => failedRecovery(l) && logs.events.slice(cutAt).filter(failedRecovery).length >= 3);
    await proxy.restore();

    const events = (await stream.done()).map((e) => e.generationProgress);
    assert.deepEqual(events.filter((e) => ['FAILED', 'CANCELED'].includes(e.status)), [], 'subscribers were told the generation ended');
    assert.equal(events.at(-1).status, 'SUCCEEDED');
    const { generation } = await api.data<any>(`query($id: ID!) { generation(id: $id) { status error images { url } } }`, { id: generate.id });
    assert.equal(generation.status, 'SUCCEEDED');
    assert.equal(generation.error, null);
    assert.equal(generation.images.length, 4);
    for (const image of generation.images) assert.equal((await fetch(image.url)).status, 200);
    assert.ok(logs.events.some((l) => l.msg === 'the database does not answer; waiting to try again'), 'the waits are logged');

    // The process lock went with the broken connection and was taken again: a second process
    // without Redis is still refused.
    await logs.next('the process lock taken again', (l) => l.msg === 'took the database lock again');
    await assert.rejects(holdProcessLock(directUrl, 'exclusive'), /already uses .*without REDIS_URL/);
  } finally {
    configureLogging({ write: () => {} });
    await api.close();
    await proxy.cut();
  }
});

test('a generation another process requeued while its worker was cut off ends SUCCEEDED with one run\'s images, and nobody is told FAILED', { skip: skipWithoutPostgres }, async () => {
  const { testDb, directUrl, proxy } = await proxiedDatabase();
  // An API server on Postgres directly, whose recovery requeues what a silent worker runs after 1 s;
  // a worker reaching Postgres through the proxy.
  const env = { SDQL_WORKER: 'false', REDIS_URL: redisUrl, SDQL_REDIS_PREFIX: `sdql-test-${randomBytes(4).toString('hex')}:`, SDQL_WORKER_LEASE: '1' };
  const api = await startTestServer({ database: testDb, env });
  const logs = new EventLog<{ msg: string; what?: string }>();
  configureLogging({ json: true, write: (line) => logs.push(JSON.parse(line)) });
  let worker: Lifecycle | undefined;
  try {
    ({ lifecycle: worker } = await startWorker(api.config, { database: { kind: 'postgres', url: proxy.url(directUrl) } }));
    const { generate } = await api.data<any>(`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, {
      input: { modelId: 'demo', prompt: 'cut off', steps: 60, numImages: 2, seed: 3, previewEvery: 0 },
    });
    const stream = collectWs<any>(api.wsClient(), PROGRESS, { id: generate.id });
    await stream.next('the first step', (e) => e.generationProgress.step >= 1);
    await proxy.cut();

    await stream.next('the API server requeueing the silent generation', (e) => e.generationProgress.status === 'QUEUED');
    await logs.next('the worker waiting to record the generation', (l) => l.msg === 'lost the database' && l.what === 'record a finished generation');
    await proxy.restore();

    const events = (await stream.done()).map((e) => e.generationProgress);
    assert.deepEqual(events.filter((e) => ['FAILED', 'CANCELED'].includes(e.status)), []);
    assert.equal(events.at(-1).status, 'SUCCEEDED');
    const { generation } = await api.data<any>(`query($id: ID!) { generation(id: $id) { status images { url } } }`, { id: generate.id });
    assert.equal(generation.status, 'SUCCEEDED');
    assert.equal(generation.images.length, 2);
    for (const image of generation.images) assert.equal((await fetch(image.url)).status, 200);
    // Whichever run was recorded, no other run's files are left: the image folder holds its two only.
    assert.equal(readdirSync(join(api.config.dataDir, 'images'), { recursive: true }).filter((f) => String(f).endsWith('.png')).length, 2);
  } finally {
    configureLogging({ write: () => {} });
    await worker?.shutdown();
    await api.close();
    await proxy.cut();
  }
});
