import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TorchGenerator, randomSeed } from '../../src/diffusion/random.ts';
import { assertClose } from '../helpers/numeric.ts';
import { loadReference } from '../helpers/reference.ts';

const elementCount = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

describe('TorchGenerator against torch.randn', () => {
  it('reproduces every reference draw bit for bit', () => {
    for (const { seed, shape, values } of loadReference().randn) {
      const actual = new TorchGenerator(seed).randn(elementCount(shape));
      assertClose(actual, values, 1e-6, `seed ${seed} shape [${shape}]`);
      // Exact float32 equality: the vectorised kernel's float arithmetic is emulated, not approximated.
      assert.deepEqual(actual, Float32Array.from(values), `seed ${seed} shape [${shape}] bits`);
    }
  });

  it('continues the stream across calls: 16 draws of 16 equal one draw of 256', () => {
    // normal_fill turns each block of 16 uniforms into 16 normals, so whole blocks concatenate.
    const reference = loadReference().randn.find((r) => r.seed === 7 && elementCount(r.shape) === 256);
    assert.ok(reference, 'reference has seed 7 with 256 values');
    const generator = new TorchGenerator(7);
    const parts = Array.from({ length: 16 }, () => generator.randn(16));
    assertClose(concat(parts), reference.values, 0, 'seed 7 in blocks');
  });

  it('uses the low 32 bits of a 64-bit seed, negative seeds as two’s complement', () => {
    const reference = loadReference().randn.find((r) => r.seed === 42 && elementCount(r.shape) === 16);
    assert.ok(reference, 'reference has seed 42 with 16 values');
    for (const seed of [42n, 2n ** 32n + 42n, 2n ** 63n + 42n, -(2n ** 32n) + 42n, 2 ** 40 + 42]) {
      assertClose(new TorchGenerator(seed).randn(16), reference.values, 0, `seed ${seed}`);
    }
  });
});

describe('TorchGenerator stream semantics', () => {
  it('caches the second Box-Muller value of a small draw for the next small draw', () => {
    // Below 16 elements torch samples pairs and keeps the unused sine half in the generator.
    const generator = new TorchGenerator(0);
    const first = generator.randn(5);
    const second = generator.randn(3);
    const whole = new TorchGenerator(0).randn(8);
    assert.deepEqual(concat([first, second]), whole);
  });

  it('leaves the cached normal in place across a vectorised draw', () => {
    const generator = new TorchGenerator(3);
    generator.randn(5);
    const big = generator.randn(16);
    const next = generator.randn(1);
    // Three pairs (12 words) were consumed before the big draw either way; the cached sine survives it.
    const even = new TorchGenerator(3);
    const six = even.randn(6);
    assert.deepEqual(even.randn(16), big);
    assert.equal(next[0], six[5]);
  });

  it('draws fresh pairs after an even small draw and nothing for an empty one', () => {
    const generator = new TorchGenerator(11);
    const parts = [generator.randn(4), generator.randn(0), generator.randn(2)];
    assert.deepEqual(concat(parts), new TorchGenerator(11).randn(6));
  });

  it('gives standard normal statistics on a large draw', () => {
    const values = new TorchGenerator(1234).randn(4 * 64 * 64);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
    assert.ok(Math.abs(mean) < 0.03, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 0.05, `variance ${variance}`);
  });

  it('rejects seeds and counts torch would not accept', () => {
    assert.throws(() => new TorchGenerator(1.5), RangeError);
    assert.throws(() => new TorchGenerator(2 ** 64), RangeError);
    assert.throws(() => new TorchGenerator(2n ** 64n), RangeError);
    assert.throws(() => new TorchGenerator(0).randn(-1), RangeError);
  });
});

describe('randomSeed', () => {
  it('returns distinct integers in [0, 2^32 - 1]', () => {
    const seeds = Array.from({ length: 64 }, randomSeed);
    for (const seed of seeds) assert.ok(Number.isInteger(seed) && seed >= 0 && seed <= 2 ** 32 - 1, String(seed));
    assert.ok(new Set(seeds).size > 60);
    assert.ok(seeds.some((seed) => seed >= 2 ** 31), 'the upper half of the range is reachable');
  });
});
