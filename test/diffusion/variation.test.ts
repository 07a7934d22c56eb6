// Variation noise against the noise diffusers' reference was given (../shared/reference/variation),
// and the ends of the strength range.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { slerp, varyNoise } from '../../src/diffusion/variation.ts';
import { loadReference, readNpy } from '../helpers/reference.ts';

describe('variation noise', () => {
  const set = loadReference('variation');

  it('is the reference noise for every image of every case', () => {
    assert.ok(set.cases.length > 0);
    for (const c of set.cases) {
      const { seed, variation_seed: variationSeed, variation_strength: strength, width = 512, height = 512 } = c.case;
      assert.ok(variationSeed !== undefined && strength !== undefined, `${c.case.name} has no variation`);
      for (const [i, image] of c.images.entries()) {
        const expected = readNpy(set.file(image.noise_npy!));
        const shape = [1, 4, height / 8, width / 8] as const;
        const low = new TorchGenerator(seed + i).randn(expected.data.length);
        const actual = varyNoise(low, { seed: variationSeed + i, strength }, shape);
        assert.deepEqual(expected.shape, shape.slice(1));
        let maxErr = 0;
        for (let j = 0; j < actual.length; j++) maxErr = Math.max(maxErr, Math.abs(actual[j] - expected.data[j]));
        assert.ok(maxErr <= 1e-5, `${image.noise_npy}: off by ${maxErr}`);
      }
    }
  });

  it('is the seed noise at strength 0 and the variation seed noise at 1, bit for bit', () => {
    const low = new TorchGenerator(1).randn(4 * 8 * 8);
    const high = new TorchGenerator(2).randn(4 * 8 * 8);
    assert.deepEqual(slerp(0, low, high, 4, 8, 8), low);
    assert.deepEqual(slerp(1, low, high, 4, 8, 8), high);
    const between = slerp(0.5, low, high, 4, 8, 8);
    assert.notDeepEqual(between, low);
    assert.notDeepEqual(between, high);
  });

  it('falls back to AUTOMATIC1111\'s swapped lerp for nearly parallel noise', () => {
    const low = new TorchGenerator(3).randn(2 * 4 * 4);
    const high = low.map((v) => v * 2);
    const out = slerp(0.25, low, high, 2, 4, 4);
    out.forEach((v, j) => assert.ok(Math.abs(v - (low[j] * 0.25 + high[j] * 0.75)) < 1e-6));
  });
});
