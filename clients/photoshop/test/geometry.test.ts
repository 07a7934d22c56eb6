import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FALLBACK_LIMITS, fitSize, modelLimits, plan, planOnlyMasked, toGeneration } from '../src/image/geometry.ts';
import { resize } from '../src/image/resample.ts';
import { createRgba, crop } from '../src/image/rgba.ts';

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
  assert.ok(big.width * big.height <= FALLBACK_LIMITS.maxPixels);
});

test("a model's own pixel limit and VAE factor replace the server's; a server without them keeps its own", () => {
  const server = { ...FALLBACK_LIMITS, maxPixels: 1024 * 1024 };
  assert.deepEqual(modelLimits(server, { vaeScaleFactor: 8, maxPixels: 768 * 768 }), { ...server, maxPixels: 768 * 768 });
  assert.deepEqual(modelLimits(server, { vaeScaleFactor: 16, maxPixels: null }), { ...server, multiple: 16 });
  assert.deepEqual(modelLimits(FALLBACK_LIMITS, { vaeScaleFactor: null }), FALLBACK_LIMITS);
  // An SDXL model plans at its native 1024 × 1024 where SD 1.x's limit would shrink it.
  const sdxl = { width: 1024, height: 1024 };
  assert.deepEqual(plan({ canvas: sdxl, selection: null, native: sdxl, context: 32, limits: modelLimits(server, { vaeScaleFactor: 8, maxPixels: 1024 * 1024 }) }).size, sdxl);
  assert.deepEqual(plan({ canvas: sdxl, selection: null, native: sdxl, context: 32, limits: modelLimits(server, { vaeScaleFactor: 8, maxPixels: 768 * 768 }) }).size, { width: 768, height: 768 });
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
  assert.ok(Math.abs(o.right / p.size.width - 100 / 300) < 0.03);
  assert.ok(Math.abs(o.top / p.size.height - 100 / 200) < 0.03);
  // The server takes only multiples of the VAE factor.
  for (const side of [o.left, o.top, o.right, o.bottom]) assert.equal(side % 8, 0);
});

test('ONLY_MASKED: a small selection of a 300 ppi document goes up at full resolution, and comes back onto it pixel for pixel', () => {
  // A4 at 300 ppi; the resolution enters nowhere.
  const canvas = { width: 2480, height: 3508 };
  const selection = { left: 1201, top: 1500, width: 101, height: 59 };
  const m = planOnlyMasked({ canvas, selection, native, context: 32 });
  // Twice the padding around the selection, so that the server's box has room to grow to the aspect.
  assert.deepEqual(m.read, { left: 1137, top: 1436, width: 229, height: 187 });
  assert.deepEqual(m.initSize, { width: 229, height: 187 });
  assert.equal(m.padding, 32);
  // The padded selection (165×123) painted at about the model's area, in multiples of 8.
  assert.equal(m.size.width % 8, 0);
  assert.equal(m.size.height % 8, 0);
  assert.ok(Math.abs(m.size.width / m.size.height - 165 / 123) < 0.03);
  assert.ok(m.size.width * m.size.height <= native.width * native.height * 1.05);
  // The result has the init image's size: cut to the selection, the selection's top-left pixel is the first.
  const result = createRgba(m.initSize.width, m.initSize.height);
  result.data.set([1, 2, 3, 255], ((selection.top - m.read.top) * result.width + selection.left - m.read.left) * 4);
  const placed = crop(resize(result, m.read.width, m.read.height), { left: selection.left - m.read.left, top: selection.top - m.read.top, width: selection.width, height: selection.height });
  assert.deepEqual([placed.width, placed.height], [101, 59]);
  assert.deepEqual([...placed.data.subarray(0, 4)], [1, 2, 3, 255]);
});

test('ONLY_MASKED: at the canvas edge the room is clamped; a large selection is sent reduced, its padding with it', () => {
  const canvas = { width: 1000, height: 800 };
  const corner = planOnlyMasked({ canvas, selection: { left: 0, top: 790, width: 40, height: 10 }, native, context: 32 });
  assert.deepEqual(corner.read, { left: 0, top: 726, width: 104, height: 74 });
  assert.equal(corner.padding, 32);

  const large = planOnlyMasked({ canvas, selection: { left: 100, top: 100, width: 800, height: 600 }, native, context: 32, limits: { ...FALLBACK_LIMITS, maxPixels: 512 * 512 } });
  assert.deepEqual(large.read, { left: 36, top: 36, width: 928, height: 728 });
  const scale = large.initSize.width / large.read.width;
  assert.ok(scale < 0.7 && scale > 0.5, `scale ${scale}`);
  assert.ok(Math.abs(large.initSize.height / large.read.height - scale) < 0.01);
  assert.equal(large.padding, Math.round(32 * scale));
  // The upload is about the painted pixels, not the document's.
  assert.ok(large.initSize.width * large.initSize.height < 1.5 * large.size.width * large.size.height);
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
