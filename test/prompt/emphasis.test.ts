import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyEmphasis } from '../../src/diffusion/prompt/emphasis.ts';

function randomStates(rows: number, hidden: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: rows * hidden }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 4 - 1.5);
}
const mean = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0) / a.length;

test('scales each row by its weight, then restores the original mean', () => {
  const hidden = 8;
  const z = randomStates(5, hidden, 1);
  const weights = [1, 1.5, 0.5, 1.1, 1];
  const out = applyEmphasis(z, weights, hidden);

  const weighted = Array.from(z, (v, i) => v * weights[Math.floor(i / hidden)]);
  const scale = mean(z) / mean(weighted);
  weighted.forEach((v, i) => assert.ok(Math.abs(out[i] - v * scale) < 1e-6, `element ${i}`));
  assert.ok(Math.abs(mean(out) - mean(z)) < 1e-6);
  // Not the identity: row 1 grew relative to row 0.
  assert.ok(Math.abs(out[hidden] / out[0] - (z[hidden] / z[0]) * 1.5) < 1e-4);
  assert.notDeepEqual(out, z);
});

test('all weights 1 leave the hidden states bit for bit unchanged', () => {
  const z = randomStates(77, 16, 2);
  assert.deepEqual(applyEmphasis(z, new Array(77).fill(1), 16), z);
});

test('one mean over a batch of rows, as A1111 over its batch', () => {
  const hidden = 4;
  const a = randomStates(3, hidden, 3);
  const b = randomStates(3, hidden, 4);
  const both = applyEmphasis(Float32Array.from([...a, ...b]), [1, 2, 1, 1, 1, 1], hidden);
  const alone = applyEmphasis(b, [1, 1, 1], hidden);
  // b's rows are unweighted, yet rescaled by the batch's shared mean.
  assert.notDeepEqual(both.slice(3 * hidden), alone);
  assert.ok(Math.abs(mean(both) - mean([...a, ...b])) < 1e-6);
});

test('a zero weighted mean skips the rescaling; mismatched sizes are refused', () => {
  const z = Float32Array.from([1, 1, -1, -1]);
  assert.deepEqual(applyEmphasis(z, [1, 1], 2), Float32Array.from([1, 1, -1, -1]));
  const zeroMean = Float32Array.from([2, 2, -1, -1]);
  assert.deepEqual(applyEmphasis(zeroMean, [0.5, 1], 2), Float32Array.from([1, 1, -1, -1]));
  assert.throws(() => applyEmphasis(z, [1, 1, 1], 2), RangeError);
});
