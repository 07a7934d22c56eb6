// The denoising pipeline: diffusers' StableDiffusionPipeline, StableDiffusionImg2ImgPipeline and
// StableDiffusionInpaintPipeline (v0.21.4, the last through inpaint.ts's hooks) on onnxruntime, step
// for step, so that a model, prompt, seed and scheduler give the image diffusers gives; AUTOMATIC1111's
// hires fix as two such passes (hires.ts). It runs requests that request.ts has checked and completed.
import { DiffusionError, badInput, invalidModel } from './errors.ts';
import type { EmbeddingRequest } from './embeddings.ts';
import { decodeInitImage, dequantize, encodeImage, vaeOutputToImage, type DecodedInitImage, type RgbImage } from './image.ts';
import type { OnnxModel, TensorData } from './onnx-model.ts';
import type { OnnxUpscaler } from './upscalers.ts';
import { prepareInpaint, type InpaintRun } from './inpaint.ts';
import { BUILTIN_UPSCALERS, interpolateLatents, latentMode, type HiresRequest } from './hires.ts';
import { CHUNK_LENGTH, emptyChunk, isWeighted, type FindEmbedding, type PromptChunk, type PromptTokenizer } from './prompt/chunks.ts';
import { applyEmphasis } from './prompt/emphasis.ts';
import { preparePrompts, type PreparedConditioning, type PreparedPrompts } from './prompt/prepare.ts';
import { TorchGenerator } from './random.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import type { GenerateRequest } from './request.ts';
import { guidanceScaleEmbedding } from './guidance-embedding.ts';
import { createScheduler, type Scheduler } from './schedulers/index.ts';
import type { StableDiffusionModel } from './stable-diffusion.ts';
import type { ClipTokenizer } from './tokenizer.ts';
import { sdxlUnetInputs } from './sdxl.ts';
import { varyNoise } from './variation.ts';
import { runInSubBatches, unetSamplesPerCall } from './sub-batch.ts';
import { runTiled, type VaeTiling } from './vae-tiles.ts';

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
  /** The model upscaler a hires request names (loaded by the engine from `request.upscalerPath`). */
  upscaler?: OnnxUpscaler;
  /** Bytes a UNet call's activations may take: the batch runs in sub-batches that fit (sub-batch.ts). Unset: all at once. */
  memoryBudgetBytes?: number;
  /** When the VAE runs in tiles (vae-tiles.ts). Unset: whole images. */
  vaeTiling?: VaeTiling;
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

/** Runs a resolved request; each image i draws all its noise from its own generator seeded with seed + i.
 * With `hires`, a second img2img pass at the hires size starts from the upscaled first pass, its
 * generators seeded afresh with seed + i; progress counts the UNet calls of both passes. */
export async function generate(model: StableDiffusionModel, request: GenerateRequest, callbacks: GenerateCallbacks = {}): Promise<GenerateResult> {
  const started = performance.now();
  throwIfAborted(callbacks.signal);
  const { first, hires, second } = planPasses(model.info, request);
  const upscaler = request.hires?.upscaler;
  if (upscaler && !Object.hasOwn(BUILTIN_UPSCALERS, upscaler) && !callbacks.upscaler) throw badInput(`hires: upscaler ${upscaler} has no model file here`);
  const progress = { callbacks, done: 0, total: first.timesteps.length + (second?.timesteps.length ?? 0) };
  const timings = { textEncodingMs: 0, denoisingMs: 0, vaeMs: 0 };
  // Inpainting prepares its own start from the init image (see denoise).
  const init = request.initImage && !request.inpaint ? { images: [await decodeInitImage(request.initImage, request.width, request.height)] } : undefined;
  let pass = await denoise(model, request, first, init, progress, timings);
  if (upscaler && hires && second) {
    const mode = latentMode(upscaler);
    const factor = model.info.vaeScaleFactor;
    let upscaled: PassInit;
    if (mode) {
      upscaled = { latents: interpolateLatents(pass.latents, pass.shape, hires.height / factor, hires.width / factor, mode) };
    } else {
      // Through the 8-bit image and img2img's own init-image path, so that the result is a txt2img
      // followed by an img2img of its image. A model upscaler enlarges the 8-bit image first, then
      // Lanczos gives the hires size, as AUTOMATIC1111 does.
      const images = await decodeLatents(model, request, pass, timings, callbacks.vaeTiling);
      upscaled = { images: [] };
      for (const { image } of images) {
        const enlarged = callbacks.upscaler ? await callbacks.upscaler.upscale(dequantize(image), undefined, () => throwIfAborted(callbacks.signal)) : image;
        upscaled.images.push(await decodeInitImage(await encodeImage(enlarged, 'png'), hires.width, hires.height));
      }
    }
    pass = await denoise(model, hires, second, upscaled, progress, timings);
  }
  const images = await decodeLatents(model, hires ?? request, pass, timings, callbacks.vaeTiling);
  const warnings = [
    ...model.warnings,
    ...(pass.inpaint?.warnings ?? []),
    ...(request.clipSkip > 1 && (model.info.family === 'SD2' || model.info.family === 'SDXL')
      ? [`clipSkip ${request.clipSkip} was ignored: ${model.info.family === 'SD2' ? 'SD 2.x' : 'SDXL'} models take their prompt from the penultimate layer already, and AUTOMATIC1111 ignores Clip skip for them`]
      : []),
  ];
  return { request, images, warnings, timings: { ...timings, totalMs: performance.now() - started } };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new DiffusionError('ABORTED', 'generation canceled');
}

/** The second pass of a hires request: an img2img at the hires size, steps and strength. */
function hiresPassRequest(request: GenerateRequest, hires: HiresRequest): GenerateRequest {
  return { ...request, width: hires.width, height: hires.height, steps: hires.steps, strength: hires.strength, initImage: undefined, hires: undefined };
}

interface PassPlan {
  scheduler: Scheduler;
  /** The timesteps the pass runs: all of them, or img2img's last strength × steps. */
  timesteps: readonly number[];
}

/** The passes of a request: the first, and the hires pass's request and plan when it has one. */
function planPasses(info: ModelFolderInfo, request: GenerateRequest): { first: PassPlan; hires?: GenerateRequest; second?: PassPlan } {
  const hires = request.hires && hiresPassRequest(request, request.hires);
  return { first: planPass(info, request), hires, second: hires && planPass(info, hires) };
}

/**
 * How many UNet calls a request makes, its `totalSteps`, known before it runs: `steps`, except
 * twice that for second-order samplers, img2img's strength share, fewer where DPM-Solver and UniPC
 * schedules round timesteps to repeats (run once, as diffusers does), and the hires pass's added.
 */
export function countUnetCalls(info: ModelFolderInfo, request: GenerateRequest): number {
  const { first, second } = planPasses(info, request);
  return first.timesteps.length + (second?.timesteps.length ?? 0);
}

/** A pass's scheduler and timesteps; a request with a strength is img2img. */
function planPass(info: ModelFolderInfo, request: GenerateRequest): PassPlan {
  const scheduler = createScheduler(request.scheduler, info.schedulerConfig, { eta: request.eta, scheduleType: request.scheduleType });
  scheduler.setTimesteps(request.steps);
  if (request.strength === undefined) return { scheduler, timesteps: scheduler.timesteps };
  const initTimestep = Math.min(Math.trunc(request.steps * request.strength), request.steps);
  const tStart = Math.max(request.steps - initTimestep, 0);
  return { scheduler, timesteps: scheduler.timesteps.slice(tStart * scheduler.order) };
}

/** What an img2img pass starts from: init images (one for the batch or one per image) to encode, or latents. */
type PassInit = { images: DecodedInitImage[] } | { latents: Float32Array };

interface PassResult {
  latents: Float32Array;
  shape: readonly [number, number, number, number];
  /** An inpainting pass's hooks, whose `finish` completes each decoded image. */
  inpaint?: InpaintRun;
}

/** One denoising pass: txt2img without `init`, else img2img from it; inpainting (`request.inpaint`) from the init image. */
async function denoise(
  model: StableDiffusionModel,
  request: GenerateRequest,
  { scheduler, timesteps }: PassPlan,
  init: PassInit | undefined,
  progress: { callbacks: GenerateCallbacks; done: number; total: number },
  timings: { textEncodingMs: number; denoisingMs: number },
): Promise<PassResult> {
  const { signal, onStep } = progress.callbacks;
  const started = performance.now();
  const info = model.info;
  const n = request.numImages;
  const factor = info.vaeScaleFactor;
  const latentShape = [n, 4, request.height / factor, request.width / factor] as const;
  const perImage = latentShape[1] * latentShape[2] * latentShape[3];
  const generators = Array.from({ length: n }, (_, i) => new TorchGenerator(request.seed + i));
  const randn = () => concat(generators.map((g) => g.randn(perImage)));
  const { variationSeed, variationStrength } = request;
  const variation = variationSeed !== undefined && variationStrength ? { seed: variationSeed, strength: variationStrength } : undefined;

  // An LCM-distilled UNet takes the guidance as an input instead (see guidance-embedding.ts).
  const timeCondDim = model.unet.hasInput('timestep_cond') ? model.unet.inputShape('timestep_cond')[1] : undefined;
  if (timeCondDim !== undefined && typeof timeCondDim !== 'number') throw invalidModel(`model ${info.id}: the UNet's timestep_cond input has no fixed width`);
  const doGuidance = request.guidanceScale > 1 && timeCondDim === undefined;
  // A1111 schedules prompt edits over its model calls: twice the steps for second-order samplers.
  const conditioning = await encodeConditioning(model, request, request.steps * scheduler.order, doGuidance);
  const denoiseStart = performance.now();
  timings.textEncodingMs += denoiseStart - started;

  let latents: Float32Array;
  let inpaint: InpaintRun | undefined;
  if (request.inpaint) {
    const encode = (pixels: Float32Array, from: TorchGenerator[]) => encodeLatents(model, [{ pixels, width: request.width, height: request.height }], from, perImage, progress.callbacks.vaeTiling);
    const { seed, width, height, strength } = request;
    const initialNoise = variation ? () => varyNoise(randn(), variation, latentShape) : randn;
    inpaint = await prepareInpaint(model, request.inpaint, request.initImage!, { generators, initialNoise, scheduler, timesteps, strength: strength!, seed, width, height, encode });
    latents = inpaint.latents;
  } else if (init) {
    const initLatents = 'latents' in init ? init.latents : await encodeLatents(model, init.images, generators, perImage, progress.callbacks.vaeTiling);
    latents = scheduler.addNoise(initLatents, variation ? varyNoise(randn(), variation, latentShape) : randn(), timesteps[0]);
  } else {
    const sigma = scheduler.initNoiseSigma;
    // diffusers takes varied noise as `latents`: the generators draw none of it, so an ancestral
    // sampler's first step noise is their first draw (fresh generators give the seeds' noise here).
    const noise = variation ? varyNoise(concat(generators.map((_, i) => new TorchGenerator(request.seed + i).randn(perImage))), variation, latentShape) : randn();
    latents = noise.map((v) => v * sigma);
  }

  const timestepRank = model.unet.inputShape('timestep').length;
  const batch = doGuidance ? 2 * n : n;
  const timestepCond = timeCondDim === undefined ? undefined : { data: guidanceScaleEmbedding(request.guidanceScale, timeCondDim, batch), dims: [batch, timeCondDim] };
  const perCall = unetSamplesPerCall(batch, latentShape[2], latentShape[3], progress.callbacks.memoryBudgetBytes, info.attentionLevels);
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted(signal);
    const t = timesteps[i];
    const scaled = scheduler.scaleModelInput(doGuidance ? concat([latents, latents]) : latents, t);
    const { out_sample } = await runInSubBatches(model.unet, {
      sample: { data: inpaint ? inpaint.unetInput(scaled, batch) : scaled, dims: [batch, inpaint?.channels ?? latentShape[1], latentShape[2], latentShape[3]] },
      timestep: timestepRank === 0 ? { data: Float32Array.of(t), dims: [] } : { data: new Float32Array(batch).fill(t), dims: [batch] },
      encoder_hidden_states: { data: conditioning.at(i), dims: [batch, conditioning.sequenceLength, conditioning.hiddenSize] },
      ...(timestepCond && { timestep_cond: timestepCond }),
      ...(info.sdxl && sdxlUnetInputs(info.sdxl, request, conditioning.pooledAt!(i), n, doGuidance)),
    }, batch, perCall);
    if (!out_sample) throw invalidModel(`model ${info.id}: the UNet has no out_sample output`);
    const noisePred = doGuidance ? guide(out_sample.data, request.guidanceScale, request.guidanceRescale, n) : out_sample.data;
    latents = scheduler.step(noisePred, t, latents, randn);
    if (inpaint) latents = inpaint.afterStep(latents, i);
    await onStep?.({ step: ++progress.done, totalSteps: progress.total, timestep: t, latents, latentShape });
  }
  throwIfAborted(signal);
  timings.denoisingMs += performance.now() - denoiseStart;
  return { latents, shape: latentShape, inpaint };
}

/** Each image's latents through the VAE decoder. */
async function decodeLatents(model: StableDiffusionModel, request: GenerateRequest, { latents, shape, inpaint }: PassResult, timings: { vaeMs: number }, tiling: VaeTiling | undefined): Promise<GeneratedImage[]> {
  const started = performance.now();
  const { info } = model;
  const perImage = shape[1] * shape[2] * shape[3];
  const images: GeneratedImage[] = [];
  for (let i = 0; i < shape[0]; i++) {
    const scaled = latents.subarray(i * perImage, (i + 1) * perImage).map((v) => v / info.vaeScalingFactor);
    const sample = await runVae(model.vaeDecoder, { input: 'latent_sample', output: 'sample' }, { data: scaled, dims: [1, ...shape.slice(1)] }, { inCell: 1, outCell: info.vaeScaleFactor }, tiling);
    const image = vaeOutputToImage(sample, request.width, request.height);
    images.push({ seed: request.seed + i, image: inpaint ? await inpaint.finish(image) : image });
  }
  timings.vaeMs += performance.now() - started;
  return images;
}

/**
 * One image [1, C, H, W] through a VAE half, in tiles when the image has more pixels than the tiling
 * threshold; `cells` is a latent cell's side in the input's and the output's pixels (decoder: 1 and
 * the scale factor; encoder: the reverse).
 */
async function runVae(
  vae: OnnxModel,
  names: { input: string; output: string },
  image: TensorData & { data: Float32Array },
  cells: { inCell: number; outCell: number },
  tiling: VaeTiling | undefined,
): Promise<Float32Array> {
  const run = async (tile: TensorData) => {
    const result = (await vae.run({ [names.input]: tile }))[names.output];
    if (!result) throw invalidModel(`${vae.path}: the VAE has no ${names.output} output`);
    return result;
  };
  const side = Math.max(cells.inCell, cells.outCell);
  const pixels = (image.dims[2] / cells.inCell) * (image.dims[3] / cells.inCell) * side * side;
  if (!tiling || pixels <= tiling.thresholdPixels) return (await run(image)).data;
  return (await runTiled(run, image, cells, tiling)).data;
}

/** Texts × chunks of conditioning a request may hold (about 120 MB of float32 with SD 1.x's 768-wide
 * embeddings): a bound on what prompt editing and alternation over a very long prompt can ask for. */
export const MAX_CONDITIONING_CHUNKS = 512;

/** The UNet's encoder_hidden_states (and SDXL's pooled text_embeds) for each UNet call of a generation. */
export interface Conditioning {
  /** Tokens per text: 77 × the chunk count. */
  sequenceLength: number;
  hiddenSize: number;
  /** The encoded texts of each side, [sequenceLength × hiddenSize] each; `negative` is empty without guidance. */
  positive: Float32Array[];
  negative: Float32Array[];
  /** The batch of UNet call `i` (0-based): [negative × numImages, prompt × numImages], or the prompt × numImages without guidance. */
  at(i: number): Float32Array;
  /** SDXL: the pooled embeddings (text_embeds) of UNet call `i`, batched as `at(i)`. */
  pooledAt?(i: number): { data: Float32Array; size: number };
}

/** One text encoder's share of the conditioning: its prompts prepared with its tokenizer, and how a chunk is encoded. */
interface EncoderPass {
  prepared: PreparedPrompts;
  /** Its tokenizer's empty chunk, which pads its texts to another encoder's chunk count. */
  empty: PromptChunk;
  /** Hidden states [77 × width] of a chunk's ids, and the pooled embedding where this encoder gives SDXL's. */
  encode(ids: Int32Array): Promise<{ hidden: { data: Float32Array; dims: readonly number[] }; pooled?: Float32Array }>;
}

/**
 * Encodes the prompt and negative prompt as the request's syntax says. A1111: LoRA tags left out,
 * one text per prompt edit, 75-token chunks encoded one by one and concatenated, emphasis applied
 * where weights differ from 1; PLAIN: diffusers' single truncated chunk. Each distinct chunk runs
 * through the text encoder once; a plain prompt of at most 75 tokens is diffusers' encoding exactly.
 * `planSteps` is what prompt editing counts in; call `i` takes the texts of schedule step `i`, also
 * in img2img, where sampling starts part-way (as A1111, which counts from 0 there too).
 *
 * SDXL: each text encoder reads its own prompt (`prompt2` for the second, else the prompt) with its
 * own tokenizer, chunked and weighted on its own as AUTOMATIC1111's two embedders do; their states
 * are concatenated per token, and the pooled embedding is the second encoder's of the first chunk.
 * A refiner's text_encoder_2 alone gives both.
 */
export async function encodeConditioning(model: StableDiffusionModel, request: GenerateRequest, planSteps: number, doGuidance: boolean): Promise<Conditioning> {
  const syntax = request.promptSyntax;
  const prepare = (tokenizer: ClipTokenizer, prompt: string, negativePrompt: string): Omit<EncoderPass, 'encode'> => {
    const promptTokenizer: PromptTokenizer = {
      // Multi-vector embeddings are written as all their tokens before tokenizing (diffusers' convention).
      tokenize: (text) => tokenizer.tokenize(model.expandEmbeddingTokens(text)),
      bosTokenId: tokenizer.bosTokenId,
      eosTokenId: tokenizer.eosTokenId,
      padTokenId: tokenizer.padTokenId,
    };
    const prepared = preparePrompts({
      prompt,
      // Without guidance the negative prompt is not used: it must not pad the prompt to its length.
      negativePrompt: doGuidance ? negativePrompt : '',
      steps: planSteps,
      syntax,
      tokenizer: promptTokenizer,
      findEmbedding: syntax === 'A1111' ? embeddingFinder(promptTokenizer, request.embeddings ?? []) : undefined,
    });
    return { prepared, empty: emptyChunk(promptTokenizer) };
  };
  let passes: EncoderPass[];
  const { sdxl } = model.info;
  if (sdxl && model.second) {
    const second = model.second;
    passes = [
      { ...prepare(model.tokenizer, request.prompt, request.negativePrompt), encode: (ids) => model.encodeTokensXL(0, ids) },
      { ...prepare(second.tokenizer, request.prompt2 || request.prompt, request.negativePrompt2 || request.negativePrompt), encode: (ids) => model.encodeTokensXL(1, ids) },
    ];
  } else if (sdxl) {
    // A refiner's text_encoder_2 reads the prompt, as in diffusers, whose prompts zip with its one encoder.
    passes = [{ ...prepare(model.tokenizer, request.prompt, request.negativePrompt), encode: (ids) => model.encodeTokensXL(0, ids) }];
  } else {
    // AUTOMATIC1111 leaves SD 2.x's text encoder as it is: it already ends at the penultimate layer.
    const clipSkip = model.info.family === 'SD2' ? 1 : request.clipSkip;
    passes = [{ ...prepare(model.tokenizer, request.prompt, request.negativePrompt), encode: async (ids) => ({ hidden: await model.encodeTokens(ids, clipSkip) }) }];
  }
  const chunkCount = Math.max(...passes.map((pass) => pass.prepared.chunkCount));
  const sideCount = doGuidance ? 2 : 1;
  const chunkTexts = passes.reduce((sum, { prepared }) => sum + [prepared.positive, prepared.negative].slice(0, sideCount).reduce((n, side) => n + side.texts.length, 0), 0) * chunkCount;
  if (chunkTexts > MAX_CONDITIONING_CHUNKS) {
    throw badInput(`the prompts need ${chunkTexts} encoded chunks (texts of their edits × 75-token chunks); the limit is ${MAX_CONDITIONING_CHUNKS}: shorten them or use fewer edits`);
  }
  const sequenceLength = chunkCount * (CHUNK_LENGTH + 2);
  const unetSequence = model.unet.inputShape('encoder_hidden_states')[1];
  if (typeof unetSequence === 'number' && unetSequence !== sequenceLength) {
    throw badInput(`model ${model.info.id}'s UNet takes exactly ${unetSequence} tokens, and this prompt needs ${chunkCount} chunks of 77: shorten it to 75 tokens or use promptSyntax PLAIN`);
  }

  /** Each side's texts through one encoder: [sequenceLength × width] each, and the pooled embedding of each. */
  const encodePass = async ({ prepared, empty, encode }: EncoderPass) => {
    const encoded = new Map<string, { hidden: Float32Array; pooled?: Float32Array }>();
    let width = 0;
    const encodeChunk = async (chunk: PromptChunk) => {
      const key = chunk.tokenIds.join(',');
      let out = encoded.get(key);
      if (!out) {
        const { hidden, pooled } = await encode(Int32Array.from(chunk.tokenIds));
        width = hidden.dims[2];
        out = { hidden: hidden.data, pooled };
        encoded.set(key, out);
      }
      return out;
    };
    // A prompt shorter than another encoder's is padded with empty chunks, as A1111 pads within one.
    const encodeSide = async (side: PreparedConditioning) => {
      const parts = side.texts.map((): Float32Array[] => []);
      const pooled: (Float32Array | undefined)[] = [];
      for (let c = 0; c < chunkCount; c++) {
        const chunks = side.texts.map((text) => text.chunks[c] ?? empty);
        const hidden: Float32Array[] = [];
        for (const [t, chunk] of chunks.entries()) {
          const out = await encodeChunk(chunk);
          hidden.push(out.hidden);
          if (c === 0) pooled[t] = out.pooled;
        }
        if (chunks.some(isWeighted)) {
          // A1111 encodes a prompt's scheduled texts as one batch, so the emphasis mean spans all of them.
          const emphasized = applyEmphasis(concat(hidden), chunks.flatMap((chunk) => chunk.weights), width);
          hidden.forEach((h, t) => (hidden[t] = emphasized.subarray(t * h.length, (t + 1) * h.length)));
        }
        hidden.forEach((h, t) => parts[t].push(h));
      }
      return { hidden: parts.map(concat), pooled, textIndexAtStep: side.textIndexAtStep };
    };
    const positive = await encodeSide(prepared.positive);
    const negative = doGuidance ? await encodeSide(prepared.negative) : undefined;
    return { width, positive, negative };
  };
  const encodedPasses: Awaited<ReturnType<typeof encodePass>>[] = [];
  for (const pass of passes) encodedPasses.push(await encodePass(pass));
  const hiddenSize = encodedPasses.reduce((sum, p) => sum + p.width, 0);
  const context = model.unet.inputShape('encoder_hidden_states')[2];
  if (typeof context === 'number' && context !== hiddenSize) {
    throw invalidModel(`model ${model.info.id}: the text encoder gives ${hiddenSize}-wide embeddings but the UNet expects ${context}`);
  }
  // diffusers' force_zeros_for_empty_prompt (A1111 zeroes an empty negative prompt on SDXL too).
  const zeroNegative = sdxl?.forceZerosForEmptyPrompt === true && request.negativePrompt === '' && !request.negativePrompt2;
  const side = (which: 'positive' | 'negative') => joinEncoders(encodedPasses.map((p) => p[which]!), sequenceLength, planSteps, which === 'negative' && zeroNegative);
  const positive = side('positive');
  const negative = doGuidance ? side('negative') : undefined;

  const n = request.numImages;
  const cached = (build: (p: number, q: number) => Float32Array) => {
    let built: { key: string; batch: Float32Array } | undefined;
    return (i: number) => {
      const p = positive.indexAtStep(i);
      const q = negative ? negative.indexAtStep(i) : -1;
      const key = `${p}:${q}`;
      if (built?.key !== key) built = { key, batch: build(p, q) };
      return built.batch;
    };
  };
  const repeat = (pick: (side: JoinedSide, index: number) => Float32Array) => (p: number, q: number) =>
    concat([...(negative ? Array<Float32Array>(n).fill(pick(negative, q)) : []), ...Array<Float32Array>(n).fill(pick(positive, p))]);
  const conditioning: Conditioning = {
    sequenceLength,
    hiddenSize,
    positive: positive.hidden,
    negative: negative?.hidden ?? [],
    at: cached(repeat((s, k) => s.hidden[k])),
  };
  if (sdxl) {
    const pooledAt = cached(repeat((s, k) => s.pooled[k]));
    conditioning.pooledAt = (i) => ({ data: pooledAt(i), size: positive.pooled[0].length });
  }
  return conditioning;
}

/** One side's encoded texts through one encoder, by the text indexes of its schedule. */
interface EncodedSide {
  hidden: Float32Array[];
  pooled: (Float32Array | undefined)[];
  textIndexAtStep: number[];
}

/** One side's conditioning over all encoders: the distinct combinations of their texts, and which one each step takes. */
interface JoinedSide {
  hidden: Float32Array[];
  pooled: Float32Array[];
  indexAtStep(i: number): number;
}

/**
 * Joins the encoders' states of one side token by token ([tokens × (width₁ + width₂)], SDXL's
 * concatenation on the last axis) for each combination of their texts that a step uses (prompt
 * editing may differ between `prompt` and `prompt2`); `zero` gives diffusers' zeros instead.
 */
function joinEncoders(sides: EncodedSide[], sequenceLength: number, planSteps: number, zero: boolean): JoinedSide {
  const last = (indexes: number[], i: number) => indexes[Math.min(i, indexes.length - 1)];
  if (sides.length === 1 && !zero) {
    const [only] = sides;
    return { hidden: only.hidden, pooled: only.pooled.filter((p) => p !== undefined), indexAtStep: (i) => last(only.textIndexAtStep, i) };
  }
  const widths = sides.map((side) => side.hidden[0].length / sequenceLength);
  const width = widths.reduce((a, b) => a + b, 0);
  const pooledOf = (texts: number[]) => sides.map((side, e) => side.pooled[texts[e]]).find((p) => p !== undefined)!;
  if (zero) {
    return { hidden: [new Float32Array(sequenceLength * width)], pooled: [new Float32Array(pooledOf(sides.map(() => 0)).length)], indexAtStep: () => 0 };
  }
  const combos = new Map<string, number>();
  const atStep: number[] = [];
  const joined: JoinedSide = { hidden: [], pooled: [], indexAtStep: (i) => atStep[Math.min(i, atStep.length - 1)] };
  for (let i = 0; i < Math.max(planSteps, 1); i++) {
    const texts = sides.map((side) => last(side.textIndexAtStep, i));
    const key = texts.join(':');
    let index = combos.get(key);
    if (index === undefined) {
      index = joined.hidden.length;
      combos.set(key, index);
      const out = new Float32Array(sequenceLength * width);
      let offset = 0;
      sides.forEach((side, e) => {
        const states = side.hidden[texts[e]];
        const w = widths[e];
        for (let r = 0; r < sequenceLength; r++) out.set(states.subarray(r * w, (r + 1) * w), r * width + offset);
        offset += w;
      });
      joined.hidden.push(out);
      joined.pooled.push(pooledOf(texts));
    }
    atStep.push(index);
  }
  return joined;
}

/** Where the request's embeddings stand in a chunk's tokens, so that an embedding's vectors stay in one chunk (A1111). */
function embeddingFinder(tokenizer: PromptTokenizer, embeddings: readonly EmbeddingRequest[]): FindEmbedding | undefined {
  const known = embeddings.map((e) => ({ name: e.token, ids: tokenizer.tokenize(e.token) })).filter((e) => e.ids.length > 0);
  if (known.length === 0) return undefined;
  return (tokens, position) => {
    const found = known.find((e) => e.ids.every((id, k) => tokens[position + k] === id));
    return found && { name: found.name, tokenIds: found.ids, tokenLength: found.ids.length };
  };
}

/**
 * Latents of images (1 × 3 × height × width in [-1, 1] each): image i (or the only one) through the
 * VAE encoder, sampled from the latent distribution with generator i, times the VAE scaling factor.
 */
async function encodeLatents(
  model: StableDiffusionModel,
  images: Pick<DecodedInitImage, 'pixels' | 'width' | 'height'>[],
  generators: TorchGenerator[],
  perImage: number,
  tiling: VaeTiling | undefined,
): Promise<Float32Array> {
  const output = model.vaeEncoderOutput!;
  const scaling = model.info.vaeScalingFactor;
  const encoded = new Map<(typeof images)[number], Float32Array>();
  const encode = async (image: (typeof images)[number]) => {
    let data = encoded.get(image);
    if (!data) {
      data = await runVae(model.vaeEncoder!, { input: 'sample', output }, { data: image.pixels, dims: [1, 3, image.height, image.width] }, { inCell: model.info.vaeScaleFactor, outCell: 1 }, tiling);
      encoded.set(image, data);
    }
    return data;
  };
  const latents: Float32Array[] = [];
  for (const [i, generator] of generators.entries()) {
    const data = await encode(images[Math.min(i, images.length - 1)]);
    if (output === 'latent_sample') {
      latents.push(data.map((v) => v * scaling));
      continue;
    }
    // latent_parameters: mean and log-variance stacked on the channel axis.
    const mean = data.subarray(0, perImage);
    const logvar = data.subarray(perImage, 2 * perImage);
    const noise = generator.randn(perImage);
    latents.push(mean.map((m, j) => (m + Math.exp(0.5 * Math.min(Math.max(logvar[j], -30), 20)) * noise[j]) * scaling));
  }
  return concat(latents);
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
