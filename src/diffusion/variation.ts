// AUTOMATIC1111's variation seeds ("subseeds"): image i starts from its seed's noise turned towards
// the noise of variationSeed + i by spherical interpolation, so a small strength gives a near copy.
import { TorchGenerator } from './random.ts';

export interface Variation {
  seed: number;
  /** 0 leaves the seed's noise, 1 gives variationSeed's. */
  strength: number;
}

/**
 * The batch's noise with variation: `lows` is image i's own noise (C × H × W each, concatenated),
 * interpolated towards randn(variation.seed + i) by AUTOMATIC1111's slerp.
 */
export function varyNoise(lows: Float32Array, variation: Variation, shape: readonly [number, number, number, number]): Float32Array {
  const [n, channels, height, width] = shape;
  const perImage = channels * height * width;
  const out = new Float32Array(lows.length);
  for (let i = 0; i < n; i++) {
    const high = new TorchGenerator(variation.seed + i).randn(perImage);
    out.set(slerp(variation.strength, lows.subarray(i * perImage, (i + 1) * perImage), high, channels, height, width), i * perImage);
  }
  return out;
}

/**
 * AUTOMATIC1111's slerp on one C × H × W tensor, quirks kept so that its seeds give its images: the
 * norms and dot products run over the H axis (its `dim=1` of an unbatched tensor), giving one angle
 * per channel and column, and nearly parallel noises fall back to a lerp with the weights swapped.
 */
export function slerp(val: number, low: Float32Array, high: Float32Array, channels: number, height: number, width: number): Float32Array {
  const columns = channels * width;
  const lowNorm = new Float64Array(columns);
  const highNorm = new Float64Array(columns);
  const dot = new Float64Array(columns);
  const at = (c: number, y: number, x: number) => (c * height + y) * width + x;
  for (let c = 0; c < channels; c++) {
    for (let x = 0; x < width; x++) {
      let l = 0;
      let h = 0;
      let d = 0;
      for (let y = 0; y < height; y++) {
        const j = at(c, y, x);
        l += low[j] * low[j];
        h += high[j] * high[j];
        d += low[j] * high[j];
      }
      const k = c * width + x;
      lowNorm[k] = Math.sqrt(l);
      highNorm[k] = Math.sqrt(h);
      dot[k] = d / (lowNorm[k] * highNorm[k]);
    }
  }
  const out = new Float32Array(low.length);
  if (dot.reduce((s, v) => s + v, 0) / columns > 0.9995) {
    for (let j = 0; j < out.length; j++) out[j] = low[j] * val + high[j] * (1 - val);
    return out;
  }
  for (let c = 0; c < channels; c++) {
    for (let x = 0; x < width; x++) {
      const omega = Math.acos(dot[c * width + x]);
      const so = Math.sin(omega);
      const a = Math.sin((1 - val) * omega) / so;
      const b = Math.sin(val * omega) / so;
      for (let y = 0; y < height; y++) {
        const j = at(c, y, x);
        out[j] = a * low[j] + b * high[j];
      }
    }
  }
  return out;
}
