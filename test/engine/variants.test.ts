// Every exporter variant the fixture builder writes runs txt2img and img2img through the Engine.
// The float32 variants hold the same weights as the base fixture, so they must give its images exactly.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import type { FixtureOptions } from '../../src/diffusion/fixtures/index.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { type GenerateResult } from '../../src/diffusion/pipeline.ts';
import { resolveRequest, type GenerateParams } from '../../src/diffusion/request.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { FixtureDir, assertImage, initImagePng } from './helpers.ts';

const VARIANTS: [name: string, options: FixtureOptions][] = [
  ['timestep-int64', { timestep: 'int64' }],
  ['timestep-float32-scalar', { timestep: 'float32-scalar' }],
  ['vae-latent-sample', { vaeEncoderOutput: 'latent_sample' }],
  ['fp16', { precision: 'fp16' }],
  ['fp16-timestep-scalar', { precision: 'fp16', timestep: 'float32-scalar' }],
  ['external-model.onnx_data', { externalData: 'model.onnx_data' }],
  ['external-weights.pb', { externalData: 'weights.pb' }],
  ['external-model.onnx.data', { externalData: 'model.onnx.data' }],
  ['input-ids-int64', { inputIds: 'int64' }],
];

// A size other than the fixture's native 64×64, and not square, so that width and height cannot be swapped.
const TXT2IMG: GenerateParams = { prompt: 'a red cube', negativePrompt: 'blurry', width: 96, height: 64, steps: 2, seed: 7, scheduler: 'EULER' };

describe('fixture variants through the Engine', () => {
  let fixtures: FixtureDir;
  let base: ModelFolderInfo;
  let initImage: Buffer;
  const engine = new Engine();
  const run = async (model: ModelFolderInfo, params: GenerateParams): Promise<GenerateResult> => engine.run(model, await resolveRequest(model, params));
  let baseTxt2img: GenerateResult;

  before(async () => {
    fixtures = await FixtureDir.create();
    base = await fixtures.model('base');
    // 83×70 rounds down to 80×64, the size img2img takes when none is given.
    initImage = await initImagePng(83, 70);
    baseTxt2img = await run(base, TXT2IMG);
  });
  after(async () => {
    await engine.close();
    await fixtures.remove();
  });

  test('the base fixture (float32 timestep, latent_parameters) runs txt2img and img2img', async () => {
    assertImage(baseTxt2img.images[0].image, 96, 64);
    const img2img = await run(base, { prompt: 'a red cube', initImage, strength: 0.5, steps: 4, seed: 7 });
    assert.equal(img2img.request.width, 80);
    assert.equal(img2img.request.height, 64);
    assertImage(img2img.images[0].image, 80, 64);
  });

  for (const [name, options] of VARIANTS) {
    test(name, async () => {
      const model = await fixtures.model(name, options);
      assert.equal(model.error, undefined);
      if (options.externalData) assert.ok(existsSync(join(model.dir, 'unet', options.externalData)), 'the variant stores its weights externally');
      assert.equal(model.precision, options.precision ?? 'fp32');

      const txt2img = await run(model, TXT2IMG);
      assertImage(txt2img.images[0].image, 96, 64);
      const difference = maxAbsDiff(txt2img.images[0].image.data, baseTxt2img.images[0].image.data);
      // Same weights: float32 variants must match the base exactly; float16 ones within half precision.
      if (options.precision === 'fp16') assert.ok(difference > 0 && difference < 0.1, `fp16 differs from fp32 by ${difference}`);
      else assert.equal(difference, 0);

      const img2img = await run(model, { prompt: 'a red cube', initImage, width: 64, height: 72, strength: 0.6, steps: 3, seed: 3 });
      assertImage(img2img.images[0].image, 64, 72);
    });
  }

  test('img2img depends on the init image', async () => {
    const params = { prompt: 'a red cube', width: 64, height: 64, strength: 0.5, steps: 4, seed: 1 };
    const a = await run(base, { ...params, initImage: await initImagePng(64, 64, 0) });
    const b = await run(base, { ...params, initImage: await initImagePng(64, 64, 2) });
    assert.ok(maxAbsDiff(a.images[0].image.data, b.images[0].image.data) > 0.01);
  });
});
