// PNG in JavaScript: UXP's canvas cannot draw images and imaging.encodeImageData only writes JPEG.
import { convertIndexedToRgb, decode, encode } from 'fast-png';
import type { Rgba } from './rgba.ts';

export { encode as encodePng };

/** PNG bytes of 8-bit RGBA pixels. */
export function rgbaToPng(image: Rgba): Uint8Array {
  return encode({ width: image.width, height: image.height, data: image.data, channels: 4, depth: 8 });
}

/** Any PNG the server may send (grey, grey+alpha, RGB, RGBA, palette; 8 or 16 bits) as 8-bit RGBA. */
export function pngToRgba(bytes: Uint8Array): Rgba {
  const png = decode(bytes);
  const { width, height } = png;
  let { data, channels, depth } = png;
  if (png.palette) {
    data = convertIndexedToRgb(png);
    channels = png.palette[0].length;
    depth = 8;
  }
  const sample = depth === 16 ? (i: number) => Math.round(data[i] / 257) : (i: number) => data[i];
  const out = new Uint8Array(width * height * 4);
  for (let p = 0, i = 0; p < width * height; p++, i += channels) {
    const r = sample(i);
    const rgb = channels >= 3;
    out[p * 4] = r;
    out[p * 4 + 1] = rgb ? sample(i + 1) : r;
    out[p * 4 + 2] = rgb ? sample(i + 2) : r;
    out[p * 4 + 3] = channels === 2 ? sample(i + 1) : channels === 4 ? sample(i + 3) : 255;
  }
  return { width, height, data: out };
}
