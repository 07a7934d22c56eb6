// The engine on a worker thread: the caller's event loop stays free while UNet calls run, the
// images equal the in-thread Engine's, and progress, errors, abort and close cross the thread.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { EngineThread } from '../../src/diffusion/engine-thread.ts';
import { Engine, type EngineOptions, type GenerationEngine } from '../../src/diffusion/engine.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { type GenerateResult, type StepProgress } from '../../src/diffusion/pipeline.ts';
import { resolveRequest, type GenerateRequest } from '../../src/diffusion/request.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { withDeadline } from '../helpers/wait.ts';
import { FixtureDir, assertImage, diffusionError } from './helpers.ts';

// One intra-op thread leaves the second core to the calling thread's event loop.
const OPTIONS: EngineOptions = { runtime: { intraOpNumThreads: 1 } };

/**
 * Runs a request while the calling thread plays one message round trip with another thread per
 * step: each onStep sends a ping, and counts the pongs that came back before it. Also returns the
 * share of the run its event loop spent handling events rather than waiting for them.
 */
async function runObserved(engine: GenerationEngine, model: ModelFolderInfo, request: GenerateRequest) {
  const echo = new Worker(`require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m))`, { eval: true });
  try {
    await withDeadline(once(echo, 'online'), 'the echo thread starting');
    let pongs = 0;
    echo.on('message', () => void pongs++);
    const steps: StepProgress[] = [];
    const pongsAtStep: number[] = [];
    const before = performance.eventLoopUtilization();
    const result = await engine.run(model, request, {
      onStep: (p) => {
        steps.push(p);
        pongsAtStep.push(pongs);
        echo.postMessage(p.step);
      },
    });
    const busyShare = performance.eventLoopUtilization(before).utilization;
    return { result, steps, roundTripsBetweenSteps: pongsAtStep.slice(1).map((n, i) => n - pongsAtStep[i]), busyShare };
  } finally {
    await echo.terminate();
  }
}

describe('EngineThread', () => {
  let fixtures: FixtureDir;
  // UNet channels 64/128 at 256×256 with guidance (batch 2): one UNet call takes ~100 ms on one core.
  let model: ModelFolderInfo;
  let request: GenerateRequest;
  let thread: EngineThread;
  const engine = new Engine(OPTIONS);
  let inThread: GenerateResult;

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('big', { unetChannels: [64, 128], sampleSize: 32 });
    request = await resolveRequest(model, { prompt: 'a red cube', steps: 4, seed: 3, scheduler: 'EULER_A', numImages: 1 });
    thread = new EngineThread(OPTIONS);
    inThread = await engine.run(model, request); // also loads and warms up the in-thread engine
  });
  after(async () => {
    await thread.close();
    await engine.close();
    await fixtures.remove();
  });

  test('keeps the event loop free while UNet calls run, and gives the in-thread Engine’s images', async (t) => {
    const local = await runObserved(engine, model, request);
    await thread.run(model, request); // load and warm up
    const remote = await runObserved(thread, model, request);
    t.diagnostic(`event loop busy for ${(local.busyShare * 100).toFixed(0)} % of the run in-thread, ${(remote.busyShare * 100).toFixed(0)} % with EngineThread`);
    // Each step's ping came back before the next step arrived: the loop turned while the thread computed.
    assert.deepEqual(remote.roundTripsBetweenSteps, [1, 1, 1], 'a message round trip between every two steps');
    // The in-thread engine computes on the calling thread, so its loop is busy all along; with the
    // engine thread the calling thread only relays a few messages and waits for most of the run.
    assert.ok(local.busyShare > 0.5, `the in-thread engine kept the event loop busy for only ${(local.busyShare * 100).toFixed(0)} % of the run`);
    assert.ok(remote.busyShare < 0.5, `the event loop was busy for ${(remote.busyShare * 100).toFixed(0)} % of a run on the engine thread`);
    assert.deepEqual(remote.result.request, local.result.request);
    assert.equal(remote.result.images.length, 1);
    assertImage(remote.result.images[0].image, 256, 256);
    assert.equal(remote.result.images[0].seed, 3);
    assert.equal(maxAbsDiff(remote.result.images[0].image.data, local.result.images[0].image.data), 0);

    // Progress crosses the thread in order, with the same latents.
    assert.deepEqual(remote.steps.map((p) => p.step), [1, 2, 3, 4]);
    for (const [i, p] of remote.steps.entries()) {
      assert.ok(p.latents instanceof Float32Array);
      assert.deepEqual(p.latentShape, [1, 4, 32, 32]);
      assert.equal(maxAbsDiff(p.latents, local.steps[i].latents), 0);
    }
  });

  test('a batch through the thread equals the in-thread batch image for image', async () => {
    const batchRequest = { ...request, numImages: 2, width: 64, height: 64 };
    const local = await engine.run(model, batchRequest);
    const remote = await thread.run(model, batchRequest);
    assert.deepEqual(remote.images.map((i) => i.seed), [3, 4]);
    for (const i of [0, 1]) assert.equal(maxAbsDiff(remote.images[i].image.data, local.images[i].image.data), 0);
  });

  test('an abort crosses the thread and stops within the step in flight', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    const long = { ...request, steps: 10 };
    await assert.rejects(
      thread.run(model, long, {
        signal: controller.signal,
        onStep: ({ step }) => {
          seen.push(step);
          if (step === 1) controller.abort();
        },
      }),
      diffusionError('ABORTED'),
    );
    // The worker learns of the abort while it runs step 2, and stops before step 3.
    assert.ok(seen.length <= 2, `steps reported: ${seen.join(', ')}`);
    await assert.rejects(thread.run(model, request, { signal: AbortSignal.abort() }), diffusionError('ABORTED'));
    const next = await thread.run(model, request);
    assert.equal(maxAbsDiff(next.images[0].image.data, inThread.images[0].image.data), 0, 'the thread runs the next request normally');
  });

  test('model errors cross the thread as DiffusionErrors', async () => {
    const broken = await fixtures.model('broken');
    await rm(join(broken.dir, 'unet', 'model.onnx'));
    const info = await inspectModelFolder(broken.dir);
    await assert.rejects(thread.run(info, request), diffusionError('MODEL_INVALID', /missing unet\/model\.onnx/));
  });

  test('close() ends the thread', async () => {
    const own = new EngineThread(OPTIONS);
    await own.run(model, { ...request, steps: 1, width: 64, height: 64 });
    await own.close();
    await assert.rejects(own.run(model, request), /the engine is closed/);
  });
});
