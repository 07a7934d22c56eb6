// Model upscalers on the fixture network (two 3×3 convolutions and a pixel shuffle): the scale is
// measured, tiles join without seams when their context covers the receptive field, and a folder
// lists what it holds.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createUpscaler, UPSCALER_RECEPTIVE_RADIUS } from '../../src/diffusion/fixtures/index.ts';
import { quantize, type RgbImage } from '../../src/diffusion/image.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { listUpscalers, OnnxUpscaler } from '../../src/diffusion/upscalers.ts';
import { compareImages } from '../helpers/reference.ts';

describe('ONNX upscalers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdql-upscalers-'));
  let upscaler: OnnxUpscaler;
  // Noise: every pixel differs from its neighbours, so a seam cannot hide.
  const image: RgbImage = { width: 70, height: 45, data: new TorchGenerator(4).randn(70 * 45 * 3).map((v) => Math.min(Math.max(0.5 + v / 4, 0), 1)) };
  before(async () => {
    await createUpscaler(join(dir, 'upscalers', 'fixture-x2.onnx'));
    await createUpscaler(join(dir, 'upscalers', 'fixture-x3.onnx'), { scale: 3, seed: 1 });
    writeFileSync(join(dir, 'upscalers', 'broken.onnx'), 'not a model');
    upscaler = await OnnxUpscaler.load(join(dir, 'upscalers', 'fixture-x2.onnx'));
  });
  after(async () => {
    await upscaler?.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it('tiled output equals untiled output within 1 level when the overlap covers the receptive field', async () => {
    const whole = await upscaler.upscale(image, { tile: 1000, overlap: 0 });
    assert.deepEqual([whole.width, whole.height], [140, 90]);
    let tiles = 0;
    const tiled = await upscaler.upscale(image, { tile: 16, overlap: UPSCALER_RECEPTIVE_RADIUS }, (done, total) => {
      tiles = done;
      assert.equal(total, 5 * 3);
    });
    assert.equal(tiles, 15);
    const { within1, maxDiff } = compareImages(quantize(tiled), quantize(whole));
    assert.ok(within1 === 1 && maxDiff <= 1, `max difference ${maxDiff}`);
    // Without context the tiles' edges see zero padding instead of their neighbours: seams.
    const seams = compareImages(quantize(await upscaler.upscale(image, { tile: 16, overlap: 0 })), quantize(whole));
    assert.ok(seams.maxDiff > 1, 'tiling without overlap left no seam: the test cannot tell');
  });

  it('lists the folder with each upscaler\'s scale, and why one cannot be used', async () => {
    const listed = await listUpscalers(dir);
    assert.deepEqual(
      listed.map(({ id, scale, error }) => [id, scale, Boolean(error)]),
      [
        ['broken', undefined, true],
        ['fixture-x2', 2, false],
        ['fixture-x3', 3, false],
      ],
    );
    assert.deepEqual(await listUpscalers(join(dir, 'nowhere')), []);
  });
});
