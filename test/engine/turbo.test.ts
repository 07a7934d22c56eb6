// Turbo models (SD-Turbo, SDXL-Turbo): guidance 0 and one EULER_A step on the model's trailing
// schedule, checked against the same computation done by hand from the UNet's output.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import type { TensorData } from '../../src/diffusion/onnx-model.ts';
import { generate } from '../../src/diffusion/pipeline.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { alphasCumprod, trainingSigmas } from '../../src/diffusion/schedulers/scheduler.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
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
