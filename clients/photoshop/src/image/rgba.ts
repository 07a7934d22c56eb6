/** 8-bit RGBA pixels, rows top to bottom, chunky (R, G, B, A per pixel): what every layer exchanges. */
export interface Rgba {
  width: number;
  height: number;
  data: Uint8Array;
}

export function createRgba(width: number, height: number): Rgba {
  return { width, height, data: new Uint8Array(width * height * 4) };
}

/** A 1-channel mask (0 keep … 255 repaint) as opaque grey RGBA, which the server reads by luminance. */
export function maskToRgba(mask: Uint8Array, width: number, height: number): Rgba {
  const out = createRgba(width, height);
  for (let i = 0; i < mask.length; i++) out.data.set([mask[i], mask[i], mask[i], 255], i * 4);
  return out;
}

/** The pixels of `rect` (left, top, width, height in the image's pixels, inside it). */
export function crop(image: Rgba, rect: { left: number; top: number; width: number; height: number }): Rgba {
  const out = createRgba(rect.width, rect.height);
  for (let y = 0; y < rect.height; y++) {
    const start = ((rect.top + y) * image.width + rect.left) * 4;
    out.data.set(image.data.subarray(start, start + rect.width * 4), y * rect.width * 4);
  }
  return out;
}
