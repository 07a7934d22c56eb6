// Batches run in sub-batches sized to a memory budget (diffusion/sub-batch.ts) give the images of the
// whole batch at once and of one-image requests with seeds seed + i. onnxruntime's kernels may round
// differently for another batch size, by ~1e-6 a UNet call (as sampling.test.ts notes for batches);
// another image differs by far more (checked below).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import type { OnnxModel } from '../../src/diffusion/onnx-model.ts';
import type { GenerateResult } from '../../src/diffusion/pipeline.ts';
import { resolveRequest, type GenerateParams } from '../../src/diffusion/request.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { runInSubBatches, unetSampleBytes, unetSamplesPerCall } from '../../src/diffusion/sub-batch.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { FixtureDir } from './helpers.ts';

// 3 images with guidance: 6 UNet samples a step. Not square, so that height and width cannot be swapped.
const PARAMS: GenerateParams = { prompt: 'a red cube', negativePrompt: 'blurry', width: 96, height: 64, steps: 3, seed: 11, numImages: 3, scheduler: 'EULER_A' };
const SAMPLE_BYTES = unetSampleBytes(64 / 8, 96 / 8);
const SAME = 1e-4;

describe('sub-batches', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;
  const engines: Engine[] = [];
  const run = async (batchMemoryBytes: number, params: GenerateParams = PARAMS): Promise<GenerateResult> => {
    const engine = new Engine({ batchMemoryBytes });
    engines.push(engine);
    return engine.run(model, await resolveRequest(model, params));
  };
  let whole: GenerateResult;

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('base');
    whole = await run(Infinity);
  });
  after(async () => {
    for (const engine of engines) await engine.close();
    await fixtures.remove();
  });

  test('the budget sets the samples per UNet call: at least one, at most the batch', () => {
    assert.equal(unetSamplesPerCall(6, 8, 12, undefined), 6);
    assert.equal(unetSamplesPerCall(6, 8, 12, Infinity), 6);
    assert.equal(unetSamplesPerCall(6, 8, 12, 4 * SAMPLE_BYTES), 4);
    assert.equal(unetSamplesPerCall(6, 8, 12, 4 * SAMPLE_BYTES - 1), 3);
    assert.equal(unetSamplesPerCall(6, 8, 12, 1), 1);
    // SD 1.x at 1024×1024: 17 GiB a sample, which is why 16 images with guidance cannot run in one call.
    assert.ok(unetSampleBytes(128, 128) > 16 * 2 ** 30);
    // A model of 5 full-resolution heads (SD 2.x) takes 5/8 of SD 1.x's 8, and more samples per call.
    const sd2 = [{ level: 0, heads: 5 }, { level: 1, heads: 10 }];
    assert.ok(Math.abs(unetSampleBytes(8, 12, sd2) - (5 / 8) * SAMPLE_BYTES) < 1);
    assert.equal(unetSamplesPerCall(6, 8, 12, 4 * SAMPLE_BYTES, sd2), 6);
    // SDXL has no attention at full resolution: its largest is at half the sides (4 × fewer tokens), with 10 heads.
    assert.ok(Math.abs(unetSampleBytes(8, 12, [{ level: 1, heads: 10 }, { level: 2, heads: 20 }]) - (10 / 8 / 16) * SAMPLE_BYTES) < 1);
  });

  for (const [name, budget] of [
    ['one sample per call', 1],
    ['four samples per call (4 + 2)', 4 * SAMPLE_BYTES],
  ] as const) {
    test(`${name} gives the whole batch's images`, async () => {
      const split = await run(budget);
      assert.deepEqual(
        split.images.map((i) => i.seed),
        whole.images.map((i) => i.seed),
      );
      for (const [i, { image }] of split.images.entries()) assert.ok(maxAbsDiff(image.data, whole.images[i].image.data) < SAME, `image ${i} differs`);
      assert.ok(maxAbsDiff(split.images[0].image.data, split.images[1].image.data) > 0.05);
    });
  }

  test('image i of a split batch is the one-image request with seed + i', async () => {
    const split = await run(1);
    for (let i = 0; i < 3; i++) {
      const single = await run(Infinity, { ...PARAMS, numImages: 1, seed: PARAMS.seed! + i });
      assert.ok(maxAbsDiff(split.images[i].image.data, single.images[0].image.data) < SAME, `image ${i} differs from seed ${PARAMS.seed! + i} alone`);
    }
  });

  test('runInSubBatches makes one call per sub-batch, cuts batch inputs only, and joins the outputs', async () => {
    for (const timestep of ['float32', 'float32-scalar'] as const) {
      const loaded = await StableDiffusionModel.load(await fixtures.model(`t-${timestep}`, { timestep }));
      try {
        let calls = 0;
        const counted = { run: (feeds: Parameters<OnnxModel['run']>[0]) => (calls++, loaded.unet.run(feeds)) } as OnnxModel;
        const batch = 5;
        const latent = Float32Array.from({ length: batch * 4 * 8 * 8 }, (_, i) => Math.sin(i));
        const hidden = Float32Array.from({ length: batch * 77 * 32 }, (_, i) => Math.cos(i));
        const feeds = {
          sample: { data: latent, dims: [batch, 4, 8, 8] },
          timestep: timestep === 'float32' ? { data: new Float32Array(batch).fill(500), dims: [batch] } : { data: Float32Array.of(500), dims: [] },
          encoder_hidden_states: { data: hidden, dims: [batch, 77, 32] },
        };
        const all = await loaded.unet.run(feeds);
        const pieces = await runInSubBatches(counted, feeds, batch, 2);
        assert.equal(calls, 3);
        assert.deepEqual(pieces.out_sample.dims, all.out_sample.dims);
        assert.ok(maxAbsDiff(pieces.out_sample.data, all.out_sample.data) < 1e-5);
      } finally {
        await loaded.release();
      }
    }
  });
});
