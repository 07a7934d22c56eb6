// Live previews of the denoising: the latents mapped to RGB by the linear approximation ComfyUI
// and AUTOMATIC1111 use, SDXL with its own factors (each latent pixel is a 4→3 matrix product), or pixels a
// TAESD decoder made on the engine thread (taesd.ts), then scaled with sharp. The approximation costs
// well under a millisecond of JavaScript per step; sharp works off the event loop.
import sharp from 'sharp';
import type { ModelFamily } from './model-folder.ts';

/** Rows are latent channels, columns R, G, B (ComfyUI's latent_rgb_factors: SD15's, and SDXL's for its own latent space). */
const LATENT_RGB_FACTORS = {
  sd: [
    [0.3512, 0.2297, 0.3227],
    [0.325, 0.4974, 0.235],
    [-0.2829, 0.1762, 0.2721],
    [-0.212, -0.2616, -0.7177],
  ],
  sdxl: [
    [0.392, 0.4054, 0.4549],
    [-0.2634, -0.0196, 0.0653],
    [0.0568, 0.1687, -0.0755],
    [-0.3112, -0.2359, -0.2076],
  ],
} as const;

export interface PreviewImage {
  dataUrl: string;
  width: number;
  height: number;
}

/** 8-bit RGB, row by row, 3 bytes a pixel. */
export interface RgbPixels {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface PreviewOptions {
  /** Whose latent space the latents are in: SDXL's differs from SD 1.x/2.x's. Default SD1. */
  family?: ModelFamily;
  /** Longest side in pixels (at most 256). */
  maxSide?: number;
  format?: 'jpeg' | 'webp';
}

/** Whether step `step` (1-based) of `totalSteps` gets a preview: every `every` steps and the last; none for 0. */
export function wantsPreview(step: number, totalSteps: number, every: number): boolean {
  return every > 0 && (step % every === 0 || step === totalSteps);
}

/** 8-bit RGB of image `index` of a [batch, 4, h, w] latent tensor, at latent resolution. */
export function latentsToRgb(latents: Float32Array, shape: readonly [number, number, number, number], index: number, family: ModelFamily = 'SD1'): Uint8Array {
  const factors = LATENT_RGB_FACTORS[family === 'SDXL' ? 'sdxl' : 'sd'];
  const [, channels, h, w] = shape;
  const plane = h * w;
  const base = index * channels * plane;
  const rgb = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let k = 0; k < 4; k++) v += latents[base + k * plane + p] * factors[k][c];
      rgb[p * 3 + c] = Math.round(Math.min(Math.max((v + 1) / 2, 0), 1) * 255);
    }
  }
  return rgb;
}

/** A data-URL preview of image `index` by the linear approximation (see {@link encodePreview}). */
export async function renderPreview(
  latents: Float32Array,
  shape: readonly [number, number, number, number],
  index: number,
  imageSize: { width: number; height: number },
  options: PreviewOptions = {},
): Promise<PreviewImage> {
  const [, , h, w] = shape;
  return encodePreview({ width: w, height: h, data: latentsToRgb(latents, shape, index, options.family) }, imageSize, options);
}

/** A data-URL preview of `pixels`, scaled to the aspect of the final image and at most `maxSide` pixels long. */
export async function encodePreview(
  pixels: RgbPixels,
  imageSize: { width: number; height: number },
  { maxSide = 256, format = 'jpeg' }: PreviewOptions = {},
): Promise<PreviewImage> {
  const scale = Math.min(Math.min(maxSide, 256) / Math.max(imageSize.width, imageSize.height), 1);
  const width = Math.max(1, Math.round(imageSize.width * scale));
  const height = Math.max(1, Math.round(imageSize.height * scale));
  const resized = sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: 3 } }).resize(width, height, {
    fit: 'fill',
    kernel: 'cubic',
  });
  const bytes = format === 'webp' ? await resized.webp({ quality: 70 }).toBuffer() : await resized.jpeg({ quality: 75 }).toBuffer();
  return { dataUrl: `data:image/${format};base64,${bytes.toString('base64')}`, width, height };
}
