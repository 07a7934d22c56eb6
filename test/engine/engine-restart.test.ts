// A dead engine thread (a native crash, memory exhausted) is replaced: the next run starts a new
// thread and succeeds, so a worker does not fail every queued generation after it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { EngineThread } from '../../src/diffusion/engine-thread.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
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

/** The thread as the engine holds it: ending it from outside is what a crash looks like from here. */
const currentThread = () => (thread as unknown as { worker: Worker | undefined }).worker;

// Ended while idle: ending a thread inside onnxruntime's native code aborts the whole process, so
// the test cannot kill it mid-run; lost() treats a death mid-run the same way (rejects its runs).
test('after its thread dies, the engine runs the next request on a new thread', async () => {
  const request = await resolveRequest(model, { prompt: 'before', steps: 2, seed: 1 });
  assert.equal((await thread.run(model, request)).images.length, 1);
  const first = currentThread();
  assert.ok(first);
  const exited = new Promise((resolve) => first.once('exit', resolve));
  await first.terminate();
  await exited;
  assert.equal(currentThread(), undefined, 'the dead thread was let go');

  const result = await thread.run(model, await resolveRequest(model, { prompt: 'after', steps: 2, seed: 2 }));
  assert.equal(result.images.length, 1);
  assert.ok(currentThread() && currentThread() !== first, 'a new thread ran it');
});
