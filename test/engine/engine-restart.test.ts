// A dead engine thread (a native crash, memory exhausted) fails only the run it had: the next run
// starts a new thread and succeeds, so a worker does not fail every queued generation after it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { EngineThread } from '../../src/diffusion/engine-thread.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/pipeline.ts';
import { FixtureDir } from './helpers.ts';

let fixtures: FixtureDir;
let model: ModelFolderInfo;
const thread = new EngineThread();

before(async () => {
  fixtures = await FixtureDir.create();
  model = await fixtures.model('demo');
});
after(async () => {
  await thread.close();
  await fixtures.remove();
});

/** The thread as the engine holds it: killing it from outside is what a crash looks like from here. */
const currentThread = () => (thread as unknown as { worker: Worker | undefined }).worker;

test('a run whose thread dies fails with the reason; the next run gets a new thread', async () => {
  const request = await resolveRequest(model, { prompt: 'doomed', steps: 50, seed: 1 });
  const first = currentThread();
  assert.ok(first);
  const doomed = thread.run(model, request, { onStep: () => void first.terminate() });
  await assert.rejects(doomed, /the engine thread exited/);

  const result = await thread.run(model, await resolveRequest(model, { prompt: 'after', steps: 2, seed: 2 }));
  assert.equal(result.images.length, 1);
  assert.notEqual(currentThread(), first, 'a new thread ran it');
});
