// The size a request without width and height gets: the native size, scaled into the pixel limit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LIMITS, defaultSize } from '../../src/diffusion/limits.ts';

test('a native size within the limit is the default as it is', () => {
  assert.deepEqual(defaultSize({ nativeWidth: 512, nativeHeight: 512, vaeScaleFactor: 8 }), { width: 512, height: 512 });
  assert.deepEqual(defaultSize({ nativeWidth: 768, nativeHeight: 768, vaeScaleFactor: 8 }), { width: 768, height: 768 });
});

test("SDXL's 1024 × 1024 is scaled down into the pixel limit, in multiples of the VAE factor, keeping the aspect", () => {
  assert.deepEqual(defaultSize({ nativeWidth: 1024, nativeHeight: 1024, vaeScaleFactor: 8 }), { width: 768, height: 768 });
  const wide = defaultSize({ nativeWidth: 1536, nativeHeight: 1024, vaeScaleFactor: 8 });
  assert.ok(wide.width * wide.height <= LIMITS.maxPixels, `${wide.width}×${wide.height} is within the limit`);
  assert.equal(wide.width % 8, 0);
  assert.equal(wide.height % 8, 0);
  assert.ok(Math.abs(wide.width / wide.height - 1.5) < 0.02, `${wide.width}×${wide.height} keeps 3:2`);
});
