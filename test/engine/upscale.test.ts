// Standalone upscales through the engine and its thread: a model upscaler at its own factor then
// Lanczos to the size asked for, `lanczos` alone, a tile per step, abort between tiles, and the
// checks that refuse a request before it runs.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { EngineThread } from '../../src/diffusion/engine-thread.ts';
import { Engine, type GenerationEngine } from '../../src/diffusion/engine.ts';
import { createUpscaler } from '../../src/diffusion/fixtures/index.ts';
import { quantize } from '../../src/diffusion/image.ts';
import { LIMITS } from '../../src/diffusion/limits.ts';
import { resolveUpscale, upscaleInfotext } from '../../src/diffusion/upscale.ts';
import { listUpscalers, OnnxUpscaler, type UpscalerInfo } from '../../src/diffusion/upscalers.ts';
import { diffusionError, initImagePng } from './helpers.ts';

describe('upscale', () => {
  let dir: string;
  let upscalers: UpscalerInfo[];
  let source: Buffer;
  const engines: GenerationEngine[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sdql-upscale-'));
    await createUpscaler(join(dir, 'upscalers', 'fixture-x2.onnx'));
    upscalers = await listUpscalers(dir);
    // 200 × 70: two columns of tiles (192 px each).
    source = await initImagePng(200, 70, 3);
    engines.push(new Engine(), new EngineThread());
  });
  after(async () => {
    for (const engine of engines) await engine.close();
    await rm(dir, { recursive: true, force: true });
  });

  const sourceRgb = async () => sharp(source).removeAlpha().raw().toBuffer();
  const path = () => join(dir, 'upscalers', 'fixture-x2.onnx');

  test('a model upscaler runs at its own factor by default, a tile per step, on the engine and its thread alike', async () => {
    const request = await resolveUpscale(source, { upscaler: 'fixture-x2' }, upscalers);
    assert.deepEqual(request, { upscaler: 'fixture-x2', scale: 2, width: 400, height: 140, tiles: 2, format: 'png' });
    const model = await OnnxUpscaler.load(path());
    const rgb = await sourceRgb();
    const expected = quantize(await model.upscale({ width: 200, height: 70, data: Float32Array.from(rgb, (v) => v / 255) }));
    await model.release();
    for (const engine of engines) {
      const tiles: [number, number][] = [];
      const image = await engine.upscale({ ...request, image: source, upscalerPath: path() }, { onTile: (done, total) => void tiles.push([done, total]) });
      assert.deepEqual(tiles, [[1, 2], [2, 2]], engine.constructor.name);
      assert.deepEqual([image.width, image.height], [400, 140]);
      assert.ok(Buffer.from(quantize(image)).equals(Buffer.from(expected)), `${engine.constructor.name}: the upscaler's own output`);
    }
  });

  test('another scale resizes the model\'s output with Lanczos; `lanczos` resizes the image alone', async () => {
    const [engine] = engines;
    const x3 = await resolveUpscale(source, { upscaler: 'fixture-x2', scale: 2.5 }, upscalers);
    assert.deepEqual([x3.width, x3.height], [500, 175]);
    const native = await engine.upscale({ ...x3, scale: 2, width: 400, height: 140, image: source, upscalerPath: path() });
    const expected = await sharp(quantize(native), { raw: { width: 400, height: 140, channels: 3 } }).resize(500, 175, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
    assert.ok(Buffer.from(quantize(await engine.upscale({ ...x3, image: source, upscalerPath: path() }))).equals(expected));

    const lanczos = await resolveUpscale(source, { upscaler: 'lanczos' }, upscalers);
    assert.deepEqual(lanczos, { upscaler: 'lanczos', scale: 2, width: 400, height: 140, tiles: 1, format: 'png' });
    const resized = await sharp(await sourceRgb(), { raw: { width: 200, height: 70, channels: 3 } }).resize(400, 140, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
    assert.ok(Buffer.from(quantize(await engine.upscale({ ...lanczos, image: source }))).equals(resized));
  });

  test('an abort stops the thread\'s upscale between tiles', async () => {
    const thread = engines[1];
    // Eight tiles: the abort, sent at the first, reaches the thread long before the last.
    const wide = await initImagePng(192 * 8, 32);
    const request = await resolveUpscale(wide, { upscaler: 'fixture-x2' }, upscalers);
    assert.equal(request.tiles, 8);
    const abort = new AbortController();
    const tiles: number[] = [];
    await assert.rejects(thread.upscale({ ...request, image: wide, upscalerPath: path() }, { signal: abort.signal, onTile: (done) => void (tiles.push(done), abort.abort()) }), diffusionError('ABORTED'));
    assert.ok(tiles.length < 8, `stopped after ${tiles.length} of 8 tiles`);
  });

  test('refuses an unknown upscaler, a scale out of range, a result beyond the pixel limit and an unreadable image', async () => {
    await assert.rejects(resolveUpscale(source, { upscaler: 'nope' }, upscalers), diffusionError('BAD_USER_INPUT', /unknown upscaler "nope"/));
    await assert.rejects(resolveUpscale(source, { upscaler: 'lanczos', scale: 0.5 }, upscalers), diffusionError('BAD_USER_INPUT', /scale must be from 1 to 8, got 0.5/));
    await assert.rejects(resolveUpscale(source, { upscaler: 'lanczos', scale: 9 }, upscalers), diffusionError('BAD_USER_INPUT', /scale must be from 1 to 8/));
    const big = await initImagePng(1100, 1100);
    await assert.rejects(resolveUpscale(big, { upscaler: 'lanczos', scale: 4 }, upscalers), diffusionError('BAD_USER_INPUT', new RegExp(`the result would be 4400×4400, more than ${LIMITS.maxInputPixels} pixels`)));
    await assert.rejects(resolveUpscale(Buffer.from('not an image'), { upscaler: 'lanczos' }, upscalers), diffusionError('BAD_USER_INPUT', /image could not be read/));
  });

  test('writes AUTOMATIC1111\'s Extras keys', () => {
    assert.equal(upscaleInfotext({ upscaler: 'lanczos', scale: 2.5 }), 'Postprocess upscale by: 2.5, Postprocess upscaler: Lanczos');
    assert.equal(upscaleInfotext({ upscaler: 'fixture-x2', scale: 2 }), 'Postprocess upscale by: 2, Postprocess upscaler: fixture-x2');
  });
});
