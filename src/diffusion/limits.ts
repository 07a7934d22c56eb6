// The request limits the engine enforces, in one place so the API, the CLI and the README agree.
import type { AttentionLevel } from './model-folder.ts';
import { SD1_ATTENTION, unetSampleBytes } from './sub-batch.ts';

export const LIMITS = {
  /** Denoising steps a request may ask for. */
  minSteps: 1,
  maxSteps: 150,
  /** Images in one request (each with its own seed, seed + i). */
  maxImages: 16,
  /** Width and height bounds in pixels; both must also be multiples of the model's VAE scale factor. */
  minSide: 64,
  maxSide: 2048,
  /**
   * Output pixels per image (width × height) that no model goes beyond: 1024×1024, SDXL's native
   * size. A model's own limit (maxPixels below) is often lower. At this size an SDXL-size UNet call
   * (fp32, two samples for guidance) peaked at 16.1 GB resident on a 24 GB machine (README "SDXL-size
   * UNet"); nothing larger was measured, and the rest of a UNet's activations grow with the pixels.
   */
  maxPixels: 1024 * 1024,
  /** Characters of a prompt or negative prompt. */
  maxPromptChars: 10_000,
  /** Bytes of an init image file as uploaded. */
  maxImageBytes: 20 * 1024 * 1024,
  /** Decoded pixels of an init image, against decompression bombs. */
  maxInputPixels: 4096 * 4096,
  /** Largest seed: seeds are unsigned 32-bit, as in AUTOMATIC1111 and diffusers' examples. */
  maxSeed: 0xffff_ffff,
  maxGuidanceScale: 50,
  /** AUTOMATIC1111's "Clip skip" slider: 1 (the last layer) to 12 (SD 1.x's first). */
  maxClipSkip: 12,
} as const;

/** What the pixel limit of a model derives from: its UNet's attention and its VAE. */
export interface PixelLimitModel {
  id: string;
  vaeScaleFactor: number;
  attentionLevels?: readonly AttentionLevel[];
}

/** SD 1.x's size the attention budget was set at: 768×768 (96×96 latents). */
const BUDGET_LATENT_SIDE = 96;
/**
 * What one UNet sample's attention may take: SD 1.x's at 768×768, about 5.3 GiB (sub-batch.ts). At
 * 1024×1024 SD 1.x needs 17 GiB, which does not fit beside a loaded model on a 23 GiB machine even
 * one image at a time.
 */
export const ATTENTION_BUDGET_BYTES = unetSampleBytes(BUDGET_LATENT_SIDE, BUDGET_LATENT_SIDE);

/** Sides of the square a model's limit is, in steps of this: the sizes SD users know (512, 640, 768, 896, 1024). */
const LIMIT_SIDE_STEP = 128;

/**
 * Most pixels of one image for `model`: the largest square, its side a multiple of LIMIT_SIDE_STEP,
 * whose attention stays within ATTENTION_BUDGET_BYTES at every level, and never more than
 * LIMITS.maxPixels. Level i's attention attends over pixels / (scale² · 4^i) tokens with memory
 * heads × tokens², so the budget allows (budget tokens) · scale² · 4^i · √(8 / heads) pixels there.
 * SD 1.x (8 heads at full resolution) gets 768×768 exactly. SD 2.x (5 heads there) would be allowed
 * 746,074 pixels (863.8²) and keeps 768×768, its training size, rather than a limit no round size
 * meets. SDXL (no attention at full resolution, 10 heads at half) would be allowed 1453×1453 and gets
 * the cap, its native 1024×1024. A model whose config does not tell is taken as SD 1.x.
 */
export function maxPixels(model: PixelLimitModel): number {
  const budgetTokens = BUDGET_LATENT_SIDE ** 2;
  const byAttention = (model.attentionLevels ?? SD1_ATTENTION).map(({ level, heads }) => budgetTokens * model.vaeScaleFactor ** 2 * 4 ** level * Math.sqrt(SD1_ATTENTION[0].heads / heads));
  const side = Math.max(LIMIT_SIDE_STEP, Math.floor(Math.sqrt(Math.min(...byAttention)) / LIMIT_SIDE_STEP) * LIMIT_SIDE_STEP);
  return Math.min(LIMITS.maxPixels, side * side);
}

/** Why `width`×`height` is refused for `model` (beyond maxPixels(model)), or undefined when it is within. */
export function pixelLimitRefusal(model: PixelLimitModel, width: number, height: number, what = `${width}×${height}`): string | undefined {
  const limit = maxPixels(model);
  if (width * height <= limit) return undefined;
  const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(1);
  const needs = unetSampleBytes(Math.ceil(height / model.vaeScaleFactor), Math.ceil(width / model.vaeScaleFactor), model.attentionLevels);
  const why = needs > ATTENTION_BUDGET_BYTES ? `one image of it needs ${gib(needs)} GiB for the UNet's attention, more than the ${gib(ATTENTION_BUDGET_BYTES)} GiB allowed` : `no model goes beyond ${LIMITS.maxPixels} pixels`;
  return `${what} is more than ${limit} pixels, model ${model.id}'s limit: ${why} (see the README's limits)`;
}

/** The size a request that names none gets: the model's native size, scaled down to its pixel limit when it
 * is beyond it and kept in multiples of the VAE scale factor. */
export function defaultSize(model: PixelLimitModel & { nativeWidth: number; nativeHeight: number }): { width: number; height: number } {
  const fit = Math.min(1, Math.sqrt(maxPixels(model) / (model.nativeWidth * model.nativeHeight)));
  const snap = (side: number) => Math.max(model.vaeScaleFactor, Math.floor((side * fit) / model.vaeScaleFactor) * model.vaeScaleFactor);
  return { width: snap(model.nativeWidth), height: snap(model.nativeHeight) };
}
