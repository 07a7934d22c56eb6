// Inpainting and outpainting: the request's settings (AUTOMATIC1111's names and semantics), the
// image and mask prepared as AUTOMATIC1111 1.10 prepares them (mask.ts), and the denoising as
// diffusers 0.21.4's StableDiffusionInpaintPipeline runs it, for 9-channel inpainting UNets and for
// plain 4-channel ones alike. pipeline.ts drives the loop and calls the hooks of an InpaintRun.
import { badInput, invalidModel } from './errors.ts';
import { probeImage, quantize, type RgbImage } from './image.ts';
import { LIMITS, defaultSize, pixelLimitRefusal } from './limits.ts';
import { blur, crop, decodeMask, decodeRgb, expandBox, extendCanvas, fill, invert, maskBox, overlay, resize, type Box, type Outpaint, type Pixels } from './mask.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import { TorchGenerator } from './random.ts';
import type { Scheduler } from './schedulers/scheduler.ts';
import type { StableDiffusionModel } from './stable-diffusion.ts';

export type { Outpaint } from './mask.ts';

/** What the masked area starts from (AUTOMATIC1111's "Masked content"). */
export const INPAINT_FILLS = ['ORIGINAL', 'FILL', 'LATENT_NOISE', 'LATENT_NOTHING'] as const;
export type InpaintFill = (typeof INPAINT_FILLS)[number];
/** What is denoised (AUTOMATIC1111's "Inpaint area"). */
export const INPAINT_AREAS = ['WHOLE_PICTURE', 'ONLY_MASKED'] as const;
export type InpaintArea = (typeof INPAINT_AREAS)[number];

/** AUTOMATIC1111's words for the infotext. */
const A1111_FILLS: Record<InpaintFill, string> = { ORIGINAL: 'original', FILL: 'fill', LATENT_NOISE: 'latent noise', LATENT_NOTHING: 'latent nothing' };
const A1111_AREAS: Record<InpaintArea, string> = { WHOLE_PICTURE: 'Whole picture', ONLY_MASKED: 'Only masked' };

export const INPAINT_DEFAULTS = {
  invertMask: false,
  /** AUTOMATIC1111's default. */
  maskBlur: 4,
  inpaintFill: 'ORIGINAL',
  /** The new area of an outpaint has nothing to keep: it starts from the edge colours. */
  outpaintFill: 'FILL',
  inpaintArea: 'WHOLE_PICTURE',
  onlyMaskedPadding: 32,
  restoreUnmasked: true,
  /** diffusers' StableDiffusionInpaintPipeline default: the masked area starts from pure noise. */
  strength: 1,
} as const;

export const INPAINT_LIMITS = { maxMaskBlur: 64, maxPadding: 256 } as const;

/** The editing fields of a request as a caller writes them. */
export interface InpaintParams {
  /** An encoded image the size of the init image: white = repaint. */
  mask?: Uint8Array;
  invertMask?: boolean;
  maskBlur?: number;
  inpaintFill?: string;
  inpaintArea?: string;
  onlyMaskedPadding?: number;
  restoreUnmasked?: boolean;
  outpaint?: Outpaint;
}

/** The editing settings with defaults resolved, as they run. */
export interface InpaintRequest {
  mask?: Uint8Array;
  invertMask: boolean;
  maskBlur: number;
  inpaintFill: InpaintFill;
  inpaintArea: InpaintArea;
  onlyMaskedPadding: number;
  restoreUnmasked: boolean;
  outpaint?: Outpaint;
}

const SETTINGS = ['invertMask', 'maskBlur', 'inpaintFill', 'inpaintArea', 'onlyMaskedPadding', 'restoreUnmasked'] as const;

/** The settings with their defaults, for a request that has a mask or an outpaint (checked or not). */
export function inpaintDefaults(params: InpaintParams): InpaintRequest {
  const d = INPAINT_DEFAULTS;
  return {
    mask: params.mask,
    invertMask: params.invertMask ?? d.invertMask,
    maskBlur: params.maskBlur ?? d.maskBlur,
    inpaintFill: (params.inpaintFill ?? (params.outpaint ? d.outpaintFill : d.inpaintFill)) as InpaintFill,
    inpaintArea: (params.inpaintArea ?? d.inpaintArea) as InpaintArea,
    onlyMaskedPadding: params.onlyMaskedPadding ?? d.onlyMaskedPadding,
    restoreUnmasked: params.restoreUnmasked ?? d.restoreUnmasked,
    outpaint: params.outpaint,
  };
}

/**
 * Checks the editing fields of a request against the model and its init image; undefined when the
 * request edits nothing. `size` is the default processing size: the canvas (the init image, grown
 * by any outpaint) for WHOLE_PICTURE, the model's native size for ONLY_MASKED.
 */
export async function resolveInpaint(
  info: ModelFolderInfo,
  params: InpaintParams & { initImage?: Uint8Array },
): Promise<{ inpaint: InpaintRequest; size: { width: number; height: number } } | undefined> {
  const check = (ok: boolean, message: string) => {
    if (!ok) throw badInput(message);
  };
  if (!params.mask && !params.outpaint) {
    const stray = SETTINGS.find((key) => params[key] !== undefined);
    check(stray === undefined, `${stray} applies only with a mask or an outpaint`);
    return undefined;
  }
  const field = params.mask ? 'mask' : 'outpaint';
  check(params.initImage !== undefined, `${field} needs an initImage: the image to paint into`);
  check(info.canInpaint, `model ${info.id} has no VAE encoder, so it cannot inpaint or outpaint (${field})`);
  const inpaint = inpaintDefaults(params);
  check(Number.isInteger(inpaint.maskBlur) && inpaint.maskBlur >= 0 && inpaint.maskBlur <= INPAINT_LIMITS.maxMaskBlur, `maskBlur must be an integer from 0 to ${INPAINT_LIMITS.maxMaskBlur} pixels, got ${inpaint.maskBlur}`);
  check(INPAINT_FILLS.includes(inpaint.inpaintFill), `inpaintFill must be one of ${INPAINT_FILLS.join(', ')}`);
  check(INPAINT_AREAS.includes(inpaint.inpaintArea), `inpaintArea must be one of ${INPAINT_AREAS.join(', ')}`);
  const padding = inpaint.onlyMaskedPadding;
  check(Number.isInteger(padding) && padding >= 0 && padding <= INPAINT_LIMITS.maxPadding, `onlyMaskedPadding must be an integer from 0 to ${INPAINT_LIMITS.maxPadding} pixels, got ${padding}`);

  const init = await probeImage(params.initImage!);
  if (params.mask) {
    const mask = await probeImage(params.mask, 'mask');
    check(mask.width === init.width && mask.height === init.height, `mask is ${mask.width}×${mask.height} but initImage is ${init.width}×${init.height}: send a mask of the init image's size`);
  }
  let canvas = { width: init.width, height: init.height };
  const outpaint = inpaint.outpaint;
  if (outpaint) {
    const factor = info.vaeScaleFactor;
    for (const side of ['left', 'right', 'top', 'bottom'] as const) {
      const value = outpaint[side];
      check(Number.isInteger(value) && value >= 0, `outpaint.${side} must be a whole number of pixels, 0 or more, got ${value}`);
      check(value % factor === 0, `outpaint.${side} ${value} is not a multiple of ${factor} (the model's VAE scale factor)`);
    }
    const { left, right, top, bottom } = outpaint;
    check(params.mask !== undefined || left + right + top + bottom > 0, 'outpaint adds no pixels: give at least one side more than 0');
    canvas = { width: init.width + left + right, height: init.height + top + bottom };
    check(canvas.width <= LIMITS.maxSide && canvas.height <= LIMITS.maxSide, `outpaint makes the image ${canvas.width}×${canvas.height}; sides are limited to ${LIMITS.maxSide} pixels`);
    const beyond = pixelLimitRefusal(info, canvas.width, canvas.height, `outpaint makes the image ${canvas.width}×${canvas.height}, which`);
    if (beyond) throw badInput(beyond);
  }
  const size = inpaint.inpaintArea === 'ONLY_MASKED' ? defaultSize(info) : canvas;
  return { inpaint, size };
}

/** AUTOMATIC1111's infotext keys for the editing settings. */
export function inpaintInfotext(inpaint: InpaintRequest): Record<string, string | number> {
  return {
    'Mask blur': inpaint.maskBlur,
    'Masked content': A1111_FILLS[inpaint.inpaintFill],
    'Inpaint area': A1111_AREAS[inpaint.inpaintArea],
    'Only masked padding, pixels': inpaint.onlyMaskedPadding,
    ...(inpaint.invertMask ? { 'Mask mode': 'Inpaint not masked' } : {}),
  };
}

/** The image and mask a request denoises, and how the results go back into the init image. */
interface Prepared {
  /** width × height: what the pipeline sees. */
  image: Pixels;
  mask: Pixels;
  /** The canvas, the mask to lay it over the results with, and where the results go on it. */
  canvas: Pixels;
  overlayMask: Pixels;
  box?: Box;
  warnings: string[];
}

/** Everything AUTOMATIC1111 does to the image and the mask before the sampler runs. */
async function prepare(inpaint: InpaintRequest, initImage: Uint8Array, width: number, height: number): Promise<Prepared> {
  let canvas = await decodeRgb(initImage);
  let mask = inpaint.mask ? await decodeMask(inpaint.mask) : undefined;
  if (inpaint.outpaint) ({ image: canvas, mask } = await extendCanvas(canvas, mask, inpaint.outpaint));
  if (inpaint.invertMask) mask = invert(mask!);
  mask = await blur(mask!, inpaint.maskBlur);
  const warnings: string[] = [];
  const box = inpaint.inpaintArea === 'ONLY_MASKED' ? maskBox(mask, inpaint.onlyMaskedPadding) : undefined;
  if (inpaint.inpaintArea === 'ONLY_MASKED' && !box) warnings.push('the mask is empty, so ONLY_MASKED painted the whole picture');
  let image: Pixels;
  let processingMask: Pixels;
  let overlayMask: Pixels;
  let expanded: Box | undefined;
  if (box) {
    expanded = expandBox(box, width, height, canvas.width, canvas.height);
    image = await resize(await crop(canvas, expanded), width, height);
    processingMask = await resize(await crop(mask, expanded), width, height);
    overlayMask = mask;
  } else {
    canvas = await resize(canvas, width, height);
    image = canvas;
    processingMask = await resize(mask, width, height);
    // AUTOMATIC1111 doubles the blurred mask for the whole picture: what it half repaints, it repaints.
    overlayMask = { ...processingMask, data: processingMask.data.map((v) => Math.min(2 * v, 255)) };
  }
  if (inpaint.inpaintFill !== 'ORIGINAL') image = await fill(image, processingMask);
  if (!inpaint.restoreUnmasked) overlayMask = { ...overlayMask, data: new Uint8Array(overlayMask.data.length).fill(255) };
  return { image, mask: processingMask, canvas, overlayMask, box: expanded, warnings };
}

/** What the pipeline needs of the generation it runs. */
export interface InpaintContext {
  generators: TorchGenerator[];
  /** Draws the batch's initial noise from the generators, turned towards the variation seed's when
   * the request asks (AUTOMATIC1111 varies the initial noise in every mode). */
  initialNoise: () => Float32Array;
  scheduler: Scheduler;
  /** The timesteps left after `strength`. */
  timesteps: readonly number[];
  strength: number;
  seed: number;
  width: number;
  height: number;
  /** Encodes [-1, 1] pixels (1 × 3 × height × width) to latents × the scaling factor, sampling with each generator given. */
  encode(pixels: Float32Array, generators: TorchGenerator[]): Promise<Float32Array>;
}

/** The hooks pipeline.ts calls while it denoises an inpainting request. */
export interface InpaintRun {
  /** The first latents of the batch. */
  latents: Float32Array;
  /** Channels of the UNet's `sample`: 9 for inpainting UNets, 4 otherwise. */
  channels: number;
  /** The UNet's `sample` for scaled latents of `batch` images: latents ‖ mask ‖ masked-image latents for a 9-channel UNet. */
  unetInput(scaled: Float32Array, batch: number): Float32Array;
  /** After step `i`: a 4-channel UNet's latents outside the mask put back to the init image's, noised to the next timestep. */
  afterStep(latents: Float32Array, i: number): Float32Array;
  /** The decoded images laid into the init image as the request says. */
  finish(image: RgbImage): Promise<RgbImage>;
  warnings: string[];
}

/**
 * Prepares an inpainting run as diffusers' StableDiffusionInpaintPipeline.__call__ does (v0.21.4),
 * with its draws in its order. The init image and the masked image are one image each, so the VAE
 * encoder samples them with the first image's generator only (`_encode_vae_image` loops over the
 * image batch, not the generators); the initial noise comes from each image's own.
 */
export async function prepareInpaint(model: StableDiffusionModel, inpaint: InpaintRequest, initImage: Uint8Array, ctx: InpaintContext): Promise<InpaintRun> {
  const { generators, scheduler, timesteps, width, height } = ctx;
  const n = generators.length;
  const factor = model.info.vaeScaleFactor;
  const [h, w] = [height / factor, width / factor];
  const plane = h * w;
  const perImage = 4 * plane;
  const channels = model.info.unetInChannels;
  if (channels !== 4 && channels !== 9) throw invalidModel(`model ${model.info.id}: a UNet of ${channels} channels cannot inpaint`);
  const prepared = await prepare(inpaint, initImage, width, height);

  const pixels = toVaeInput(prepared.image);
  // VaeImageProcessor binarises the mask at 0.5; the latent mask is its nearest-neighbour resize (every factor-th pixel).
  const binary = Float32Array.from(prepared.mask.data, (v) => (v / 255 >= 0.5 ? 1 : 0));
  const latentMask = new Float32Array(plane);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) latentMask[y * w + x] = binary[y * factor * width + x * factor];

  const first = generators.slice(0, 1);
  const strengthMax = ctx.strength === 1;
  const imageLatents = channels === 4 || !strengthMax ? await ctx.encode(pixels, first) : undefined;
  const batchLatents = imageLatents && tile(imageLatents, n);
  if (batchLatents && (inpaint.inpaintFill === 'LATENT_NOISE' || inpaint.inpaintFill === 'LATENT_NOTHING')) {
    // AUTOMATIC1111 replaces the masked latents with each image's seed noise (drawn from generators of
    // their own, so that diffusers' draws stay as they are), or with zeros.
    for (let i = 0; i < n; i++) {
      const fillNoise = inpaint.inpaintFill === 'LATENT_NOISE' ? new TorchGenerator(ctx.seed + i).randn(perImage) : undefined;
      const image = batchLatents.subarray(i * perImage, (i + 1) * perImage);
      for (let j = 0; j < perImage; j++) if (latentMask[j % plane]) image[j] = fillNoise?.[j] ?? 0;
    }
  }
  // The 4-channel path re-noises the kept area with this same noise after each step.
  const noise = ctx.initialNoise();
  const latents = strengthMax ? noise.map((v) => v * scheduler.initNoiseSigma) : scheduler.addNoise(batchLatents!, noise, timesteps[0]);

  // Image × (mask < 0.5): the masked area grey (0 in [-1, 1]).
  const masked = pixels.map((v, j) => (binary[j % binary.length] ? 0 : v));
  const maskedLatents = await ctx.encode(masked, first);

  return {
    latents,
    channels,
    warnings: prepared.warnings,
    unetInput(scaled, batch) {
      if (channels === 4) return scaled;
      const out = new Float32Array(batch * 9 * plane);
      for (let b = 0; b < batch; b++) {
        const at = b * 9 * plane;
        out.set(scaled.subarray(b * perImage, (b + 1) * perImage), at);
        out.set(latentMask, at + perImage);
        out.set(maskedLatents, at + perImage + plane);
      }
      return out;
    },
    afterStep(current, i) {
      if (channels === 9) return current;
      const proper = i < timesteps.length - 1 ? scheduler.addNoise(batchLatents!, noise, timesteps[i + 1]) : batchLatents!;
      return current.map((v, j) => {
        const m = latentMask[j % plane];
        return (1 - m) * proper[j] + m * v;
      });
    },
    async finish(image) {
      if (!inpaint.restoreUnmasked && !prepared.box) return image;
      let generated = toPixels8(image);
      if (prepared.box) {
        const [x1, y1, x2, y2] = prepared.box;
        generated = await resize(generated, x2 - x1, y2 - y1);
      }
      const out = overlay(prepared.canvas, prepared.overlayMask, generated, prepared.box);
      return { width: out.width, height: out.height, data: Float32Array.from(out.data, (v) => v / 255) };
    },
  };
}

/** 8-bit RGB to the VAE encoder's input, 1 × 3 × H × W in [-1, 1] (VaeImageProcessor.normalize). */
function toVaeInput(image: Pixels): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[c * plane + i] = (image.data[i * 3 + c] / 255) * 2 - 1;
  return out;
}

/** Decoded [0, 1] RGB to 8 bits as the pipeline's PNG holds them. */
function toPixels8(image: RgbImage): Pixels {
  return { width: image.width, height: image.height, channels: 3, data: quantize(image) };
}

function tile(values: Float32Array, times: number): Float32Array {
  const out = new Float32Array(values.length * times);
  for (let i = 0; i < times; i++) out.set(values, i * values.length);
  return out;
}
