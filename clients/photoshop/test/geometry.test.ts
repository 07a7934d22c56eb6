import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fitSize, plan, SDQL_LIMITS, toGeneration } from '../src/image/geometry.ts';
import { resize } from '../src/image/resample.ts';
import { createRgba } from '../src/image/rgba.ts';

const native = { width: 512, height: 512 };

test('fitSize keeps the aspect ratio at about the native area, in multiples of 8 within the limits', () => {
  assert.deepEqual(fitSize({ width: 100, height: 100 }, native), { width: 512, height: 512 });
  assert.deepEqual(fitSize({ width: 4000, height: 2000 }, native), { width: 728, height: 360 });
  // Odd sizes snap to the nearest multiple.
  const odd = fitSize({ width: 333, height: 777 }, native);
  assert.equal(odd.width % 8, 0);
  assert.equal(odd.height % 8, 0);
  assert.ok(Math.abs(odd.width / odd.height - 333 / 777) < 0.03);
  // Very thin: the short side stays at the minimum, the long side within the maximum.
  assert.deepEqual(fitSize({ width: 10000, height: 10 }, { width: 1024, height: 1024 }), { width: 2048, height: 64 });
  const big = fitSize({ width: 3000, height: 3000 }, { width: 4096, height: 4096 });
  assert.ok(big.width * big.height <= SDQL_LIMITS.maxPixels);
});

test('no selection: txt2img over the whole document, whatever its resolution', () => {
  // A 300 ppi A6 page is 1240×1748 pixels; plans are in pixels, so the resolution does not enter.
  const p = plan({ canvas: { width: 1240, height: 1748 }, selection: null, native, context: 32 });
  assert.deepEqual(p.region, { left: 0, top: 0, width: 1240, height: 1748 });
  assert.equal(p.read, null);
  assert.equal(p.outpaint, null);
  assert.deepEqual(p.size, { width: 432, height: 608 });
});

test('a selection inside the canvas gets context around it, clamped to the canvas', () => {
  const p = plan({ canvas: { width: 1000, height: 800 }, selection: { left: 10, top: 300, width: 201, height: 99 }, native, context: 32 });
  assert.deepEqual(p.region, { left: 0, top: 268, width: 243, height: 163 });
  assert.deepEqual(p.read, p.region);
  assert.equal(p.outpaint, null);
  assert.deepEqual(p.initSize, p.size);
  // The selection maps into the generation at the plan's scale, and covers most of it.
  const inGeneration = toGeneration({ left: 10, top: 300, width: 201, height: 99 }, p);
  assert.ok(inGeneration.left > 0 && inGeneration.left + inGeneration.width < p.size.width);
  assert.ok(Math.abs(inGeneration.width / p.size.width - 201 / 243) < 0.01);
});

test('a selection past the canvas edge becomes outpainting by the amounts past it', () => {
  const canvas = { width: 600, height: 400 };
  const p = plan({ canvas, selection: { left: 400, top: -100, width: 300, height: 200 }, native, context: 0 });
  assert.deepEqual(p.region, { left: 400, top: -100, width: 300, height: 200 });
  assert.deepEqual(p.read, { left: 400, top: 0, width: 200, height: 100 });
  const o = p.outpaint!;
  assert.equal(o.left, 0);
  assert.equal(o.bottom, 0);
  assert.ok(o.top > 0 && o.right > 0);
  // The init image and the outpainting add up to the generation's size, at one scale.
  assert.equal(o.left + p.initSize!.width + o.right, p.size.width);
  assert.equal(o.top + p.initSize!.height + o.bottom, p.size.height);
  assert.ok(Math.abs(o.right / p.size.width - 100 / 300) < 0.02);
  assert.ok(Math.abs(o.top / p.size.height - 100 / 200) < 0.02);
});

test('empty selections and selections off the canvas are refused with a reason', () => {
  const canvas = { width: 100, height: 100 };
  assert.throws(() => plan({ canvas, selection: { left: 0, top: 0, width: 0, height: 5 }, native, context: 8 }), /selection is empty/);
  assert.throws(() => plan({ canvas, selection: { left: 200, top: 0, width: 10, height: 10 }, native, context: 8 }), /outside the canvas/);
});

test('resize to the generation and back keeps a flat colour and the sizes; an enlarged ramp is bilinear', () => {
  const image = createRgba(243, 163);
  for (let i = 0; i < image.data.length; i += 4) image.data.set([200, 100, 50, 255], i);
  const there = resize(image, 512, 344);
  assert.equal(there.data.length, 512 * 344 * 4);
  const back = resize(there, 243, 163);
  assert.deepEqual(back, image);
  // A two-pixel ramp enlarged: bilinear between the ends.
  const ramp = createRgba(2, 1);
  ramp.data.set([0, 0, 0, 255, 200, 200, 200, 255]);
  assert.deepEqual([...resize(ramp, 4, 1).data.filter((_, i) => i % 4 === 0)], [0, 50, 150, 200]);
});
