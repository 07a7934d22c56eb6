// Generation.request is JSON written by other processes and versions: a row whose request does not
// hold what sdql stores fails with a reason that says so, instead of running on whatever it holds.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/api.ts';

let api: TestServer;
before(async () => {
  api = await startTestServer();
});
after(() => api?.close());

test('a generation whose stored request is malformed fails, naming what is wrong', async () => {
  const { prisma } = api.server.app.db;
  const generation = await prisma.generation.create({
    data: {
      modelId: 'demo',
      prompt: 'x',
      negativePrompt: '',
      scheduler: 'EULER',
      width: 64,
      height: 64,
      steps: 2,
      guidanceScale: 7.5,
      guidanceRescale: 0,
      eta: 0,
      seed: 1n,
      numImages: 1,
      priority: 0,
      request: { modelId: 'demo', prompt: 'x', steps: 'two' },
    },
  });
  api.server.app.jobs.queue.announce(generation.id, 'QUEUED');
  await api.server.app.jobs.awaitEnd(generation.id, 60_000);
  const ended = await prisma.generation.findUniqueOrThrow({ where: { id: generation.id } });
  assert.equal(ended.status, 'FAILED');
  assert.match(ended.error ?? '', /stored request of generation .* cannot be read/);
  assert.match(ended.error ?? '', /steps/);
});
