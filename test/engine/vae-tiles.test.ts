// The VAE in tiles (diffusion/vae-tiles.ts) against the whole image. A decoder or encoder of local
// operators gives the same pixels tile by tile once the margin covers its receptive field (4 latents
// for the fixtures'); one with group norms and a mid-block self-attention (as SD's VAE) sees a
// tile's statistics instead of the image's, so there the tiles are close but not equal.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import type { VaeLayout } from '../../src/diffusion/fixtures/vae.ts';
import { quantize, vaeOutputToImage } from '../../src/diffusion/image.ts';
import { OnnxModel, type TensorData } from '../../src/diffusion/onnx-model.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { DEFAULT_MARGIN, DEFAULT_TILE, runTiled } from '../../src/diffusion/vae-tiles.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { FixtureDir } from './helpers.ts';

// 40 × 24 latents (320 × 192 pixels) in tiles of 16 latents: 3 × 2 tiles, edge tiles cut short.
const [ROWS, COLS] = [24, 40];
const TILES = { tile: 16, margin: 4 };
const DECODER = { inCell: 1, outCell: 8 };
const ENCODER = { inCell: 8, outCell: 1 };

/** Decoder output as 8-bit levels. */
const levels = (sample: Float32Array) => quantize(vaeOutputToImage(sample, COLS * 8, ROWS * 8));

describe('tiled VAE', () => {
  let fixtures: FixtureDir;
  const models: Record<VaeLayout, { decoder: OnnxModel; encoder: OnnxModel }> = {} as never;
  const latents: TensorData & { data: Float32Array } = { data: new TorchGenerator(3).randn(4 * ROWS * COLS), dims: [1, 4, ROWS, COLS] };
  const pixels: TensorData & { data: Float32Array } = { data: new TorchGenerator(4).randn(3 * ROWS * COLS * 64).map((v) => Math.tanh(v)), dims: [1, 3, ROWS * 8, COLS * 8] };

  before(async () => {
    fixtures = await FixtureDir.create();
    for (const layout of ['local', 'attention'] as const) {
      const { paths } = await fixtures.model(layout, { vaeLayout: layout });
      models[layout] = { decoder: await OnnxModel.load(paths.vaeDecoder), encoder: await OnnxModel.load(paths.vaeEncoder!) };
    }
  });
  after(async () => {
    for (const { decoder, encoder } of Object.values(models)) await Promise.all([decoder.release(), encoder.release()]);
    await fixtures.remove();
  });

  const decode = (layout: VaeLayout) => async (tile: TensorData) => (await models[layout].decoder.run({ latent_sample: tile })).sample;
  const encode = (layout: VaeLayout) => async (tile: TensorData) => (await models[layout].encoder.run({ sample: tile })).latent_parameters;

  test('a local decoder gives the whole image within 1 level', async () => {
    const whole = await decode('local')(latents);
    const tiled = await runTiled(decode('local'), latents, DECODER, TILES);
    assert.deepEqual(tiled.dims, whole.dims);
    assert.ok(maxAbsDiff(levels(tiled.data), levels(whole.data)) <= 1);
  });

  test('a margin short of the receptive field shows at the seams', async () => {
    const whole = await decode('local')(latents);
    const tiled = await runTiled(decode('local'), latents, DECODER, { tile: 16, margin: 1 });
    assert.ok(maxAbsDiff(levels(tiled.data), levels(whole.data)) > 1);
  });

  test('a local encoder gives the whole image\'s latents', async () => {
    const whole = await encode('local')(pixels);
    const tiled = await runTiled(encode('local'), pixels, ENCODER, TILES);
    assert.deepEqual(tiled.dims, whole.dims);
    assert.ok(maxAbsDiff(tiled.data, whole.data) < 1e-4);
  });

  test('with group norms and mid-block attention the default tiles are within a mean of 2 levels', async () => {
    // 48 × 80 latents (384 × 640 pixels): two tiles of the default core, side by side. Measured: a
    // mean of 0.77 levels (0.42 with group norms alone); 9.3 with 16-latent tiles and a 4-latent margin.
    const [rows, cols] = [48, 80];
    const large = { data: new TorchGenerator(3).randn(4 * rows * cols), dims: [1, 4, rows, cols] };
    const image = async (run: Promise<{ data: Float32Array }>) => quantize(vaeOutputToImage((await run).data, cols * 8, rows * 8));
    const whole = await image(decode('attention')(large));
    const tiled = await image(runTiled(decode('attention'), large, DECODER, { tile: DEFAULT_TILE, margin: DEFAULT_MARGIN }));
    let sum = 0;
    for (let i = 0; i < whole.length; i++) sum += Math.abs(whole[i] - tiled[i]);
    const mean = sum / whole.length;
    assert.ok(mean > 0 && mean < 2, `mean difference ${mean} levels`);
  });

  test('the engine tiles images above SDQL_VAE_TILE_PIXELS, and only those', async () => {
    // 64 × 576 pixels: 8 × 72 latents, two tiles of the default 64-latent core.
    const model = await fixtures.model('engine', { vaeLayout: 'attention' });
    const request = await resolveRequest(model, { prompt: 'a tall tower', width: 64, height: 576, steps: 1, seed: 5 });
    const images: Uint8Array[] = [];
    for (const vaeTilePixels of [Infinity, 64 * 576, 64 * 576 - 1]) {
      const engine = new Engine({ vaeTilePixels });
      try {
        images.push(quantize((await engine.run(model, request)).images[0].image));
      } finally {
        await engine.close();
      }
    }
    assert.deepEqual(images[1], images[0]);
    assert.ok(maxAbsDiff(images[2], images[0]) > 0);
  });
});
