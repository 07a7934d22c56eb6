// A generation request as a caller writes it, checked against the model it is for and completed
// with defaults: what the pipeline (pipeline.ts) runs and what a history records.
import type { EmbeddingRequest } from './embeddings.ts';
import { clipSkipBeyondMessage } from './clip-skip.ts';
import { badInput } from './errors.ts';
import { probeImage } from './image.ts';
import { resolveHires, type HiresParams, type HiresRequest } from './hires.ts';
import { INPAINT_DEFAULTS, resolveInpaint, type InpaintParams, type InpaintRequest } from './inpaint.ts';
import { LIMITS, defaultSize, pixelLimitRefusal } from './limits.ts';
import { checkAdapters, type LoraRequest } from './lora/adapt.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import { extractLoraTags, type LoraTag } from './prompt/lora-tags.ts';
import type { PromptSyntax } from './prompt/prepare.ts';
import { randomSeed } from './random.ts';
import { isSchedulerName, SCHEDULE_TYPES, SCHEDULE_TYPES_OF, stepsRefusal, type ScheduleType, type SchedulerName } from './schedulers/index.ts';
import { resolveSdxl, type SdxlParams } from './sdxl.ts';

export type { PromptSyntax } from './prompt/prepare.ts';
export const PROMPT_SYNTAXES: readonly PromptSyntax[] = ['A1111', 'PLAIN'];

/** A request as a caller writes it: everything but the model and the prompt may be left out. */
export interface GenerateParams extends InpaintParams, SdxlParams {
  prompt: string;
  negativePrompt?: string;
  width?: number;
  height?: number;
  steps?: number;
  guidanceScale?: number;
  guidanceRescale?: number;
  scheduler?: string;
  /** How the scheduler spaces its noise levels (see ScheduleType). */
  scheduleType?: string;
  seed?: number;
  numImages?: number;
  eta?: number;
  /** AUTOMATIC1111's "Clip skip": the prompt is the text encoder's hidden state this many layers from the end. */
  clipSkip?: number;
  /** An encoded PNG, JPEG or WebP image: makes the request img2img. */
  initImage?: Uint8Array;
  strength?: number;
  /** AUTOMATIC1111's variation seed: image i's noise is turned towards randn(variationSeed + i).
   * Default: a random one when variationStrength is given. */
  variationSeed?: number;
  /** How far, 0–1 (default 0: none). */
  variationStrength?: number;
  /** AUTOMATIC1111's hires fix (txt2img only). */
  hires?: HiresParams;
  /** How the prompts are read: AUTOMATIC1111's syntax (the default) or diffusers' plain text. */
  promptSyntax?: string;
  /** LoRA files to merge into the model (the caller resolves names to paths, `<lora:…>` tags of the
   * prompt included: see {@link promptLoraTags}). */
  loras?: LoraRequest[];
  /** Textual-inversion embeddings to add, by trigger word. */
  embeddings?: EmbeddingRequest[];
}

/** A request with every default resolved, as it runs and as it is recorded. */
export interface GenerateRequest extends SdxlParams {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  guidanceRescale: number;
  scheduler: SchedulerName;
  scheduleType: ScheduleType;
  seed: number;
  numImages: number;
  eta: number;
  clipSkip: number;
  initImage?: Uint8Array;
  strength?: number;
  /** Inpainting and outpainting (with an init image). */
  inpaint?: InpaintRequest;
  /** Both or neither; only with a strength above 0. */
  variationSeed?: number;
  variationStrength?: number;
  hires?: HiresRequest;
  /** The file of a model upscaler `hires` names: resolved where the request runs, never stored. */
  upscalerPath?: string;
  promptSyntax: PromptSyntax;
  loras?: LoraRequest[];
  embeddings?: EmbeddingRequest[];
}

export const DEFAULTS = {
  steps: 25,
  guidanceScale: 7.5,
  guidanceRescale: 0,
  scheduler: 'DPMPP_2M_KARRAS',
  scheduleType: 'DEFAULT',
  numImages: 1,
  eta: 0,
  clipSkip: 1,
  promptSyntax: 'A1111',
  /** diffusers' img2img default. */
  strength: 0.8,
} as const satisfies Partial<GenerateRequest>;

/** No unpaired surrogate (String.prototype.isWellFormed, which ES2023's lib does not declare). */
const isWellFormed = (text: string) => !/\p{Surrogate}/u.test(text);

/** Validates a request against the model's capabilities and fills in defaults (img2img without a size takes the init image's). */
export async function resolveRequest(info: ModelFolderInfo, params: GenerateParams, isUpscaler: (id: string) => boolean = () => false): Promise<GenerateRequest> {
  const factor = info.vaeScaleFactor;
  const check = (ok: boolean, message: string) => {
    if (!ok) throw badInput(message);
  };
  const isInt = Number.isInteger;
  check(typeof params.prompt === 'string', 'prompt must be a string');
  const negativePrompt = params.negativePrompt ?? '';
  for (const [name, text] of [['prompt', params.prompt], ['negativePrompt', negativePrompt], ['prompt2', params.prompt2 ?? ''], ['negativePrompt2', params.negativePrompt2 ?? '']] as const) {
    check(typeof text === 'string', `${name} must be a string`);
    check(text.length <= LIMITS.maxPromptChars, `${name} is ${text.length} characters; the limit is ${LIMITS.maxPromptChars}`);
    // The tokenizer would read them as text, and Postgres refuses NUL in text columns.
    check(!text.includes('\0'), `${name} holds a NUL character (\\u0000): remove it`);
    check(isWellFormed(text), `${name} holds a lone UTF-16 surrogate (half of a character): send well-formed text`);
  }
  const promptSyntax = params.promptSyntax ?? DEFAULTS.promptSyntax;
  check(PROMPT_SYNTAXES.includes(promptSyntax as PromptSyntax), `unknown prompt syntax "${promptSyntax}": ${PROMPT_SYNTAXES.join(' or ')}`);
  // A malformed LoRA tag is refused now rather than when the request runs.
  promptLoraTags(params.prompt, promptSyntax as PromptSyntax);
  const scheduler = params.scheduler ?? DEFAULTS.scheduler;
  check(isSchedulerName(scheduler), `unknown scheduler "${scheduler}"`);
  const scheduleType = params.scheduleType ?? DEFAULTS.scheduleType;
  check(SCHEDULE_TYPES.includes(scheduleType as ScheduleType), `unknown scheduleType "${scheduleType}": ${SCHEDULE_TYPES.join(', ')}`);
  if (scheduleType !== 'DEFAULT' && !SCHEDULE_TYPES_OF[scheduler as SchedulerName].includes(scheduleType as ScheduleType)) {
    const takers = Object.entries(SCHEDULE_TYPES_OF).filter(([, types]) => types.includes(scheduleType as ScheduleType)).map(([name]) => name);
    check(false, `scheduleType ${scheduleType} does not apply to scheduler ${scheduler}: use DEFAULT, or a scheduler that takes it (${takers.join(', ')})`);
  }
  const clipSkip = params.clipSkip ?? DEFAULTS.clipSkip;
  check(isInt(clipSkip) && clipSkip >= 1 && clipSkip <= LIMITS.maxClipSkip, `clipSkip must be an integer from 1 to ${LIMITS.maxClipSkip}, got ${clipSkip}`);
  const layers = info.textEncoderLayers;
  // SD 2.x and SDXL ignore clip skip (pipeline.ts); a folder without a text encoder config is checked when it runs.
  if (layers !== undefined && info.family !== 'SD2' && info.family !== 'SDXL') check(clipSkip <= layers + 1, clipSkipBeyondMessage(info.id, clipSkip, layers));
  const steps = params.steps ?? DEFAULTS.steps;
  check(isInt(steps) && steps >= LIMITS.minSteps && steps <= LIMITS.maxSteps, `steps must be an integer from ${LIMITS.minSteps} to ${LIMITS.maxSteps}, got ${steps}`);
  const numImages = params.numImages ?? DEFAULTS.numImages;
  check(isInt(numImages) && numImages >= 1 && numImages <= LIMITS.maxImages, `numImages must be from 1 to ${LIMITS.maxImages}, got ${numImages}`);
  const guidanceScale = params.guidanceScale ?? DEFAULTS.guidanceScale;
  check(Number.isFinite(guidanceScale) && guidanceScale >= 0 && guidanceScale <= LIMITS.maxGuidanceScale, `guidanceScale must be from 0 to ${LIMITS.maxGuidanceScale}, got ${guidanceScale}`);
  const guidanceRescale = params.guidanceRescale ?? DEFAULTS.guidanceRescale;
  check(Number.isFinite(guidanceRescale) && guidanceRescale >= 0 && guidanceRescale <= 1, `guidanceRescale must be from 0 to 1, got ${guidanceRescale}`);
  const eta = params.eta ?? DEFAULTS.eta;
  check(Number.isFinite(eta) && eta >= 0 && eta <= 1, `eta must be from 0 to 1, got ${eta}`);
  const seed = params.seed ?? randomSeed();
  check(isInt(seed) && seed >= 0 && seed <= LIMITS.maxSeed, `seed must be an integer from 0 to ${LIMITS.maxSeed}, got ${seed}`);
  const variationStrength = params.variationStrength ?? 0;
  check(Number.isFinite(variationStrength) && variationStrength >= 0 && variationStrength <= 1, `variationStrength must be from 0 to 1, got ${variationStrength}`);
  const variationSeed = params.variationSeed ?? (variationStrength > 0 ? randomSeed() : undefined);
  check(variationSeed === undefined || (isInt(variationSeed) && variationSeed >= 0 && variationSeed <= LIMITS.maxSeed), `variationSeed must be an integer from 0 to ${LIMITS.maxSeed}, got ${variationSeed}`);
  const editing = await resolveInpaint(info, params);
  check(info.unetInChannels !== 9 || editing !== undefined, `model ${info.id} is an inpainting model: it needs an initImage and a mask (or an outpaint)`);

  let { width, height } = params;
  let strength: number | undefined;
  if (params.initImage) {
    check(info.canImg2img, `model ${info.id} has no VAE encoder, so it cannot take an init image`);
    strength = params.strength ?? (editing ? INPAINT_DEFAULTS.strength : DEFAULTS.strength);
    check(Number.isFinite(strength) && strength > 0 && strength <= 1, `strength must be in (0, 1], got ${strength}`);
    check(Math.trunc(steps * strength) >= 1, `steps × strength must be at least 1 (${steps} × ${strength} leaves no step to run)`);
    if (width === undefined || height === undefined) {
      const source = editing?.size ?? (await probeImage(params.initImage));
      width ??= source.width - (source.width % factor);
      height ??= source.height - (source.height % factor);
    }
  } else {
    check(params.strength === undefined, 'strength applies only with an init image');
    const size = defaultSize(info);
    width ??= size.width;
    height ??= size.height;
  }
  for (const [name, side] of [['width', width], ['height', height]] as const) {
    check(isInt(side) && side >= Math.max(factor, LIMITS.minSide) && side <= LIMITS.maxSide, `${name} must be from ${Math.max(factor, LIMITS.minSide)} to ${LIMITS.maxSide} pixels, got ${side}`);
    check(side % factor === 0, `${name} ${side} is not a multiple of ${factor} (the model's VAE scale factor)`);
  }
  const beyond = pixelLimitRefusal(info, width, height);
  if (beyond) throw badInput(beyond);
  check(!(params.hires && params.initImage), 'hires applies only to txt2img: leave out initImage (or hires)');
  const hires = params.hires && resolveHires(params.hires, { width, height, steps, factor, canEncode: info.canImg2img, model: info }, isUpscaler);
  for (const passSteps of hires ? [steps, hires.steps] : [steps]) {
    const refusal = stepsRefusal(scheduler as SchedulerName, info.schedulerConfig, passSteps);
    check(refusal === undefined, `scheduler ${scheduler} with model ${info.id}: ${refusal}`);
  }
  const sdxl = resolveSdxl(info, params);
  const { loras = [], embeddings = [] } = params;
  checkAdapters(loras, embeddings);
  const request: GenerateRequest = { prompt: params.prompt, negativePrompt, width, height, steps, guidanceScale, guidanceRescale, scheduler: scheduler as SchedulerName, scheduleType: scheduleType as ScheduleType, seed, numImages, eta, clipSkip, initImage: params.initImage, strength, promptSyntax: promptSyntax as PromptSyntax };
  Object.assign(request, sdxl);
  if (editing) request.inpaint = editing.inpaint;
  if (variationSeed !== undefined && variationStrength > 0) Object.assign(request, { variationSeed, variationStrength });
  if (hires) request.hires = hires;
  if (loras.length) request.loras = loras;
  if (embeddings.length) request.embeddings = embeddings;
  return request;
}

/**
 * The `<lora:name:weight>` tags of a prompt under the A1111 syntax (none under PLAIN): the caller
 * resolves them to files and passes them in `loras`; the pipeline leaves them out of the text.
 * BAD_USER_INPUT for a malformed tag.
 */
export function promptLoraTags(prompt: string, syntax: PromptSyntax): LoraTag[] {
  if (syntax === 'PLAIN') return [];
  const { loras, invalid } = extractLoraTags(prompt);
  if (invalid.length > 0) throw badInput(`invalid LoRA tag ${invalid.join(', ')}: expected <lora:name:weight>`);
  return loras;
}
