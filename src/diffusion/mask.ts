// The pixel work of inpainting and outpainting around the denoising loop, as AUTOMATIC1111 1.10
// does it (modules/processing.py StableDiffusionProcessingImg2Img.init and apply_overlay,
// modules/masking.py): masks read from grey, alpha or luminance, blurred, cropped to the masked area
// with padding, filled from the unmasked colours, and the init image laid back over the result.
// Images are 8-bit here, as they are in AUTOMATIC1111's PIL code.
import sharp, { type Sharp } from 'sharp';
import { LIMITS } from './limits.ts';

/** 8-bit pixels, height × width × channels (1: a mask, 3: RGB). */
export interface Pixels {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}

/** A rectangle of pixels: x1, y1 inclusive, x2, y2 exclusive (PIL's boxes). */
export type Box = readonly [x1: number, y1: number, x2: number, y2: number];

const open = (bytes: Uint8Array) => sharp(bytes, { limitInputPixels: LIMITS.maxInputPixels }).autoOrient();
const raw = (p: Pixels) => sharp(p.data, { raw: { width: p.width, height: p.height, channels: p.channels } });

async function toPixels(image: Sharp, channels: 1 | 3): Promise<Pixels> {
  // sharp writes one-channel images out as sRGB unless told otherwise.
  const { data, info } = await (channels === 1 ? image.toColourspace('b-w') : image).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== channels) throw new Error(`expected ${channels} channels, got ${info.channels}`);
  return { width: info.width, height: info.height, channels, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** An init image as 8-bit RGB: EXIF orientation applied, transparency flattened onto white (as decodeInitImage). */
export function decodeRgb(bytes: Uint8Array): Promise<Pixels> {
  return toPixels(open(bytes).flatten({ background: '#ffffff' }).toColourspace('srgb'), 3);
}

/**
 * A mask image as one 8-bit channel, white = repaint: its alpha when it has transparency (as
 * AUTOMATIC1111's create_binary_mask), else its grey, or for colour its luminance as PIL's
 * convert("L") computes it (ITU-R 601-2, in PIL's fixed point).
 */
export async function decodeMask(bytes: Uint8Array): Promise<Pixels> {
  const { data, info } = await open(bytes).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const plane = width * height;
  const out = new Uint8Array(plane);
  const alpha = channels === 2 || channels === 4 ? channels - 1 : -1;
  let transparent = false;
  if (alpha >= 0) for (let i = 0; i < plane && !transparent; i++) transparent = data[i * channels + alpha] !== 255;
  for (let i = 0; i < plane; i++) {
    const p = i * channels;
    if (transparent) out[i] = data[p + alpha];
    else if (channels <= 2) out[i] = data[p];
    else out[i] = (data[p] * 19595 + data[p + 1] * 38470 + data[p + 2] * 7471 + 0x8000) >> 16;
  }
  return { width, height, channels: 1, data: out };
}

export function invert(mask: Pixels): Pixels {
  return { ...mask, data: mask.data.map((v) => 255 - v) };
}

/**
 * AUTOMATIC1111's mask blur: a Gaussian of standard deviation `sigma` pixels, there cv2.GaussianBlur
 * with a kernel of 2·⌊2.5σ + 0.5⌋ + 1 taps, here libvips' cut where the curve falls below 4% of its
 * peak, which is 2.54σ: about as far.
 */
export async function blur(mask: Pixels, sigma: number): Promise<Pixels> {
  return sigma > 0 ? toPixels(raw(mask).blur({ sigma, minAmplitude: 0.04, precision: 'float' }), 1) : mask;
}

/** Lanczos resize (sharp's lanczos3, as decodeInitImage); the same pixels when the size already matches. */
export async function resize(p: Pixels, width: number, height: number): Promise<Pixels> {
  if (p.width === width && p.height === height) return p;
  return toPixels(raw(p).resize(width, height, { fit: 'fill', kernel: 'lanczos3' }), p.channels);
}

export async function crop(p: Pixels, [x1, y1, x2, y2]: Box): Promise<Pixels> {
  return toPixels(raw(p).extract({ left: x1, top: y1, width: x2 - x1, height: y2 - y1 }), p.channels);
}

/** The box of the mask's non-zero pixels, grown by `padding` and clipped to the image (masking.get_crop_region_v2); undefined for an empty mask. */
export function maskBox(mask: Pixels, padding: number): Box | undefined {
  let [x1, y1, x2, y2] = [mask.width, mask.height, 0, 0];
  for (let y = 0; y < mask.height; y++) {
    for (let x = 0; x < mask.width; x++) {
      if (mask.data[y * mask.width + x] === 0) continue;
      x1 = Math.min(x1, x);
      y1 = Math.min(y1, y);
      x2 = Math.max(x2, x + 1);
      y2 = Math.max(y2, y + 1);
    }
  }
  if (x2 === 0) return undefined;
  return [Math.max(x1 - padding, 0), Math.max(y1 - padding, 0), Math.min(x2 + padding, mask.width), Math.min(y2 + padding, mask.height)];
}

/**
 * Grows a box along one axis to the aspect ratio of the processing size, within the image
 * (masking.expand_crop_region), so that scaling it to width × height does not distort it.
 */
export function expandBox([x1, y1, x2, y2]: Box, width: number, height: number, imageWidth: number, imageHeight: number): Box {
  const grow = (a1: number, a2: number, desired: number, limit: number): [number, number] => {
    const diff = Math.trunc(desired - (a2 - a1));
    a1 -= Math.floor(diff / 2);
    a2 += diff - Math.floor(diff / 2);
    if (a2 >= limit) {
      a1 -= a2 - limit;
      a2 = limit;
    }
    if (a1 < 0) {
      a2 -= a1;
      a1 = 0;
    }
    return [a1, Math.min(a2, limit)];
  };
  const ratio = width / height;
  if ((x2 - x1) / (y2 - y1) > ratio) {
    [y1, y2] = grow(y1, y2, (x2 - x1) / ratio, imageHeight);
  } else {
    [x1, x2] = grow(x1, x2, (y2 - y1) * ratio, imageWidth);
  }
  return [x1, y1, x2, y2];
}

/**
 * AUTOMATIC1111's "fill" masked content (masking.fill): the masked pixels take the colours around
 * them, by layering ever less blurred copies of the unmasked pixels (alpha-weighted, so masked
 * pixels add no colour) over each other. The large blurs run on a reduced copy: a blur of σ 256 at
 * full size would cost seconds, and the reduced one differs from it by less than it blurs.
 */
export async function fill(image: Pixels, mask: Pixels): Promise<Pixels> {
  const { width, height } = image;
  const plane = width * height;
  const rgba = new Uint8Array(plane * 4);
  for (let i = 0; i < plane; i++) {
    rgba.set(image.data.subarray(i * 3, i * 3 + 3), i * 4);
    rgba[i * 4 + 3] = 255 - mask.data[i];
  }
  const acc = new Float32Array(plane * 4);
  for (const [radius, repeats] of [[256, 1], [64, 1], [16, 2], [4, 4], [2, 2], [0, 1]] as const) {
    let layer = sharp(rgba, { raw: { width, height, channels: 4 } });
    if (radius > 0) {
      const reduce = Math.max(1, Math.floor(radius / 8));
      const small = await layer
        .resize(Math.ceil(width / reduce), Math.ceil(height / reduce), { fit: 'fill' })
        .blur(radius / reduce)
        .raw()
        .toBuffer({ resolveWithObject: true });
      layer = sharp(small.data, { raw: { width: small.info.width, height: small.info.height, channels: 4 } }).resize(width, height, { fit: 'fill' });
    }
    const blurred = await layer.raw().toBuffer();
    // PIL's alpha_composite of the layer over what is there, `repeats` times.
    for (let r = 0; r < repeats; r++) {
      for (let i = 0; i < plane; i++) {
        const a = blurred[i * 4 + 3] / 255;
        const below = acc[i * 4 + 3];
        const outA = a + below * (1 - a);
        for (let c = 0; c < 3; c++) {
          const j = i * 4 + c;
          acc[j] = outA > 0 ? (blurred[j] * a + acc[j] * below * (1 - a)) / outA : 0;
        }
        acc[i * 4 + 3] = outA;
      }
    }
  }
  const data = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.round(acc[i * 4 + c]);
  return { width, height, channels: 3, data };
}

export interface Outpaint {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/**
 * The init image on a canvas grown by `outpaint`, the new area repeating the nearest edge pixels,
 * and the mask on the same canvas: the new area white (to be painted), the original area the given
 * mask, or black.
 */
export async function extendCanvas(image: Pixels, mask: Pixels | undefined, { left, right, top, bottom }: Outpaint): Promise<{ image: Pixels; mask: Pixels }> {
  const grown = await toPixels(raw(image).extend({ left, right, top, bottom, extendWith: 'copy' }), 3);
  const base = mask ?? { width: image.width, height: image.height, channels: 1 as const, data: new Uint8Array(image.width * image.height) };
  const grownMask = await toPixels(raw(base).extend({ left, right, top, bottom, background: { r: 255, g: 255, b: 255 } }), 1);
  return { image: grown, mask: grownMask };
}

/**
 * The init image laid over a generated one where the mask does not repaint (apply_overlay):
 * `out = init · (1 − m) + generated · m` with m the mask in [0, 1], so pixels where it is 0 are the
 * init image's exactly. With `box`, `generated` is a crop that goes back at that box.
 */
export function overlay(init: Pixels, mask: Pixels, generated: Pixels, box?: Box): Pixels {
  const { width, height } = init;
  const data = Uint8Array.from(init.data);
  const [x1, y1] = box ?? [0, 0];
  for (let y = 0; y < generated.height; y++) {
    for (let x = 0; x < generated.width; x++) {
      const i = (y + y1) * width + x + x1;
      const m = mask.data[i];
      for (let c = 0; c < 3; c++) {
        data[i * 3 + c] = Math.round((init.data[i * 3 + c] * (255 - m) + generated.data[(y * generated.width + x) * 3 + c] * m) / 255);
      }
    }
  }
  return { width, height, channels: 3, data };
}
