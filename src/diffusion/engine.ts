// The engine a worker drives: model loading through the session cache, then the pipeline, with
// TAESD previews (taesd.ts) decoded between the steps that want one.
// `Engine` runs on the calling thread; `EngineThread` (engine-thread.ts) runs the same engine on
// a worker thread, because onnxruntime-node's session.run blocks the thread it is called on.
import { stat } from 'node:fs/promises';
import { freemem, totalmem } from 'node:os';
import { adaptersKey, normalizeAdapters } from './lora/adapt.ts';
import { ModelCache } from './model-cache.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import type { RuntimeOptions } from './onnx-model.ts';
import type { Submodel } from './providers.ts';
import { DiffusionError } from './errors.ts';
import type { RgbImage } from './image.ts';
import { generate, type GenerateCallbacks, type GenerateResult, type StepProgress } from './pipeline.ts';
import type { RgbPixels } from './preview.ts';
import type { GenerateRequest } from './request.ts';
import { SessionPool } from './session-pool.ts';
import { StableDiffusionModel } from './stable-diffusion.ts';
import { upscaleImage, type UpscaleRequest } from './upscale.ts';
import { OnnxUpscaler } from './upscalers.ts';
import { TaesdDecoder, TaesdPreviews, taesdWarning } from './taesd.ts';
import { DEFAULT_MARGIN, DEFAULT_TILE, DEFAULT_TILE_PIXELS } from './vae-tiles.ts';

export interface EngineOptions {
  runtime?: RuntimeOptions;
  /** Bytes of resident memory the loaded models may hold between requests, each counted as the RSS
   * growth of its load (model-cache.ts). 40 % of the machine's memory by default: on 24 GB that holds
   * SD 1.5 (its UNet session alone holds 3.5 GB after load, issue 11) and a LoRA set's merged UNet
   * and text encoder, whose VAE is the model's (session-pool.ts). */
  cacheBudgetBytes?: number;
  /** Bytes a UNet call's activations may take; larger batches run in sub-batches (sub-batch.ts). By
   * default three quarters of the memory free when a request starts, its model loaded (the rest for
   * the VAE, the scheduler's arrays and other processes); Infinity: whole batches. */
  batchMemoryBytes?: number;
  /** Images of more pixels than this go through the VAE in tiles (vae-tiles.ts); Infinity: never. */
  vaeTilePixels?: number;
}

/** Which steps want a preview, and what decodes them. */
export interface PreviewSettings {
  /** Every this many steps, and the last; 0 for none. */
  every: number;
  /** A TAESD decoder file (see taesd.ts); without one, previews are left to the linear approximation. */
  decoder?: string;
}

export interface EngineStepProgress extends StepProgress {
  /** Image 0 decoded by the TAESD decoder, at the steps that want a preview, while the decoder works. */
  previewRgb?: RgbPixels;
}

export interface RunOptions extends Omit<GenerateCallbacks, 'onStep'> {
  onStep?: (progress: EngineStepProgress) => void | Promise<void>;
  previews?: PreviewSettings;
}

export interface EngineResult extends GenerateResult {
  /** `previewMs`: time the TAESD decoder took, inside denoisingMs; absent without a decoder. */
  timings: GenerateResult['timings'] & { previewMs?: number };
}

/** A model (with a LoRA set, or without) the engine holds or is loading. */
export interface EngineModelStatus {
  modelId: string;
  /** Names of the LoRAs merged into it; empty for the model as it is. */
  loras: string[];
  state: 'LOADING' | 'READY' | 'FAILED';
  /** Why the load failed (state FAILED; kept until a load of the same model succeeds). */
  error?: string;
  /** Milliseconds the load took (READY). */
  loadMs?: number;
  /** The sessions, once READY: the providers each was created with and whether its graph came from the optimised-model cache. */
  submodels: { name: Submodel; providers: string[]; fromOptimizedCache: boolean }[];
}

/** A resolved upscale (upscale.ts) with its source image, encoded, and its model upscaler's file (none for `lanczos`). */
export interface UpscaleJob extends UpscaleRequest {
  image: Uint8Array;
  upscalerPath?: string;
}

export interface UpscaleOptions {
  signal?: AbortSignal;
  /** Told after each tile; the upscale stops (ABORTED) before the next once `signal` is aborted. */
  onTile?: (done: number, total: number) => void | Promise<void>;
}

export interface GenerationEngine {
  run(model: ModelFolderInfo, request: GenerateRequest, options?: RunOptions): Promise<EngineResult>;
  /** Loads the model as it is into the cache, for the first request on it not to wait. */
  preload(model: ModelFolderInfo): Promise<void>;
  /** The models loaded and loading now. */
  models(): EngineModelStatus[];
  upscale(job: UpscaleJob, options?: UpscaleOptions): Promise<RgbImage>;
  close(): Promise<void>;
}

/**
 * Resident bytes a model's load is taken to add per byte of its files, until its load measures it:
 * 2.2× for an SD-width fixture UNet (bench `memory`; onnxruntime prepacks weights beside its copy),
 * about 1× for SD 1.5's UNet (issue 11). The larger, so that room is made before a load, not after.
 */
const LOADED_PER_FILE_BYTE = 2.2;

/** Room for a few TAESD decoders (about 5 MB each in fp32). */
const DECODER_CACHE_BYTES = 64 * 2 ** 20;
/** Room for a Real-ESRGAN x4plus (about 67 MB in fp32) and another. */
const UPSCALER_CACHE_BYTES = 256 * 2 ** 20;

/** The cache key of a model as it is, with its separate VAE (another VAE: another pipeline). */
const modelKey = (model: ModelFolderInfo) => (model.vaeSha256 ? `${model.dir}\nvae:${model.vaeSha256}` : model.dir);

export class Engine implements GenerationEngine {
  private readonly cache: ModelCache<StableDiffusionModel>;
  private readonly decoders = new ModelCache<TaesdDecoder>(DECODER_CACHE_BYTES);
  private readonly upscalers = new ModelCache<OnnxUpscaler>(UPSCALER_CACHE_BYTES);
  /** By cache key: what models() reports, pruned to the keys the cache still holds. */
  private readonly statuses = new Map<string, EngineModelStatus>();
  /** Called when a load starts or ends, and after each run (evictions happen during runs). */
  onModelsChanged?: () => void;
  /** Sessions the cached pipelines share (a LoRA set's unchanged submodels are the bare model's). */
  private readonly sessions = new SessionPool();

  constructor(private readonly options: EngineOptions = {}) {
    this.cache = new ModelCache(options.cacheBudgetBytes ?? 0.4 * totalmem(), true);
  }

  async preload(model: ModelFolderInfo): Promise<void> {
    await this.cache.use(modelKey(model), LOADED_PER_FILE_BYTE * model.sizeBytes, () => this.load(modelKey(model), model), async () => {});
    this.onModelsChanged?.();
  }

  models(): EngineModelStatus[] {
    const held = new Set(this.cache.keys);
    for (const [key, status] of this.statuses) if (status.state !== 'FAILED' && !held.has(key)) this.statuses.delete(key);
    return [...this.statuses.values()];
  }

  /** Loads a pipeline for the cache, keeping its status for models(). */
  private async load(key: string, model: ModelFolderInfo, adapters?: ReturnType<typeof normalizeAdapters>): Promise<StableDiffusionModel> {
    const status: EngineModelStatus = { modelId: model.id, loras: adapters?.loras.map((l) => l.name) ?? [], state: 'LOADING', submodels: [] };
    this.statuses.set(key, status);
    this.onModelsChanged?.();
    const started = performance.now();
    try {
      const loaded = await StableDiffusionModel.load(model, this.options.runtime, adapters, this.sessions);
      status.state = 'READY';
      status.loadMs = Math.round(performance.now() - started);
      status.submodels = loaded.submodels.map(({ name, model: m }) => ({ name, providers: [...m.providers], fromOptimizedCache: m.loadedFrom === 'optimized-cache' }));
      return loaded;
    } catch (error) {
      status.state = 'FAILED';
      status.error = (error as Error).message;
      throw error;
    } finally {
      this.onModelsChanged?.();
    }
  }

  /** Runs a request on the model with its LoRAs and embeddings; each such set is loaded (merged) once and
   * cached apart from the bare model, so that switching between sets merges nothing again. */
  async run(model: ModelFolderInfo, request: GenerateRequest, { previews, onStep, ...callbacks }: RunOptions = {}): Promise<EngineResult> {
    const adapters = normalizeAdapters(request.loras, request.embeddings);
    const every = previews?.every ?? 0;
    const key = adapters ? `${modelKey(model)}\n${await adaptersKey(adapters)}` : modelKey(model);
    return this.cache.use(
      key,
      LOADED_PER_FILE_BYTE * model.sizeBytes,
      () => this.load(key, model, adapters),
      (loaded) =>
        this.withDecoder(onStep && every > 0 ? previews?.decoder : undefined, async (decoder, warnings) => {
          const taesd = new TaesdPreviews(decoder, every, warnings);
          const result = await this.withUpscaler(request.upscalerPath, (upscaler) => generate(loaded, request, {
            ...callbacks,
            upscaler,
            memoryBudgetBytes: this.options.batchMemoryBytes ?? 0.75 * freemem(),
            vaeTiling: { thresholdPixels: this.options.vaeTilePixels ?? DEFAULT_TILE_PIXELS, tile: DEFAULT_TILE, margin: DEFAULT_MARGIN },
            onStep: onStep && (async (progress) => onStep({ ...progress, previewRgb: await taesd.decode(progress) })),
          }));
          if (!decoder && !warnings.length) return result;
          return { ...result, warnings: [...result.warnings, ...warnings], timings: { ...result.timings, previewMs: taesd.ms } };
        }),
    ).finally(() => this.onModelsChanged?.());
  }

  /** Upscales an image with the upscaler model cached as hires requests use it. */
  async upscale({ image, upscalerPath, ...request }: UpscaleJob, { signal, onTile }: UpscaleOptions = {}): Promise<RgbImage> {
    const stopIfAborted = () => {
      if (signal?.aborted) throw new DiffusionError('ABORTED', 'upscale canceled');
    };
    stopIfAborted();
    return this.withUpscaler(upscalerPath, (upscaler) =>
      upscaleImage(image, request, upscaler, async (done, total) => {
        await onTile?.(done, total);
        stopIfAborted();
      }),
    );
  }

  async close(): Promise<void> {
    await this.cache.clear();
    await this.decoders.clear();
    await this.upscalers.clear();
  }

  /** Runs `fn` with the upscaler at `path`, cached as models are. */
  private async withUpscaler<R>(path: string | undefined, fn: (upscaler: OnnxUpscaler | undefined) => Promise<R>): Promise<R> {
    if (!path) return fn(undefined);
    return this.upscalers.use(path, (await stat(path)).size, () => OnnxUpscaler.load(path, this.options.runtime), fn);
  }

  /** Runs `fn` with the decoder at `path`, cached as models are; one that cannot be loaded leaves `fn` a warning instead. */
  private async withDecoder<R>(path: string | undefined, fn: (decoder: TaesdDecoder | undefined, warnings: string[]) => Promise<R>): Promise<R> {
    if (!path) return fn(undefined, []);
    let loaded = false;
    try {
      const bytes = (await stat(path)).size;
      return await this.decoders.use(path, bytes, () => TaesdDecoder.load(path, this.options.runtime), (decoder) => {
        loaded = true;
        return fn(decoder, []);
      });
    } catch (error) {
      if (loaded) throw error;
      return fn(undefined, [taesdWarning(path, error)]);
    }
  }
}
