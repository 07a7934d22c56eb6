// Scaled out: an API server that runs no generations and a separate worker on one Postgres, with
// events through Redis. A subscriber of the API server sees the worker's steps; a cancel sent to
// the API server stops the worker's generation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startWorker } from '../../src/app/worker.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { BLOCKER, collectWs, startTestServer, waitForStatus } from '../helpers/api.ts';
import { skipWithoutPostgres } from '../helpers/db.ts';

const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status step preview { width } } }`;
const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;

test('an API server and a separate worker share the queue over Postgres and the events over Redis', { skip: skipWithoutPostgres }, async () => {
  const api = await startTestServer({ env: { SDQL_WORKER: 'false', REDIS_URL: redisUrl } });
  let worker: Lifecycle | undefined;
  try {
    const { db } = api.server.app;
    assert.ok(db.kind === 'postgres', 'needs Postgres');

    const { generate } = await api.data<any>(GENERATE, { input: { modelId: 'demo', prompt: 'far away', steps: 4, seed: 9 } });
    const stream = collectWs<any>(api.wsClient(), PROGRESS, { id: generate.id });
    await stream.next('the state when subscribing');
    const { generation: waiting } = await api.data<any>(`query($id: ID!) { generation(id: $id) { status } }`, { id: generate.id });
    assert.equal(waiting.status, 'QUEUED', 'the API server ran the generation itself');
    const beforeWorker = stream.events.length;

    // The worker process's side, started as `sdql worker` starts it, on the same database and folders.
    ({ lifecycle: worker } = await startWorker(api.config, { database: { kind: 'postgres', url: db.connectionString } }));
    const events = (await stream.done()).map((e) => e.generationProgress);
    assert.deepEqual(events.slice(0, beforeWorker).map((e) => e.status), Array(beforeWorker).fill('QUEUED'), 'it ran before the worker started');
    assert.deepEqual(events.filter((e) => e.status === 'RUNNING' && e.step > 0).map((e) => e.step), [1, 2, 3, 4]);
    assert.ok(events.filter((e) => e.status === 'RUNNING' && e.step > 0).every((e) => e.preview?.width > 0));
    assert.equal(events.at(-1).status, 'SUCCEEDED');
    const { generation } = await api.data<any>(`query($id: ID!) { generation(id: $id) { images { url } } }`, { id: generate.id });
    assert.equal((await fetch(generation.images[0].url)).status, 200);

    const long = await api.data<any>(GENERATE, { input: BLOCKER });
    await waitForStatus(api.server.url, long.generate.id, ['RUNNING']);
    const canceled = await api.data<any>(`mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: long.generate.id });
    assert.equal(canceled.cancelGeneration.status, 'CANCELED');
  } finally {
    await worker?.shutdown();
    await api.close();
  }
});
