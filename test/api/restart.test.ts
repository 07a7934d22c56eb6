// Stopping the server mid-generation, gracefully and by SIGKILL: history, images and the queue
// survive, and nothing stays RUNNING.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { BLOCKER, startTestServer, waitForStatus } from '../helpers/api.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { withDeadline } from '../helpers/wait.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error images { url } } }`;

test('a graceful restart mid-generation puts it back in the queue and runs it to the end', async () => {
  const api = await startTestServer();
  try {
    const first = await api.data<any>(GENERATE, { input: { modelId: 'demo', prompt: 'kept', steps: 2 } });
    const running = await api.data<any>(GENERATE, { input: BLOCKER });
    await waitForStatus(api.server.url, running.generate.id, ['RUNNING']);
    await waitForStatus(api.server.url, first.generate.id, ['SUCCEEDED']);
    const kept = await api.data<any>(GENERATION, { id: first.generate.id });
    await api.restart();
    await waitForStatus(api.server.url, running.generate.id, ['SUCCEEDED']);
    const done = await api.data<any>(GENERATION, { id: running.generate.id });
    assert.equal(done.generation.status, 'SUCCEEDED');
    assert.equal(done.generation.images.length, 8);
    const again = await api.data<any>(GENERATION, { id: first.generate.id });
    assert.deepEqual(again.generation, kept.generation);
    assert.equal((await fetch(again.generation.images[0].url)).status, 200);
  } finally {
    await api.close();
  }
});

test('after a SIGKILL mid-generation, the next start runs it again', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sdql-crash-'));
  const db = await createTestDatabase();
  mkdirSync(join(tmp, 'models'));
  await createFixturePipeline(join(tmp, 'models', 'demo'));
  const env = {
    ...process.env,
    SDQL_DATA_DIR: join(tmp, 'data'),
    SDQL_MODELS_DIR: join(tmp, 'models'),
    DATABASE_URL: db.target.kind === 'postgres' ? db.target.url : '',
    PORT: '0',
    LOG_LEVEL: 'info',
    // On a shared Postgres a restarted server cannot tell a dead worker from a slow one but by its lease.
    SDQL_WORKER_LEASE: '2',
  };
  let child: ChildProcess | undefined;
  try {
    const first = await serve(env);
    child = first.child;
    const { data } = await gql(first.url, GENERATE, { input: BLOCKER });
    const id = data.generate.id;
    await waitForStatus(first.url, id, ['RUNNING']);
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await withDeadline(exited, 'the exit of the killed server');

    const second = await serve(env);
    child = second.child;
    await waitForStatus(second.url, id, ['SUCCEEDED'], 120_000);
    const done = await gql(second.url, GENERATION, { id });
    assert.equal(done.data.generation.status, 'SUCCEEDED', done.data.generation.error);
    assert.equal(done.data.generation.images.length, 8);
  } finally {
    child?.kill('SIGKILL');
    await db.drop();
    rmSync(tmp, { recursive: true, force: true });
  }
});

const gql = (url: string, query: string, variables: object) =>
  fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) }).then((r) => r.json() as Promise<any>);

/** Starts `sdql serve` as a child process; resolves with its URL once it logs that it is ready. */
async function serve(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['bin/sdql.js', 'serve'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = async () => {
    for await (const line of createInterface({ input: child.stdout! })) {
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === 'sdql is ready' && entry.url) return { child, url: entry.url.replace(/\/graphql$/, '') };
    }
    throw new Error('sdql serve exited before it was ready');
  };
  return withDeadline(ready(), 'the "sdql is ready" line of sdql serve').catch((error: Error) => {
    child.kill('SIGKILL');
    throw error;
  });
}
