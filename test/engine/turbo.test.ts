// Turbo models (SD-Turbo, SDXL-Turbo): guidance 0 and one EULER_A step on the model's trailing
// schedule; LCM-distilled UNets: the guidance as timestep_cond and the LCM scheduler. Each is
// checked against the same computation done by hand from the UNet's output.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import type { TensorData } from '../../src/diffusion/onnx-model.ts';
import { guidanceScaleEmbedding } from '../../src/diffusion/guidance-embedding.ts';
import { generate } from '../../src/diffusion/pipeline.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { LCMScheduler } from '../../src/diffusion/schedulers/lcm.ts';
import { alphasCumprod, trainingSigmas } from '../../src/diffusion/schedulers/scheduler.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { createDemoAdapters } from '../../src/diffusion/fixtures/adapters.ts';
import { SD15_SCHEDULER_CONFIG } from '../../src/diffusion/fixtures/index.ts';
import { vaeOutputToImage } from '../../src/diffusion/image.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { FixtureDir } from './helpers.ts';

// SD-Turbo's scheduler_config.json keys that matter: trailing spacing over the SD 2.1 betas.
const TURBO_SCHEDULER = { _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'trailing', steps_offset: 1 };

describe('turbo configuration: trailing EULER_A, guidanceScale 0, one step', () => {
  let fixtures: FixtureDir;
  let info: ModelFolderInfo;
  let model: StableDiffusionModel;

  before(async () => {
    fixtures = await FixtureDir.create();
    info = await fixtures.model('turbo', { schedulerConfig: TURBO_SCHEDULER, seed: 5 });
    model = await StableDiffusionModel.load(info);
  });
  after(async () => {
    await model.release();
    await fixtures.remove();
  });

  test('one UNet call of the prompt alone per image, and the image is the hand-computed x₀ through the VAE', async () => {
    const [n, width, height, seed, prompt] = [2, 96, 64, 21, 'a red cube'];
    const calls: Record<string, TensorData>[] = [];
    const unetRun = model.unet.run.bind(model.unet);
    model.unet.run = (feeds: Record<string, TensorData>) => (calls.push(feeds), unetRun(feeds));
    const encoded: Int32Array[] = [];
    const encoderRun = model.textEncoder.run.bind(model.textEncoder);
    model.textEncoder.run = (feeds: Record<string, TensorData>, outputs?: string[]) => (encoded.push(feeds.input_ids.data as Int32Array), encoderRun(feeds, outputs));
    const request = await resolveRequest(info, {
      prompt,
      negativePrompt: 'blurry',
      promptSyntax: 'PLAIN',
      scheduler: 'EULER_A',
      guidanceScale: 0,
      steps: 1,
      numImages: n,
      width,
      height,
      seed,
    });
    const result = await generate(model, request);
    model.unet.run = unetRun;
    model.textEncoder.run = encoderRun;

    assert.deepEqual(encoded, [model.tokenizer.encodePadded(prompt)], 'the negative prompt is not encoded');

    assert.equal(calls.length, 1, 'one UNet call for one step');
    assert.deepEqual(calls[0].sample.dims, [n, 4, height / 8, width / 8], 'a batch of n: no unconditional half');
    assert.equal(calls[0].encoder_hidden_states.dims[0], n);
    assert.deepEqual(Array.from(calls[0].timestep.data), Array(n).fill(999), 'trailing, one step: t = 999');

    // By hand: σ_max of the SD 1.x betas; trailing spacing starts the latents at σ·ε (not √(σ² + 1)·ε).
    const sigma = trainingSigmas(alphasCumprod({ ...SD15_SCHEDULER_CONFIG, rescale_betas_zero_snr: false }))[999];
    const perImage = 4 * (height / 8) * (width / 8);
    const { data: text } = await model.encodeTokens(model.tokenizer.encodePadded(prompt), 1);
    for (let i = 0; i < n; i++) {
      const latents = new TorchGenerator(seed + i).randn(perImage).map((e) => e * sigma);
      const { out_sample } = await unetRun({
        sample: { data: latents.map((x) => x / Math.sqrt(sigma * sigma + 1)), dims: [1, 4, height / 8, width / 8] },
        timestep: { data: Float32Array.of(999), dims: [1] },
        encoder_hidden_states: { data: text, dims: [1, text.length / 32, 32] },
      });
      // One Euler-ancestral step to σ = 0 is x₀ = x − σ·ε: σ_up and σ_down are 0.
      const x0 = latents.map((x, j) => (x - sigma * out_sample.data[j]) / info.vaeScalingFactor);
      const { sample } = await model.vaeDecoder.run({ latent_sample: { data: x0, dims: [1, 4, height / 8, width / 8] } });
      const expected = vaeOutputToImage(sample.data, width, height);
      assert.ok(maxAbsDiff(result.images[i].image.data, expected.data) < 1e-4, `image ${i}`);
    }
  });
});

describe('LCM-distilled UNet: timestep_cond', () => {
  let fixtures: FixtureDir;
  let info: ModelFolderInfo;
  let model: StableDiffusionModel;
  const DIM = 24;

  before(async () => {
    fixtures = await FixtureDir.create();
    info = await fixtures.model('lcm', { timeCondProjDim: DIM, schedulerConfig: { _class_name: 'LCMScheduler', original_inference_steps: 50, timestep_scaling: 0.01 } });
    model = await StableDiffusionModel.load(info);
  });
  after(async () => {
    await model.release();
    await fixtures.remove();
  });

  test('the guidance embedding of w = guidanceScale − 1 is VDM\'s sinusoid of 1000·w (odd widths padded with 0)', () => {
    const expected = (w: number, dim: number) => {
      const half = Math.floor(dim / 2);
      const freqs = Array.from({ length: half }, (_, i) => Math.exp((-i * Math.log(10000)) / (half - 1)));
      return [...freqs.map((f) => Math.sin(1000 * w * f)), ...freqs.map((f) => Math.cos(1000 * w * f)), ...(dim % 2 ? [0] : [])];
    };
    for (const [scale, dim] of [[8, 256], [1.5, 7], [1, 4]] as const) {
      const batch = guidanceScaleEmbedding(scale, dim, 2);
      assert.equal(batch.length, 2 * dim);
      assert.deepEqual(batch.subarray(0, dim), batch.subarray(dim), 'each image gets the same row');
      assert.ok(maxAbsDiff(batch.subarray(0, dim), expected(scale - 1, dim)) < 2e-3, `scale ${scale}, dim ${dim}`);
    }
    assert.deepEqual(Array.from(guidanceScaleEmbedding(1, 4, 1)), [0, 0, 1, 1]);
  });

  test('no unconditional pass at any guidance; the UNet gets timestep_cond, and the LCM run equals the loop by hand', async () => {
    const [n, size, seed, steps, guidanceScale, prompt] = [2, 64, 3, 3, 8, 'a red cube'];
    const calls: Record<string, TensorData>[] = [];
    const unetRun = model.unet.run.bind(model.unet);
    model.unet.run = (feeds: Record<string, TensorData>) => (calls.push(feeds), unetRun(feeds));
    const request = await resolveRequest(info, { prompt, negativePrompt: 'blurry', promptSyntax: 'PLAIN', scheduler: 'LCM', guidanceScale, steps, numImages: n, width: size, height: size, seed });
    const result = await generate(model, request);
    model.unet.run = unetRun;

    assert.deepEqual(calls.map((c) => c.sample.dims[0]), [n, n, n]);
    assert.deepEqual(calls.map((c) => c.timestep.data[0]), [999, 679, 339]);
    for (const call of calls) assert.deepEqual(call.timestep_cond, { data: guidanceScaleEmbedding(guidanceScale, DIM, n), dims: [n, DIM] });

    // By hand: each image's generator gives its initial latents, then one draw per step but the last.
    const { data: text } = await model.encodeTokens(model.tokenizer.encodePadded(prompt), 1);
    const latentDims = [1, 4, size / 8, size / 8];
    const scheduler = new LCMScheduler(info.schedulerConfig);
    for (let i = 0; i < n; i++) {
      scheduler.setTimesteps(steps);
      const generator = new TorchGenerator(seed + i);
      let latents = generator.randn(4 * (size / 8) ** 2);
      for (const t of scheduler.timesteps) {
        const { out_sample } = await unetRun({
          sample: { data: latents, dims: latentDims },
          timestep: { data: Float32Array.of(t), dims: [1] },
          encoder_hidden_states: { data: text, dims: [1, text.length / 32, 32] },
          timestep_cond: { data: guidanceScaleEmbedding(guidanceScale, DIM, 1), dims: [1, DIM] },
        });
        latents = scheduler.step(out_sample.data, t, latents, () => generator.randn(latents.length));
      }
      const { sample } = await model.vaeDecoder.run({ latent_sample: { data: latents.map((v) => v / info.vaeScalingFactor), dims: latentDims } });
      assert.ok(maxAbsDiff(result.images[i].image.data, vaeOutputToImage(sample.data, size, size).data) < 1e-4, `image ${i}`);
    }

    // The embedding reaches the model: another guidance gives another image.
    const other = await generate(model, await resolveRequest(info, { ...request, guidanceScale: 2 }));
    assert.ok(maxAbsDiff(other.images[0].image.data, result.images[0].image.data) > 1e-3);
  });
});

describe('LCM-LoRA on a normal UNet: LCM scheduler, guidance 1', () => {
  let fixtures: FixtureDir;
  let info: ModelFolderInfo;

  before(async () => {
    fixtures = await FixtureDir.create();
    info = await fixtures.model('base', { seed: 2 });
  });
  after(async () => {
    await fixtures.remove();
  });

  test('the LoRA is merged and every step is one UNet call of batch n, with no timestep_cond', async () => {
    const { lora } = await createDemoAdapters(info.dir, join(fixtures.root, 'loras'), join(fixtures.root, 'embeddings'));
    const params = { prompt: 'a red cube', scheduler: 'LCM', guidanceScale: 1, steps: 4, numImages: 2, width: 64, height: 64, seed: 9 } as const;
    const runs = [];
    for (const loras of [[], [{ name: 'lcm', path: lora, weight: 1 }]]) {
      const model = await StableDiffusionModel.load(info, {}, loras.length ? { loras, embeddings: [] } : undefined);
      try {
        const calls: Record<string, TensorData>[] = [];
        const unetRun = model.unet.run.bind(model.unet);
        model.unet.run = (feeds: Record<string, TensorData>) => (calls.push(feeds), unetRun(feeds));
        runs.push(await generate(model, await resolveRequest(info, { ...params, loras })));
        assert.deepEqual(calls.map((c) => [c.sample.dims[0], c.timestep.data[0], 'timestep_cond' in c]), [[2, 999, false], [2, 759, false], [2, 499, false], [2, 259, false]]);
      } finally {
        await model.release();
      }
    }
    assert.ok(maxAbsDiff(runs[0].images[0].image.data, runs[1].images[0].image.data) > 1e-3, 'the LoRA changes the image');
  });
});
