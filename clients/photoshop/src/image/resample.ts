// Resizing RGBA between the document's pixels and the generation's. Hand-written: the libraries that
// do it well (pica, sharp) need a canvas or native code, neither of which UXP has.
import { createRgba, type Rgba } from './rgba.ts';

/** Resizes with a triangle filter widened to the scale when shrinking (area-like), bilinear when enlarging. */
export function resize(source: Rgba, width: number, height: number): Rgba {
  if (source.width === width && source.height === height) return { width, height, data: source.data.slice() };
  const horizontal = pass(source.data, source.width, source.height, width, true);
  const out = createRgba(width, height);
  out.data.set(pass(horizontal, width, source.height, height, false));
  return out;
}

/** One separable pass along x (`alongX`) or y, from `from` samples to `to`. */
function pass(data: Uint8Array, w: number, h: number, to: number, alongX: boolean): Uint8Array {
  const from = alongX ? w : h;
  const lines = alongX ? h : w;
  const out = new Uint8Array((alongX ? to * h : w * to) * 4);
  const scale = from / to;
  const support = Math.max(1, scale);
  for (let o = 0; o < to; o++) {
    const centre = (o + 0.5) * scale - 0.5;
    const first = Math.max(0, Math.floor(centre - support));
    const last = Math.min(from - 1, Math.ceil(centre + support));
    const weights: number[] = [];
    let total = 0;
    for (let i = first; i <= last; i++) {
      const weight = Math.max(0, 1 - Math.abs(i - centre) / support);
      weights.push(weight);
      total += weight;
    }
    for (let line = 0; line < lines; line++) {
      for (let c = 0; c < 4; c++) {
        let sum = 0;
        for (let i = first; i <= last; i++) {
          const index = alongX ? (line * w + i) * 4 : (i * w + line) * 4;
          sum += data[index + c] * weights[i - first];
        }
        const target = alongX ? (line * to + o) * 4 : (o * w + line) * 4;
        out[target + c] = Math.round(sum / total);
      }
    }
  }
  return out;
}

