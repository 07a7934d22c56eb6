// A standalone upscale of a finished image, as AUTOMATIC1111's Extras tab does it: a model upscaler
// runs at its own factor (tiled, upscalers.ts), then Lanczos gives the size asked for; `lanczos`
// resizes the image alone. The result carries the source's infotext and Extras' "Postprocess" keys.
import { badInput } from './errors.ts';
import { a1111UpscalerName, MAX_HIRES_SCALE } from './hires.ts';
import { quantize, verifyImage, type RgbImage } from './image.ts';
import { formatSettings } from './infotext.ts';
import { LIMITS } from './limits.ts';
import { decodeRgb, resize } from './mask.ts';
import { DEFAULT_TILING, type OnnxUpscaler, type UpscalerInfo } from './upscalers.ts';

/** The image upscaler every server has; the latent ones of the hires fix have no latents to work on here. */
export const LANCZOS = 'lanczos';
/** `lanczos` has no factor of its own: AUTOMATIC1111's "Upscale by" default. */
export const UPSCALE_DEFAULTS = { lanczosScale: 2 } as const;
/** AUTOMATIC1111's Extras slider: 1 to 8. */
export const MAX_UPSCALE = MAX_HIRES_SCALE;

/** An upscale, checked: the result's size, and the tiles it runs in (its progress steps). */
export interface UpscaleRequest {
  /** `lanczos` or the id of a model upscaler. */
  upscaler: string;
  scale: number;
  width: number;
  height: number;
  /** Tiles the model upscaler runs, one step each; 1 for `lanczos`. */
  tiles: number;
}

/**
 * Checks an upscale of `image` and completes it: the scale defaults to the upscaler's own, the result
 * is the source × scale rounded down (AUTOMATIC1111's int()); `format` is the image's. BAD_USER_INPUT for an unreadable image,
 * an upscaler that is neither `lanczos` nor a usable one of `upscalers`, a scale out of range, or a
 * result (or a model upscaler's own output) beyond LIMITS.maxInputPixels: a result can be sent back
 * as an input image.
 */
export async function resolveUpscale(
  image: Uint8Array,
  params: { upscaler: string; scale?: number },
  upscalers: readonly UpscalerInfo[],
): Promise<UpscaleRequest & { format: string }> {
  const source = await verifyImage(image, 'image');
  const { upscaler } = params;
  let own: number | undefined;
  if (upscaler !== LANCZOS) {
    const model = upscalers.find((u) => u.id === upscaler);
    if (!model) throw badInput(`upscaler: unknown upscaler "${upscaler}": ${LANCZOS} or an id of \`upscalers\``);
    if (model.scale === undefined) throw badInput(`upscaler: ${upscaler} cannot be used: ${model.error}`);
    own = model.scale;
  }
  const scale = params.scale ?? own ?? UPSCALE_DEFAULTS.lanczosScale;
  if (!Number.isFinite(scale) || scale < 1 || scale > MAX_UPSCALE) throw badInput(`scale must be from 1 to ${MAX_UPSCALE}, got ${scale}`);
  const width = Math.floor(source.width * scale);
  const height = Math.floor(source.height * scale);
  for (const [what, w, h] of [['the result', width, height], [`${upscaler}'s own ×${own} output`, source.width * (own ?? 1), source.height * (own ?? 1)]] as const) {
    if (w * h > LIMITS.maxInputPixels) {
      throw badInput(`scale: ${what} would be ${w}×${h}, more than ${LIMITS.maxInputPixels} pixels: upscale a smaller image or by less`);
    }
  }
  const tiles = own === undefined ? 1 : Math.ceil(source.width / DEFAULT_TILING.tile) * Math.ceil(source.height / DEFAULT_TILING.tile);
  return { upscaler, scale, width, height, tiles, format: source.format };
}

/**
 * Runs a resolved upscale on the encoded `image` (EXIF orientation applied, transparency flattened
 * onto white, as init images are): `model` (the request's upscaler, loaded) at its own factor on the
 * 8-bit image, then Lanczos (sharp's lanczos3) to the result's size. `onTile` is told after each tile.
 */
export async function upscaleImage(image: Uint8Array, request: UpscaleRequest, model: OnnxUpscaler | undefined, onTile: (done: number, total: number) => void | Promise<void>): Promise<RgbImage> {
  if ((model === undefined) !== (request.upscaler === LANCZOS)) throw new Error(`upscale: upscaler ${request.upscaler} ${model ? 'needs no' : 'needs its'} model`);
  let pixels = await decodeRgb(image);
  if (model) {
    const enlarged = await model.upscale({ ...pixels, data: Float32Array.from(pixels.data, (v) => v / 255) }, DEFAULT_TILING, onTile);
    pixels = { ...enlarged, channels: 3, data: quantize(enlarged) };
  }
  const result = await resize(pixels, request.width, request.height);
  if (!model) await onTile(1, 1);
  return { width: result.width, height: result.height, data: Float32Array.from(result.data, (v) => v / 255) };
}

/** AUTOMATIC1111's Extras keys for an upscale, as its "postprocessing" text writes them. */
export function upscaleInfotext(request: Pick<UpscaleRequest, 'upscaler' | 'scale'>): string {
  return formatSettings([
    ['Postprocess upscale by', request.scale],
    ['Postprocess upscaler', a1111UpscalerName(request.upscaler)],
  ]);
}
