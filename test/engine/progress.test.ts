// Step progress and cancellation on the calling thread: onStep reports every UNet call in order
// with the current latents, and an AbortSignal stops the denoising at the next step.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Engine } from '../../src/diffusion/engine.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import type { TensorData } from '../../src/diffusion/onnx-model.ts';
import { generate, type StepProgress } from '../../src/diffusion/pipeline.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { FixtureDir, diffusionError } from './helpers.ts';

describe('progress and abort', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;
  const engine = new Engine();

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('base');
  });
  after(async () => {
    await engine.close();
    await fixtures.remove();
  });

  test('onStep gets steps 1..total in order with latents of the batch', async () => {
    for (const [scheduler, total] of [['EULER', 5], ['HEUN', 9]] as const) {
      const steps: StepProgress[] = [];
      const request = await resolveRequest(model, { prompt: 'a cube', scheduler, steps: 5, numImages: 2, width: 96, height: 64, seed: 1 });
      // The pipeline reuses no latents buffer across steps, so keeping the progress objects is safe.
      await engine.run(model, request, { onStep: (p) => void steps.push(p) });
      assert.deepEqual(steps.map((p) => p.step), Array.from({ length: total }, (_, i) => i + 1), scheduler);
      for (const p of steps) {
        assert.equal(p.totalSteps, total);
        assert.deepEqual(p.latentShape, [2, 4, 8, 12]);
        assert.equal(p.latents.length, 2 * 4 * 8 * 12);
        assert.ok(p.latents.every(Number.isFinite));
      }
      if (scheduler === 'EULER') {
        // Timesteps run from noisy to clean.
        for (let i = 1; i < steps.length; i++) assert.ok(steps[i].timestep < steps[i - 1].timestep);
      }
      assert.notDeepEqual(steps[0].latents, steps[1].latents);
    }
  });

  test('an abort during onStep stops at the next step with ABORTED', async () => {
    const loaded = await StableDiffusionModel.load(model);
    try {
      let unetCalls = 0;
      const unetRun = loaded.unet.run.bind(loaded.unet);
      loaded.unet.run = (feeds: Record<string, TensorData>) => (unetCalls++, unetRun(feeds));
      const controller = new AbortController();
      const seen: number[] = [];
      const request = await resolveRequest(model, { prompt: 'a cube', scheduler: 'EULER', steps: 6, seed: 1 });
      await assert.rejects(
        generate(loaded, request, {
          signal: controller.signal,
          onStep: ({ step }) => {
            seen.push(step);
            if (step === 2) controller.abort();
          },
        }),
        diffusionError('ABORTED'),
      );
      assert.deepEqual(seen, [1, 2]);
      assert.equal(unetCalls, 2, 'no UNet call after the abort');
    } finally {
      await loaded.release();
    }
  });

  test('an async onStep is awaited, so an abort it signals on a later turn of the event loop still stops the next step', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    const request = await resolveRequest(model, { prompt: 'a cube', scheduler: 'EULER', steps: 6, seed: 1 });
    await assert.rejects(
      engine.run(model, request, {
        signal: controller.signal,
        onStep: async ({ step }) => {
          seen.push(step);
          await nextTurn();
          if (step === 3) controller.abort();
        },
      }),
      diffusionError('ABORTED'),
    );
    assert.deepEqual(seen, [1, 2, 3]);
  });

  test('an already aborted signal runs nothing', async () => {
    const request = await resolveRequest(model, { prompt: 'a cube', steps: 3, seed: 1 });
    let steps = 0;
    await assert.rejects(engine.run(model, request, { signal: AbortSignal.abort(), onStep: () => void steps++ }), diffusionError('ABORTED'));
    assert.equal(steps, 0);
  });
});
