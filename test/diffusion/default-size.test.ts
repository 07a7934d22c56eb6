// The pixel limit of a model, derived from its UNet's attention, and the size a request without width
// and height gets: the native size, scaled into that limit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ATTENTION_BUDGET_BYTES, LIMITS, defaultSize, maxPixels, pixelLimitRefusal } from '../../src/diffusion/limits.ts';
import { unetSampleBytes } from '../../src/diffusion/sub-batch.ts';

const SD1 = { id: 'sd1', vaeScaleFactor: 8, attentionLevels: [0, 1, 2].map((level) => ({ level, heads: 8 })) };
const SD2 = { id: 'sd2', vaeScaleFactor: 8, attentionLevels: [{ level: 0, heads: 5 }, { level: 1, heads: 10 }, { level: 2, heads: 20 }] };
const SDXL = { id: 'sdxl', vaeScaleFactor: 8, attentionLevels: [{ level: 1, heads: 10 }, { level: 2, heads: 20 }] };

test("SD 1.x's limit is 768×768, as a model whose config does not tell", () => {
  assert.equal(maxPixels(SD1), 768 * 768);
  assert.equal(maxPixels({ id: 'unknown', vaeScaleFactor: 8 }), 768 * 768);
  assert.ok(Math.abs(unetSampleBytes(96, 96, SD1.attentionLevels) - ATTENTION_BUDGET_BYTES) < 1);
});

test("SD 2.x's 5 full-resolution heads would allow 863.8², which it rounds down to 768×768, its training size", () => {
  assert.equal(maxPixels(SD2), 768 * 768);
  assert.ok(unetSampleBytes(107, 107, SD2.attentionLevels) <= ATTENTION_BUDGET_BYTES);
  assert.ok(unetSampleBytes(108, 108, SD2.attentionLevels) > ATTENTION_BUDGET_BYTES);
});

test('a model with attention only from half resolution on (as the reference tiny-sd) gets the cap; one with more heads at full resolution, less than SD 1.x', () => {
  assert.equal(maxPixels({ id: 'half', vaeScaleFactor: 8, attentionLevels: [{ level: 1, heads: 8 }] }), LIMITS.maxPixels);
  assert.equal(maxPixels({ id: 'heads16', vaeScaleFactor: 8, attentionLevels: [{ level: 0, heads: 16 }] }), 640 * 640);
});

test("SDXL (no attention at full resolution) gets the cap, its native 1024×1024, which its attention is far within", () => {
  assert.equal(LIMITS.maxPixels, 1024 * 1024);
  assert.equal(maxPixels(SDXL), 1024 * 1024);
  assert.ok(unetSampleBytes(128, 128, SDXL.attentionLevels) < ATTENTION_BUDGET_BYTES / 3);
});

test('a refusal says the size, the limit and the memory it needs', () => {
  assert.equal(pixelLimitRefusal(SD1, 768, 768), undefined);
  assert.equal(pixelLimitRefusal(SD1, 1024, 1024), "1024×1024 is more than 589824 pixels, model sd1's limit: one image of it needs 16.8 GiB for the UNet's attention, more than the 5.3 GiB allowed (see the README's limits)");
  assert.equal(pixelLimitRefusal(SDXL, 1024, 1024), undefined);
  assert.equal(pixelLimitRefusal(SDXL, 1024, 1032), "1024×1032 is more than 1048576 pixels, model sdxl's limit: no model goes beyond 1048576 pixels (see the README's limits)");
});

test('a native size within the limit is the default as it is', () => {
  assert.deepEqual(defaultSize({ ...SD1, nativeWidth: 512, nativeHeight: 512 }), { width: 512, height: 512 });
  assert.deepEqual(defaultSize({ ...SD1, nativeWidth: 768, nativeHeight: 768 }), { width: 768, height: 768 });
  assert.deepEqual(defaultSize({ ...SDXL, nativeWidth: 1024, nativeHeight: 1024 }), { width: 1024, height: 1024 });
});

test("a native size beyond the model's limit is scaled down into it, in multiples of the VAE factor, keeping the aspect", () => {
  assert.deepEqual(defaultSize({ ...SD1, nativeWidth: 1024, nativeHeight: 1024 }), { width: 768, height: 768 });
  const wide = defaultSize({ ...SDXL, nativeWidth: 1536, nativeHeight: 1024 });
  assert.ok(wide.width * wide.height <= maxPixels(SDXL), `${wide.width}×${wide.height} is within the limit`);
  assert.ok(wide.width * wide.height > 768 * 768, `${wide.width}×${wide.height} is beyond SD 1.x's limit`);
  assert.equal(wide.width % 8, 0);
  assert.equal(wide.height % 8, 0);
  assert.ok(Math.abs(wide.width / wide.height - 1.5) < 0.02, `${wide.width}×${wide.height} keeps 3:2`);
});
