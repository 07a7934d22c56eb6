// The denoising pipeline: diffusers' StableDiffusionPipeline and StableDiffusionImg2ImgPipeline
// (v0.21.4) on onnxruntime, step for step, so that a model, prompt, seed and scheduler give the
// image diffusers gives.
import { DiffusionError, badInput, invalidModel } from './errors.ts';
import type { EmbeddingRequest } from './embeddings.ts';
import { decodeInitImage, probeImage, vaeOutputToImage, type RgbImage } from './image.ts';
import { LIMITS } from './limits.ts';
import { checkAdapters, type LoraRequest } from './lora/adapt.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import type { OutputTensor } from './onnx-model.ts';
import { TorchGenerator, randomSeed } from './random.ts';
import { createScheduler, isSchedulerName, type SchedulerName } from './schedulers/index.ts';
import type { StableDiffusionModel } from './stable-diffusion.ts';

/** A request as a caller writes it: everything but the model and the prompt may be left out. */
export interface GenerateParams {
  prompt: string;
  negativePrompt?: string;
  width?: number;
  height?: number;
  steps?: number;
  guidanceScale?: number;
  guidanceRescale?: number;
  scheduler?: string;
  seed?: number;
  numImages?: number;
  eta?: number;
  /** An encoded PNG, JPEG or WebP image: makes the request img2img. */
  initImage?: Uint8Array;
  strength?: number;
  /** LoRA files to merge into the model (the caller resolves names to paths). */
  loras?: LoraRequest[];
  /** Textual-inversion embeddings to add, by trigger word. */
  embeddings?: EmbeddingRequest[];
}

/** A request with every default resolved, as it runs and as it is recorded. */
export interface GenerateRequest {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  guidanceRescale: number;
  scheduler: SchedulerName;
  seed: number;
  numImages: number;
  eta: number;
  initImage?: Uint8Array;
  strength?: number;
  loras?: LoraRequest[];
  embeddings?: EmbeddingRequest[];
}

export const DEFAULTS = {
  steps: 25,
  guidanceScale: 7.5,
  guidanceRescale: 0,
  scheduler: 'DPMPP_2M_KARRAS',
  numImages: 1,
  eta: 0,
  /** diffusers' img2img default. */
  strength: 0.8,
} as const satisfies Partial<GenerateRequest>;

export interface StepProgress {
  /** 1-based count of UNet calls done, out of totalSteps (second-order samplers make two per step). */
  step: number;
  totalSteps: number;
  timestep: number;
  /** The current latents of every image, batch × 4 × height/f × width/f (float32). */
  latents: Float32Array;
  latentShape: readonly [number, number, number, number];
}

export interface GenerateCallbacks {
  onStep?: (progress: StepProgress) => void | Promise<void>;
  signal?: AbortSignal;
}

export interface GeneratedImage {
  seed: number;
  image: RgbImage;
}

export interface GenerateResult {
  request: GenerateRequest;
  images: GeneratedImage[];
  /** What the request asked for that was left out (LoRA modules matching no layer, unusable embeddings). */
  warnings: string[];
  timings: { textEncodingMs: number; denoisingMs: number; vaeMs: number; totalMs: number };
}

/** Validates a request against the model and fills in defaults (img2img without a size takes the init image's). */
export async function resolveRequest(info: ModelFolderInfo, params: GenerateParams): Promise<GenerateRequest> {
  const factor = info.vaeScaleFactor;
  const check = (ok: boolean, message: string) => {
    if (!ok) throw badInput(message);
  };
  const isInt = Number.isInteger;
  check(typeof params.prompt === 'string', 'prompt must be a string');
  const negativePrompt = params.negativePrompt ?? '';
  for (const [name, text] of [['prompt', params.prompt], ['negativePrompt', negativePrompt]] as const) {
    check(text.length <= LIMITS.maxPromptChars, `${name} is ${text.length} characters; the limit is ${LIMITS.maxPromptChars}`);
  }
  const scheduler = params.scheduler ?? DEFAULTS.scheduler;
  check(isSchedulerName(scheduler), `unknown scheduler "${scheduler}"`);
  const steps = params.steps ?? DEFAULTS.steps;
  check(isInt(steps) && steps >= LIMITS.minSteps && steps <= LIMITS.maxSteps, `steps must be an integer from ${LIMITS.minSteps} to ${LIMITS.maxSteps}, got ${steps}`);
  const numImages = params.numImages ?? DEFAULTS.numImages;
  check(isInt(numImages) && numImages >= 1 && numImages <= LIMITS.maxImages, `numImages must be from 1 to ${LIMITS.maxImages}, got ${numImages}`);
  const guidanceScale = params.guidanceScale ?? DEFAULTS.guidanceScale;
  check(Number.isFinite(guidanceScale) && guidanceScale >= 0 && guidanceScale <= LIMITS.maxGuidanceScale, `guidanceScale must be from 0 to ${LIMITS.maxGuidanceScale}, got ${guidanceScale}`);
  const guidanceRescale = params.guidanceRescale ?? DEFAULTS.guidanceRescale;
  check(Number.isFinite(guidanceRescale) && guidanceRescale >= 0 && guidanceRescale <= 1, `guidanceRescale must be from 0 to 1, got ${guidanceRescale}`);
  const eta = params.eta ?? DEFAULTS.eta;
  check(Number.isFinite(eta) && eta >= 0, `eta must be 0 or more, got ${eta}`);
  const seed = params.seed ?? randomSeed();
  check(isInt(seed) && seed >= 0 && seed <= LIMITS.maxSeed, `seed must be an integer from 0 to ${LIMITS.maxSeed}, got ${seed}`);
  check(info.unetInChannels !== 9, `model ${info.id} is an inpainting model: it needs an image and a mask`);

  let { width, height } = params;
  let strength: number | undefined;
  if (params.initImage) {
    check(info.canImg2img, `model ${info.id} has no VAE encoder, so it cannot take an init image`);
    strength = params.strength ?? DEFAULTS.strength;
    check(Number.isFinite(strength) && strength > 0 && strength <= 1, `strength must be in (0, 1], got ${strength}`);
    check(Math.trunc(steps * strength) >= 1, `steps × strength must be at least 1 (${steps} × ${strength} leaves no step to run)`);
    if (width === undefined || height === undefined) {
      const source = await probeImage(params.initImage);
      width ??= source.width - (source.width % factor);
      height ??= source.height - (source.height % factor);
    }
  } else {
    check(params.strength === undefined, 'strength applies only with an init image');
    width ??= info.nativeWidth;
    height ??= info.nativeHeight;
  }
  for (const [name, side] of [['width', width], ['height', height]] as const) {
    check(isInt(side) && side >= Math.max(factor, LIMITS.minSide) && side <= LIMITS.maxSide, `${name} must be from ${Math.max(factor, LIMITS.minSide)} to ${LIMITS.maxSide} pixels, got ${side}`);
    check(side % factor === 0, `${name} ${side} is not a multiple of ${factor} (the model's VAE scale factor)`);
  }
  check(width * height <= LIMITS.maxPixels, `${width}×${height} is more than ${LIMITS.maxPixels} pixels`);
  const { loras = [], embeddings = [] } = params;
  checkAdapters(loras, embeddings);
  const request: GenerateRequest = { prompt: params.prompt, negativePrompt, width, height, steps, guidanceScale, guidanceRescale, scheduler: scheduler as SchedulerName, seed, numImages, eta, initImage: params.initImage, strength };
  if (loras.length) request.loras = loras;
  if (embeddings.length) request.embeddings = embeddings;
  return request;
}

/** Runs a resolved request; each image i draws all its noise from its own generator seeded with seed + i. */
export async function generate(model: StableDiffusionModel, request: GenerateRequest, callbacks: GenerateCallbacks = {}): Promise<GenerateResult> {
  const { signal, onStep } = callbacks;
  const started = performance.now();
  const throwIfAborted = () => {
    if (signal?.aborted) throw new DiffusionError('ABORTED', 'generation canceled');
  };
  throwIfAborted();
  const info = model.info;
  const n = request.numImages;
  const factor = info.vaeScaleFactor;
  const latentShape = [n, 4, request.height / factor, request.width / factor] as const;
  const perImage = latentShape[1] * latentShape[2] * latentShape[3];
  const generators = Array.from({ length: n }, (_, i) => new TorchGenerator(request.seed + i));
  const randn = () => concat(generators.map((g) => g.randn(perImage)));

  const doGuidance = request.guidanceScale > 1;
  const cond = await encodePrompt(model, request.prompt);
  const uncond = doGuidance ? await encodePrompt(model, request.negativePrompt) : undefined;
  // The UNet batch: [negative × n, prompt × n] with guidance, as diffusers concatenates them.
  const encoderHiddenStates = concat([...(uncond ? Array(n).fill(uncond.data) : []), ...Array(n).fill(cond.data)]);
  const textEncodingMs = performance.now() - started;

  const scheduler = createScheduler(request.scheduler, info.schedulerConfig, { eta: request.eta });
  scheduler.setTimesteps(request.steps);
  let timesteps = scheduler.timesteps;
  let latents: Float32Array;
  if (request.initImage) {
    const initTimestep = Math.min(Math.trunc(request.steps * request.strength!), request.steps);
    const tStart = Math.max(request.steps - initTimestep, 0);
    timesteps = timesteps.slice(tStart * scheduler.order);
    const initLatents = await encodeInitLatents(model, request, generators, perImage);
    latents = scheduler.addNoise(initLatents, randn(), timesteps[0]);
  } else {
    const sigma = scheduler.initNoiseSigma;
    latents = randn().map((v) => v * sigma);
  }

  const denoiseStart = performance.now();
  const timestepRank = model.unet.inputShape('timestep').length;
  const batch = doGuidance ? 2 * n : n;
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted();
    const t = timesteps[i];
    const modelInput = scheduler.scaleModelInput(doGuidance ? concat([latents, latents]) : latents, t);
    const { out_sample } = await model.unet.run({
      sample: { data: modelInput, dims: [batch, latentShape[1], latentShape[2], latentShape[3]] },
      timestep: timestepRank === 0 ? { data: Float32Array.of(t), dims: [] } : { data: new Float32Array(batch).fill(t), dims: [batch] },
      encoder_hidden_states: { data: encoderHiddenStates, dims: [batch, cond.dims[1], cond.dims[2]] },
    });
    if (!out_sample) throw invalidModel(`model ${info.id}: the UNet has no out_sample output`);
    const noisePred = doGuidance ? guide(out_sample.data, request.guidanceScale, request.guidanceRescale, n) : out_sample.data;
    latents = scheduler.step(noisePred, t, latents, randn);
    await onStep?.({ step: i + 1, totalSteps: timesteps.length, timestep: t, latents, latentShape });
  }
  throwIfAborted();
  const vaeStart = performance.now();
  const images: GeneratedImage[] = [];
  for (let i = 0; i < n; i++) {
    const scaled = latents.subarray(i * perImage, (i + 1) * perImage).map((v) => v / info.vaeScalingFactor);
    const { sample } = await model.vaeDecoder.run({ latent_sample: { data: scaled, dims: [1, ...latentShape.slice(1)] } });
    if (!sample) throw invalidModel(`model ${info.id}: the VAE decoder has no sample output`);
    images.push({ seed: request.seed + i, image: vaeOutputToImage(sample.data, request.width, request.height) });
  }
  const end = performance.now();
  return {
    request,
    images,
    warnings: [...model.warnings],
    timings: { textEncodingMs, denoisingMs: vaeStart - denoiseStart, vaeMs: end - vaeStart, totalMs: end - started },
  };
}

/** The text encoder's last hidden state for a prompt, padded or truncated to 77 tokens as diffusers does. */
async function encodePrompt(model: StableDiffusionModel, text: string): Promise<OutputTensor> {
  const ids = model.tokenizer.encodePadded(model.expandEmbeddingTokens(text));
  const out = (await model.textEncoder.run({ input_ids: { data: ids, dims: [1, ids.length] } }))[model.textEncoderOutput];
  const hidden = out.dims[2];
  const context = model.unet.inputShape('encoder_hidden_states')[2];
  if (typeof context === 'number' && context !== hidden) {
    throw invalidModel(`model ${model.info.id}: the text encoder gives ${hidden}-wide embeddings but the UNet expects ${context}`);
  }
  return out;
}

/**
 * The img2img start latents before noise: the init image through the VAE encoder, sampled from
 * the latent distribution with each image's generator, times the VAE scaling factor.
 */
async function encodeInitLatents(model: StableDiffusionModel, request: GenerateRequest, generators: TorchGenerator[], perImage: number): Promise<Float32Array> {
  const image = await decodeInitImage(request.initImage!, request.width, request.height);
  const output = model.vaeEncoderOutput!;
  const encoded = (await model.vaeEncoder!.run({ sample: { data: image.pixels, dims: [1, 3, image.height, image.width] } }))[output];
  const scaling = model.info.vaeScalingFactor;
  return concat(
    generators.map((generator) => {
      if (output === 'latent_sample') return encoded.data.map((v) => v * scaling);
      // latent_parameters: mean and log-variance stacked on the channel axis.
      const mean = encoded.data.subarray(0, perImage);
      const logvar = encoded.data.subarray(perImage, 2 * perImage);
      const noise = generator.randn(perImage);
      return mean.map((m, j) => (m + Math.exp(0.5 * Math.min(Math.max(logvar[j], -30), 20)) * noise[j]) * scaling);
    }),
  );
}

/** Classifier-free guidance, then diffusers' guidance rescale (arXiv:2305.08891 §3.4) when asked. */
function guide(prediction: Float32Array, scale: number, rescale: number, n: number): Float32Array {
  const half = prediction.length / 2;
  const uncond = prediction.subarray(0, half);
  const text = prediction.subarray(half);
  const guided = uncond.map((u, j) => u + scale * (text[j] - u));
  if (rescale <= 0) return guided;
  const size = half / n;
  for (let i = 0; i < n; i++) {
    const cfg = guided.subarray(i * size, (i + 1) * size);
    const factor = std(text.subarray(i * size, (i + 1) * size)) / std(cfg);
    for (let j = 0; j < size; j++) cfg[j] = rescale * cfg[j] * factor + (1 - rescale) * cfg[j];
  }
  return guided;
}

/** Sample standard deviation (torch.std's default, with Bessel's correction). */
function std(values: Float32Array): number {
  let mean = 0;
  for (const v of values) mean += v;
  mean /= values.length;
  let sum = 0;
  for (const v of values) sum += (v - mean) ** 2;
  return Math.sqrt(sum / (values.length - 1));
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
