// AUTOMATIC1111's default "Original" emphasis (modules/sd_emphasis.py, `EmphasisOriginal`), applied
// to the text encoder's output for one chunk: scale each token's hidden state by its weight, then
// rescale everything so that the mean over the whole output is what it was before.

/**
 * `hiddenStates` is [rows × hiddenSize] row-major with one weight per row: one chunk (77 rows),
 * or the same chunk of several prompts encoded as one batch, as A1111 does with the texts of a
 * prompt's schedule, in which case the mean is shared across the batch exactly as in A1111.
 * Products are rounded to float32 as torch does; means are summed in float64. Returns a new array.
 * Where the weighted mean is 0 the rescaling is skipped (A1111 divides by it and yields NaN).
 */
export function applyEmphasis(hiddenStates: Float32Array, weights: ArrayLike<number>, hiddenSize: number): Float32Array {
  if (hiddenStates.length !== weights.length * hiddenSize) {
    throw new RangeError(`${hiddenStates.length} hidden values do not hold ${weights.length} rows of ${hiddenSize}`);
  }
  const out = new Float32Array(hiddenStates.length);
  let originalSum = 0;
  let weightedSum = 0;
  for (let row = 0; row < weights.length; row++) {
    const w = Math.fround(weights[row]);
    for (let i = row * hiddenSize, end = i + hiddenSize; i < end; i++) {
      originalSum += hiddenStates[i];
      out[i] = hiddenStates[i] * w;
      weightedSum += out[i];
    }
  }
  const scale = Math.fround(Math.fround(originalSum / out.length) / Math.fround(weightedSum / out.length));
  if (!Number.isFinite(scale)) return out;
  for (let i = 0; i < out.length; i++) out[i] *= scale;
  return out;
}
