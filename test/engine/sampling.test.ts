// Sampling through the pipeline on a fixture: every scheduler, classifier-free guidance and its
// options, and seeds (determinism, image i of a batch = a single image with seed + i).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import type { TensorData } from '../../src/diffusion/onnx-model.ts';
import { generate, type GenerateResult } from '../../src/diffusion/pipeline.ts';
import { resolveRequest, type GenerateParams } from '../../src/diffusion/request.ts';
import { SCHEDULER_NAMES } from '../../src/diffusion/schedulers/index.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { FixtureDir, assertImage, initImagePng } from './helpers.ts';

/** Samplers that call the UNet twice per step (diffusers' `order` 2). */
const SECOND_ORDER = new Set(['HEUN', 'DPM2']);
const PARAMS = { prompt: 'a red cube', negativePrompt: 'blurry', width: 64, height: 64, seed: 11 } satisfies GenerateParams;

describe('sampling', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;
  let initImage: Buffer;
  const engine = new Engine();

  /** Runs a request and records the timestep of every UNet call. */
  const run = async (params: Partial<GenerateParams>): Promise<GenerateResult & { timesteps: number[] }> => {
    const timesteps: number[] = [];
    const result = await engine.run(model, await resolveRequest(model, { ...PARAMS, ...params }), { onStep: (p) => void timesteps.push(p.timestep) });
    return { ...result, timesteps };
  };
  const pixels = (result: GenerateResult, i = 0) => result.images[i].image.data;

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('base');
    initImage = await initImagePng(64, 64);
  });
  after(async () => {
    await engine.close();
    await fixtures.remove();
  });

  describe('every scheduler', () => {
    for (const scheduler of SCHEDULER_NAMES) {
      test(scheduler, async () => {
        const txt2img = await run({ scheduler, steps: 4 });
        assertImage(txt2img.images[0].image, 64, 64);
        const img2img = await run({ scheduler, steps: 4, initImage, strength: 0.5 });
        assertImage(img2img.images[0].image, 64, 64);
        // Strength 0.5 skips the first int(4 × 0.5) = 2 steps of the same schedule (each `order` UNet calls).
        const skipped = 2 * (SECOND_ORDER.has(scheduler) ? 2 : 1);
        assert.deepEqual(img2img.timesteps, txt2img.timesteps.slice(skipped));
      });
    }
  });

  describe('classifier-free guidance', () => {
    test('guidanceScale ≤ 1 makes no unconditional pass: the negative prompt has no effect', async () => {
      for (const guidanceScale of [0, 1]) {
        const a = await run({ guidanceScale, steps: 3, negativePrompt: 'blurry' });
        const b = await run({ guidanceScale, steps: 3, negativePrompt: 'a green sphere' });
        assert.equal(maxAbsDiff(pixels(a), pixels(b)), 0, `guidanceScale ${guidanceScale}`);
      }
      const a = await run({ guidanceScale: 1.5, steps: 3, negativePrompt: 'blurry' });
      const b = await run({ guidanceScale: 1.5, steps: 3, negativePrompt: 'a green sphere' });
      assert.ok(maxAbsDiff(pixels(a), pixels(b)) > 1e-3, 'with guidance the negative prompt changes the image');
    });

    test('the UNet batch is n without guidance and 2n with it', async () => {
      const loaded = await StableDiffusionModel.load(model);
      try {
        const batches: number[][] = [];
        const unetRun = loaded.unet.run.bind(loaded.unet);
        loaded.unet.run = (feeds: Record<string, TensorData>) => {
          batches.push([feeds.sample.dims[0], feeds.encoder_hidden_states.dims[0]]);
          return unetRun(feeds);
        };
        for (const guidanceScale of [1, 7.5]) {
          batches.length = 0;
          await generate(loaded, await resolveRequest(model, { ...PARAMS, guidanceScale, numImages: 3, steps: 2, scheduler: 'EULER' }));
          const n = guidanceScale > 1 ? 6 : 3;
          assert.deepEqual(batches, [[n, n], [n, n]], `guidanceScale ${guidanceScale}`);
        }
      } finally {
        await loaded.release();
      }
    });

    test('guidanceRescale changes the image', async () => {
      const plain = await run({ steps: 3, guidanceScale: 7.5 });
      const rescaled = await run({ steps: 3, guidanceScale: 7.5, guidanceRescale: 0.7 });
      assertImage(rescaled.images[0].image, 64, 64);
      assert.ok(maxAbsDiff(pixels(plain), pixels(rescaled)) > 1e-3);
    });

    test("eta changes DDIM's image and not EULER's", async () => {
      const ddim0 = await run({ scheduler: 'DDIM', steps: 4, eta: 0 });
      const ddim1 = await run({ scheduler: 'DDIM', steps: 4, eta: 1 });
      assertImage(ddim1.images[0].image, 64, 64);
      assert.ok(maxAbsDiff(pixels(ddim0), pixels(ddim1)) > 1e-3);
      const euler0 = await run({ scheduler: 'EULER', steps: 4, eta: 0 });
      const euler1 = await run({ scheduler: 'EULER', steps: 4, eta: 1 });
      assert.equal(maxAbsDiff(pixels(euler0), pixels(euler1)), 0);
    });
  });

  describe('seeds', () => {
    test('the same request twice gives identical pixels', async () => {
      for (const scheduler of ['EULER_A', 'DPMPP_2M_KARRAS']) {
        const a = await run({ scheduler, steps: 3, numImages: 2 });
        const b = await run({ scheduler, steps: 3, numImages: 2 });
        for (const i of [0, 1]) assert.equal(maxAbsDiff(pixels(a, i), pixels(b, i)), 0, scheduler);
      }
    });

    test('a request without a seed gets a random one, recorded', async () => {
      const a = await engine.run(model, await resolveRequest(model, { prompt: 'x', steps: 1 }));
      const b = await engine.run(model, await resolveRequest(model, { prompt: 'x', steps: 1 }));
      assert.notEqual(a.request.seed, b.request.seed);
      assert.equal(a.images[0].seed, a.request.seed);
      const again = await run({ prompt: 'x', negativePrompt: '', steps: 1, seed: a.request.seed });
      assert.equal(maxAbsDiff(pixels(a), pixels(again)), 0);
    });

    // An SDE sampler (noise at every step) and img2img (noise for the VAE latent distribution and
    // for add_noise) draw from every image's generator.
    for (const label of ['EULER_A', 'img2img'] as const) {
      for (const guidanceScale of [7.5, 1]) {
        test(`image i of a batch equals a single image with seed + i (${label}, guidanceScale ${guidanceScale})`, async () => {
          const extra = label === 'img2img' ? { scheduler: 'EULER', initImage, strength: 0.75 } : { scheduler: 'EULER_A' };
          const batch = await run({ ...extra, guidanceScale, steps: 4, numImages: 3, seed: 40 });
          assert.deepEqual(batch.images.map((i) => i.seed), [40, 41, 42]);
          const singles = await Promise.all([40, 41, 42].map((seed) => run({ ...extra, guidanceScale, steps: 4, seed })));
          for (const [i, single] of singles.entries()) {
            // onnxruntime's kernels may round differently for batch 1 than for batch 3, by ~1e-5;
            // another seed's image differs by far more (checked below).
            assert.ok(maxAbsDiff(pixels(batch, i), pixels(single)) < 1e-4, `image ${i}`);
          }
          assert.ok(maxAbsDiff(pixels(singles[0]), pixels(singles[1])) > 0.05);
        });
      }
    }
  });
});
