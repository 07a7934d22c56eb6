// The request limits the engine enforces, in one place so the API, the CLI and the README agree.

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
   * Output pixels per image (width × height): 768×768. One UNet sample at this size needs about
   * 5.3 GiB for SD 1.x's attention (sub-batch.ts); at 1024×1024 it needs 17 GiB, which does not fit
   * beside a loaded model on a 23 GiB machine even one image at a time.
   */
  maxPixels: 768 * 768,
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

/** The size a request that names none gets: the model's native size, scaled down to `maxPixels` when it
 * is beyond them (SDXL's 1024 × 1024 is) and kept in multiples of the VAE scale factor. */
export function defaultSize(model: { nativeWidth: number; nativeHeight: number; vaeScaleFactor: number }): { width: number; height: number } {
  const fit = Math.min(1, Math.sqrt(LIMITS.maxPixels / (model.nativeWidth * model.nativeHeight)));
  const snap = (side: number) => Math.max(model.vaeScaleFactor, Math.floor((side * fit) / model.vaeScaleFactor) * model.vaeScaleFactor);
  return { width: snap(model.nativeWidth), height: snap(model.nativeHeight) };
}
