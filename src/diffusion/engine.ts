// The engine a worker drives: model loading through the session cache, then the pipeline.
// `Engine` runs on the calling thread; `EngineThread` (engine-thread.ts) runs the same engine on
// a worker thread, because onnxruntime-node's session.run blocks the thread it is called on.
import { totalmem } from 'node:os';
import { adaptersKey, normalizeAdapters } from './lora/adapt.ts';
import { ModelCache } from './model-cache.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import type { RuntimeOptions } from './onnx-model.ts';
import { generate, type GenerateCallbacks, type GenerateRequest, type GenerateResult } from './pipeline.ts';
import { StableDiffusionModel } from './stable-diffusion.ts';

export interface EngineOptions {
  runtime?: RuntimeOptions;
  /** Bytes of model files kept loaded between requests; half the machine's memory by default. */
  cacheBudgetBytes?: number;
}

export interface GenerationEngine {
  run(model: ModelFolderInfo, request: GenerateRequest, callbacks?: GenerateCallbacks): Promise<GenerateResult>;
  close(): Promise<void>;
}

export class Engine implements GenerationEngine {
  private readonly cache: ModelCache<StableDiffusionModel>;

  constructor(private readonly options: EngineOptions = {}) {
    this.cache = new ModelCache(options.cacheBudgetBytes ?? totalmem() / 2);
  }

  /** Runs a request on the model with its LoRAs and embeddings; each such set is loaded (merged) once and
   * cached apart from the bare model, so that switching between sets merges nothing again. */
  async run(model: ModelFolderInfo, request: GenerateRequest, callbacks: GenerateCallbacks = {}): Promise<GenerateResult> {
    const adapters = normalizeAdapters(request.loras, request.embeddings);
    return this.cache.use(
      adapters ? `${model.dir}\n${await adaptersKey(adapters)}` : model.dir,
      model.sizeBytes,
      () => StableDiffusionModel.load(model, this.options.runtime, adapters),
      (loaded) => generate(loaded, request, callbacks),
    );
  }

  async close(): Promise<void> {
    await this.cache.clear();
  }
}
