// The mask handling AUTOMATIC1111 does around the pipeline: which channel a mask is read from, the
// box ONLY_MASKED crops (masking.get_crop_region_v2 and expand_crop_region, worked by hand), and the
// overlay that keeps the init image's pixels where the mask is 0.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { decodeMask, expandBox, maskBox, overlay, type Pixels } from '../../src/diffusion/mask.ts';

const encode = (data: number[], channels: 1 | 2 | 3 | 4) => sharp(Buffer.from(data), { raw: { width: 2, height: 1, channels } }).png().toBuffer();

test('a mask is its grey, its alpha when it has transparency, or its luminance as PIL computes it', async () => {
  assert.deepEqual([...(await decodeMask(await encode([0, 200], 1))).data], [0, 200]);
  assert.deepEqual([...(await decodeMask(await encode([10, 20, 30, 0, 40, 50, 60, 255], 4))).data], [0, 255]);
  // Opaque alpha says nothing: the colour counts. PIL: (R·19595 + G·38470 + B·7471 + 2¹⁵) >> 16.
  assert.deepEqual([...(await decodeMask(await encode([255, 0, 0, 255, 0, 255, 0, 255], 4))).data], [76, 150]);
  assert.deepEqual([...(await decodeMask(await encode([0, 0, 255, 100, 100, 100], 3))).data], [29, 100]);
});

test('the ONLY_MASKED box: the mask\'s extent plus padding, grown to the processing aspect within the image', () => {
  const mask: Pixels = { width: 100, height: 100, channels: 1, data: new Uint8Array(100 * 100) };
  mask.data[20 * 100 + 15] = 1;
  mask.data[49 * 100 + 24] = 255;
  assert.deepEqual(maskBox(mask, 0), [15, 20, 25, 50]);
  assert.deepEqual(maskBox(mask, 30), [0, 0, 55, 80]);
  assert.equal(maskBox({ ...mask, data: new Uint8Array(100 * 100) }, 8), undefined);
  assert.deepEqual(expandBox([10, 10, 30, 50], 64, 64, 100, 100), [0, 10, 40, 50]);
  assert.deepEqual(expandBox([90, 0, 100, 40], 64, 64, 100, 100), [60, 0, 100, 40]);
  assert.deepEqual(expandBox([0, 0, 40, 10], 64, 64, 100, 100), [0, 0, 40, 40]);
  assert.deepEqual(expandBox([568, 268, 696, 396], 512, 512, 1024, 1024), [568, 268, 696, 396]);
});

test('the overlay keeps the init image where the mask is 0 and blends by it elsewhere', () => {
  const init: Pixels = { width: 3, height: 1, channels: 3, data: Uint8Array.of(10, 20, 30, 10, 20, 30, 10, 20, 30) };
  const generated: Pixels = { ...init, data: Uint8Array.of(200, 200, 200, 200, 200, 200, 200, 200, 200) };
  const mask: Pixels = { width: 3, height: 1, channels: 1, data: Uint8Array.of(0, 255, 51) };
  assert.deepEqual([...overlay(init, mask, generated).data], [10, 20, 30, 200, 200, 200, 48, 56, 64]);
});
