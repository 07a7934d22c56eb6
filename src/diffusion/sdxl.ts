// SDXL's micro-conditioning (arXiv:2307.01952 §2.2) as diffusers 0.21.4's StableDiffusionXL pipelines
// feed it to the UNet: the pooled prompt embedding (`text_embeds`) and the time ids, per image
// (original size, crop top-left, target size), or with an aesthetic score in place of the target
// size for refiner-style UNets (`requires_aesthetics_score`).
import { badInput } from './errors.ts';
import type { ModelFolderInfo, SdxlConfig } from './model-folder.ts';
import type { TensorData } from './onnx-model.ts';

/** diffusers' StableDiffusionXLImg2ImgPipeline defaults for refiner-style models. */
export const AESTHETIC_SCORE = { positive: 6, negative: 2.5 } as const;

export interface ImageSize {
  width: number;
  height: number;
}

export interface CropTopLeft {
  top: number;
  left: number;
}

/** The SDXL fields of a request (diffusers' prompt_2, negative_prompt_2, original_size,
 * crops_coords_top_left, target_size); left out, diffusers' defaults apply when it runs. */
export interface SdxlParams {
  /** The second text encoder's prompt; the prompt when left out. */
  prompt2?: string;
  negativePrompt2?: string;
  originalSize?: ImageSize;
  cropTopLeft?: CropTopLeft;
  targetSize?: ImageSize;
}

/** What the conditioning reads of a request (request.ts's GenerateRequest has all of it). */
type ConditionedRequest = SdxlParams & ImageSize;

/** Pixels the micro-conditioning sizes may state: SDXL was trained on images up to about this size. */
const MAX_CONDITIONING_SIDE = 4096;

/** Checks the SDXL fields of a request: only SDXL models take them. BAD_USER_INPUT otherwise. */
export function resolveSdxl(info: Pick<ModelFolderInfo, 'id' | 'family' | 'sdxl'>, params: SdxlParams): SdxlParams {
  const given = (['prompt2', 'negativePrompt2', 'originalSize', 'cropTopLeft', 'targetSize'] as const).filter((key) => params[key] !== undefined);
  if (given.length === 0) return {};
  const check = (ok: boolean, message: string) => {
    if (!ok) throw badInput(message);
  };
  check(info.sdxl !== undefined, `${given.join(', ')} ${given.length > 1 ? 'apply' : 'applies'} only to SDXL models, and model ${info.id} is ${info.family}`);
  const texts2 = (['prompt2', 'negativePrompt2'] as const).filter((key) => params[key]);
  // diffusers' refiner pipelines give its one encoder the prompt: these would change nothing.
  check(
    !info.sdxl?.textEncoder2Only || texts2.length === 0,
    `${texts2.join(', ')} ${texts2.length > 1 ? 'are' : 'is'} for the second of two text encoders, and model ${info.id} is a refiner with text_encoder_2 alone, which reads the prompt and negativePrompt: leave ${texts2.length > 1 ? 'them' : 'it'} out`,
  );
  const resolved: SdxlParams = {};
  // Their text is checked with the prompt's (request.ts); empty is the same as left out.
  for (const key of ['prompt2', 'negativePrompt2'] as const) if (params[key]) resolved[key] = params[key];
  const side = (name: string, value: number, min: number) =>
    check(Number.isInteger(value) && value >= min && value <= MAX_CONDITIONING_SIDE, `${name} must be a whole number of pixels from ${min} to ${MAX_CONDITIONING_SIDE}, got ${value}`);
  for (const key of ['originalSize', 'targetSize'] as const) {
    const size = params[key];
    if (!size) continue;
    side(`${key}.width`, size.width, 1);
    side(`${key}.height`, size.height, 1);
    resolved[key] = { width: size.width, height: size.height };
  }
  if (params.cropTopLeft) {
    side('cropTopLeft.top', params.cropTopLeft.top, 0);
    side('cropTopLeft.left', params.cropTopLeft.left, 0);
    resolved.cropTopLeft = { top: params.cropTopLeft.top, left: params.cropTopLeft.left };
  }
  return resolved;
}

/** The time ids of one image: diffusers' defaults are the pass's own size for both sizes and no crop. */
export function timeIds(config: SdxlConfig, request: ConditionedRequest, negative: boolean): number[] {
  const size = { width: request.width, height: request.height };
  const original = request.originalSize ?? size;
  const target = request.targetSize ?? size;
  const crop = request.cropTopLeft ?? { top: 0, left: 0 };
  const head = [original.height, original.width, crop.top, crop.left];
  if (config.timeIds === 5) return [...head, negative ? AESTHETIC_SCORE.negative : AESTHETIC_SCORE.positive];
  return [...head, target.height, target.width];
}

/** The UNet's `text_embeds` and `time_ids` for a batch of `n` images ([negative × n, prompt × n] with guidance). */
export function sdxlUnetInputs(
  config: SdxlConfig,
  request: ConditionedRequest,
  pooled: { data: Float32Array; size: number },
  n: number,
  doGuidance: boolean,
): { text_embeds: TensorData; time_ids: TensorData } {
  const batch = doGuidance ? 2 * n : n;
  const ids = [...(doGuidance ? Array.from({ length: n }, () => timeIds(config, request, true)) : []), ...Array.from({ length: n }, () => timeIds(config, request, false))];
  return {
    text_embeds: { data: pooled.data, dims: [batch, pooled.size] },
    time_ids: { data: Float32Array.from(ids.flat()), dims: [batch, config.timeIds] },
  };
}
