// Comparing arrays of numbers: tensors, latents, pixels, scheduler samples.
import assert from 'node:assert/strict';

/** The largest |a[i] − b[i]| (NaN if any difference is NaN); fails when the lengths differ. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Fails unless `actual` and `expected` have one length and differ nowhere by more than `tolerance` (NaN fails), naming the worst element. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what = 'values'): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length}, expected ${expected.length}`);
  let worst = -1;
  let worstDiff = 0;
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    if (diff > worstDiff || Number.isNaN(diff)) [worst, worstDiff] = [i, diff];
    if (Number.isNaN(diff)) break;
  }
  assert.ok(worstDiff <= tolerance, `${what}: off by ${worstDiff} (> ${tolerance}) at [${worst}]: ${actual[worst]} vs ${expected[worst]}`);
}
