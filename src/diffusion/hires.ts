// AUTOMATIC1111's hires fix: a txt2img first pass at the request's size, upscaled, then an img2img
// second pass at the hires size with the same seeds. This module checks the settings and upscales;
// pipeline.ts runs the two passes.
import { badInput } from './errors.ts';
import { LIMITS, pixelLimitRefusal, type PixelLimitModel } from './limits.ts';

/** The hires settings as a caller writes them: `scale` or `width`/`height` (one of them keeps the aspect ratio). */
export interface HiresParams {
  scale?: number;
  width?: number;
  height?: number;
  upscaler?: string;
  steps?: number;
  strength?: number;
}

/** Resolved: the second pass's size, steps and strength, and the upscaler. */
export interface HiresRequest {
  width: number;
  height: number;
  /** The scale asked for ("Hires upscale"); absent when a size was ("Hires resize"). */
  scale?: number;
  upscaler: string;
  steps: number;
  strength: number;
}

export const HIRES_DEFAULTS = { scale: 2, upscaler: 'latent', strength: 0.7 } as const;
export const MAX_HIRES_SCALE = 8;

/** The upscalers every server has, with AUTOMATIC1111's names: latent ones interpolate the first pass's latents as its
 * "Latent" modes do (torch's interpolate, no antialiasing); `lanczos` resizes the 8-bit first-pass image. */
export const BUILTIN_UPSCALERS = {
  latent: { a1111: 'Latent', latentMode: 'bilinear' },
  'latent-nearest': { a1111: 'Latent (nearest)', latentMode: 'nearest' },
  lanczos: { a1111: 'Lanczos', latentMode: undefined },
} as const satisfies Record<string, { a1111: string; latentMode: LatentMode | undefined }>;
export type LatentMode = 'bilinear' | 'nearest';

export function latentMode(upscaler: string): LatentMode | undefined {
  return Object.hasOwn(BUILTIN_UPSCALERS, upscaler) ? BUILTIN_UPSCALERS[upscaler as keyof typeof BUILTIN_UPSCALERS].latentMode : undefined;
}

/** The upscaler as AUTOMATIC1111's "Hires upscaler" names it (a model upscaler keeps its id). */
export function a1111UpscalerName(upscaler: string): string {
  return Object.hasOwn(BUILTIN_UPSCALERS, upscaler) ? BUILTIN_UPSCALERS[upscaler as keyof typeof BUILTIN_UPSCALERS].a1111 : upscaler;
}

/**
 * Checks hires settings against the first pass (`base`) and completes them: the size is the base
 * size times `scale` (or `width`/`height`), rounded down to a multiple of the VAE scale factor.
 * `isUpscaler` tells whether an id that is not built in names a model upscaler.
 */
export function resolveHires(
  params: HiresParams,
  base: { width: number; height: number; steps: number; factor: number; canEncode: boolean; model: PixelLimitModel },
  isUpscaler: (id: string) => boolean,
): HiresRequest {
  const check = (ok: boolean, message: string) => {
    if (!ok) throw badInput(`hires: ${message}`);
  };
  const upscaler = params.upscaler ?? HIRES_DEFAULTS.upscaler;
  check(Object.hasOwn(BUILTIN_UPSCALERS, upscaler) || isUpscaler(upscaler), `unknown upscaler "${upscaler}": ${Object.keys(BUILTIN_UPSCALERS).join(', ')} or one of \`upscalers\``);
  // An image upscaler's result goes through the VAE encoder.
  check(latentMode(upscaler) !== undefined || base.canEncode, `the model has no VAE encoder, so upscaler "${upscaler}" cannot be used; use "latent"`);
  const sized = params.width !== undefined || params.height !== undefined;
  check(!(sized && params.scale !== undefined), 'give scale or width/height, not both');
  const scale = sized ? undefined : (params.scale ?? HIRES_DEFAULTS.scale);
  check(scale === undefined || (Number.isFinite(scale) && scale >= 1 && scale <= MAX_HIRES_SCALE), `scale must be from 1 to ${MAX_HIRES_SCALE}, got ${scale}`);
  const floor = (side: number) => Math.floor(side / base.factor) * base.factor;
  let width: number;
  let height: number;
  if (scale !== undefined) {
    width = floor(base.width * scale);
    height = floor(base.height * scale);
  } else {
    for (const [name, side] of [['width', params.width], ['height', params.height]] as const) {
      check(side === undefined || (Number.isInteger(side) && side > 0 && side % base.factor === 0), `${name} must be a positive multiple of ${base.factor}, got ${side}`);
    }
    // As AUTOMATIC1111's "Resize width/height to": a side left out keeps the aspect ratio.
    width = params.width ?? floor((params.height! * base.width) / base.height);
    height = params.height ?? floor((params.width! * base.height) / base.width);
  }
  for (const [name, side] of [['width', width], ['height', height]] as const) {
    check(side >= Math.max(base.factor, LIMITS.minSide) && side <= LIMITS.maxSide, `the ${name} ${side} is not from ${Math.max(base.factor, LIMITS.minSide)} to ${LIMITS.maxSide} pixels`);
  }
  const beyond = pixelLimitRefusal(base.model, width, height);
  check(beyond === undefined, `${beyond}: lower scale or the size`);
  const steps = params.steps ?? base.steps;
  check(Number.isInteger(steps) && steps >= LIMITS.minSteps && steps <= LIMITS.maxSteps, `steps must be an integer from ${LIMITS.minSteps} to ${LIMITS.maxSteps}, got ${steps}`);
  const strength = params.strength ?? HIRES_DEFAULTS.strength;
  check(Number.isFinite(strength) && strength > 0 && strength <= 1, `strength must be in (0, 1], got ${strength}`);
  check(Math.trunc(steps * strength) >= 1, `steps × strength must be at least 1 (${steps} × ${strength} leaves no step to run)`);
  return { width, height, ...(scale !== undefined && { scale }), upscaler, steps, strength };
}

/**
 * Latents [n, c, h, w] resized to [n, c, outH, outW] as torch.nn.functional.interpolate does with
 * `align_corners=False` and no antialiasing: `nearest` takes floor(dst × in/out), `bilinear` samples
 * at (dst + 0.5) × in/out − 0.5, clamped at 0. Hand-written: no maintained library resizes float
 * tensors with torch's index rules.
 */
export function interpolateLatents(latents: Float32Array, shape: readonly [number, number, number, number], outH: number, outW: number, mode: LatentMode): Float32Array {
  const [n, c, h, w] = shape;
  const out = new Float32Array(n * c * outH * outW);
  const axis = (outSize: number, inSize: number) => {
    const ratio = inSize / outSize;
    return Array.from({ length: outSize }, (_, d) => {
      if (mode === 'nearest') {
        const i = Math.min(Math.floor(d * ratio), inSize - 1);
        return { i0: i, i1: i, t: 0 };
      }
      const src = Math.max((d + 0.5) * ratio - 0.5, 0);
      const i0 = Math.min(Math.floor(src), inSize - 1);
      return { i0, i1: Math.min(i0 + 1, inSize - 1), t: src - i0 };
    });
  };
  const ys = axis(outH, h);
  const xs = axis(outW, w);
  for (let plane = 0; plane < n * c; plane++) {
    const src = latents.subarray(plane * h * w, (plane + 1) * h * w);
    const dst = out.subarray(plane * outH * outW, (plane + 1) * outH * outW);
    for (let y = 0; y < outH; y++) {
      const { i0: y0, i1: y1, t: ty } = ys[y];
      for (let x = 0; x < outW; x++) {
        const { i0: x0, i1: x1, t: tx } = xs[x];
        const top = src[y0 * w + x0] * (1 - tx) + src[y0 * w + x1] * tx;
        const bottom = src[y1 * w + x0] * (1 - tx) + src[y1 * w + x1] * tx;
        dst[y * outW + x] = top * (1 - ty) + bottom * ty;
      }
    }
  }
  return out;
}
