// One ONNX submodel (text encoder, UNet, VAE half) on onnxruntime-node. The engine computes in
// float32 and int32; this adapter converts to whatever element types the graph declares
// (float16 for fp16 exports, int64 timesteps or token ids) so the pipeline never branches on them.
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { invalidModel } from './errors.ts';
import { float16ToFloat32, float32ToFloat16 } from './onnx/float16.ts';
import { OptimizedModelCache, SAVE_CONFIG } from './optimized-cache.ts';
import type { Placement } from './providers.ts';

export interface RuntimeOptions {
  /** onnxruntime execution providers in order of preference; CPU by default. */
  executionProviders?: readonly string[];
  /** Providers per submodel of a pipeline, over `executionProviders` (providers.ts). */
  placement?: Placement;
  /** Threads for one operator; defaults to the machine's available parallelism. */
  intraOpNumThreads?: number;
  /** Where optimised graphs are kept (optimized-cache.ts); unset: every load optimises. */
  optimizedCacheDir?: string;
  /** onnxruntime's memory pattern (one block planned for all of a run's activations); on by default. */
  memPattern?: boolean;
}

/** Where a session's graph came from: the model as given, or the optimised-model cache. */
export type LoadedFrom = 'source' | 'optimized-cache';

export interface TensorData {
  data: Float32Array | Int32Array;
  dims: readonly number[];
}

export interface OutputTensor {
  data: Float32Array;
  dims: readonly number[];
}

/** A model held in memory, as edited for LoRAs and embeddings, rather than read from its file. */
export interface ModelBuffer {
  /** The serialised ModelProto. */
  bytes: Uint8Array;
  /** The model file's folder: external data locations in `bytes` are read from there… */
  dir: string;
  /** …unless given here, by location: then every external tensor must be (onnxruntime reads from disk or from memory, not both). */
  externalData: { path: string; data: Uint8Array }[];
}

/**
 * Session options, chosen deliberately: every graph optimisation (fusions matter most for the
 * UNet's attention and group norms), all cores for one operator and sequential execution (an SD
 * graph is one long chain, so parallel execution only adds scheduling), and onnxruntime's memory
 * arena so the same shapes run after run reuse their buffers.
 */
export function sessionOptions(options: RuntimeOptions = {}): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [...(options.executionProviders ?? ['cpu'])],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: options.intraOpNumThreads ?? availableParallelism(),
    interOpNumThreads: 1,
    enableCpuMemArena: true,
    enableMemPattern: options.memPattern ?? true,
    logSeverityLevel: 3,
  };
}

export class OnnxModel {
  private readonly inputs: Map<string, ort.InferenceSession.TensorValueMetadata>;

  private constructor(
    readonly path: string,
    private readonly session: ort.InferenceSession,
    /** The providers the session was created with (onnxruntime assigns each node to the first that runs it). */
    readonly providers: readonly string[],
    readonly loadedFrom: LoadedFrom,
  ) {
    this.inputs = new Map(
      session.inputMetadata.filter((m): m is ort.InferenceSession.TensorValueMetadata => m.isTensor).map((m) => [m.name, m]),
    );
  }

  /** Loads a model file (its external data files are found beside it). Blocks the calling thread while onnxruntime builds the session. */
  static async load(path: string, options: RuntimeOptions = {}): Promise<OnnxModel> {
    return OnnxModel.create(path, path, sessionOptions(options), options, '');
  }

  /** Builds a session from a model in memory; `path` names it in messages. `variant` names what was
   * changed in memory relative to the file at `path` (a LoRA set, say): with it, the optimised graph is cached. */
  static async fromBuffer(path: string, model: ModelBuffer, options: RuntimeOptions = {}, variant?: string): Promise<OnnxModel> {
    const session: ort.InferenceSession.SessionOptions = {
      ...sessionOptions(options),
      // Resolves external data as loading from `path` would; onnxruntime refuses it otherwise.
      extra: { session: { model_external_initializers_file_folder_path: model.dir } },
    };
    if (model.externalData.length) session.externalData = model.externalData;
    return OnnxModel.create(path, model.bytes, session, options, variant);
  }

  /** A session from the optimised-model cache when it holds a sound entry, else from `source` (saving its optimised graph). */
  private static async create(path: string, source: string | Uint8Array, session: ort.InferenceSession.SessionOptions, options: RuntimeOptions, variant: string | undefined): Promise<OnnxModel> {
    const providers = options.executionProviders ?? ['cpu'];
    try {
      if (!options.optimizedCacheDir || variant === undefined) return new OnnxModel(path, await createSession(source, session), providers, 'source');
      const cache = new OptimizedModelCache(options.optimizedCacheDir);
      const key = await cache.key({ path, variant, providers });
      const entry = await cache.open(key);
      if (entry) {
        const cached = await ort.InferenceSession.create(entry.path, { ...sessionOptions(options), graphOptimizationLevel: 'disabled' }).catch(() => undefined);
        if (cached && (await entry.verified)) return new OnnxModel(path, cached, providers, 'optimized-cache');
        await cached?.release();
        await cache.discard(key);
      }
      const writer = await cache.writer(key);
      const extra = (session.extra ?? {}) as { session?: Record<string, string> };
      const created = await createSession(source, { ...session, optimizedModelFilePath: writer.path, extra: { ...extra, session: { ...extra.session, ...SAVE_CONFIG } } })
        .catch(async (error: unknown) => {
          await writer.abandon();
          throw error;
        });
      // A cache that cannot be written (a full disk) costs the next load its time, not this one its model.
      await writer.commit().catch(() => writer.abandon());
      return new OnnxModel(path, created, providers, 'source');
    } catch (error) {
      throw invalidModel(`${path}: onnxruntime could not load it (${(error as Error).message})`, error);
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** The declared shape of an input (numbers, or names for dynamic dimensions); throws for a missing input. */
  inputShape(name: string): readonly (number | string)[] {
    return this.input(name).shape;
  }

  /** The declared shape of an output; empty when the graph declares none. */
  outputShape(name: string): readonly (number | string)[] {
    const meta = this.session.outputMetadata.find((m) => m.name === name);
    return meta?.isTensor ? meta.shape : [];
  }

  hasInput(name: string): boolean {
    return this.inputs.has(name);
  }

  private input(name: string): ort.InferenceSession.TensorValueMetadata {
    const meta = this.inputs.get(name);
    if (!meta) throw invalidModel(`${this.path}: the model has no input "${name}" (it has ${this.session.inputNames.join(', ')})`);
    return meta;
  }

  /** Runs the graph; `outputs` limits what comes back (all outputs by default). */
  async run(feeds: Record<string, TensorData>, outputs?: readonly string[]): Promise<Record<string, OutputTensor>> {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, { data, dims }] of Object.entries(feeds)) tensors[name] = toTensor(this.input(name).type, data, dims);
    const results = outputs ? await this.session.run(tensors, outputs) : await this.session.run(tensors);
    const out: Record<string, OutputTensor> = {};
    for (const [name, tensor] of Object.entries(results)) out[name] = { data: fromTensor(tensor, this.path, name), dims: tensor.dims };
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function createSession(source: string | Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  return typeof source === 'string' ? ort.InferenceSession.create(source, options) : ort.InferenceSession.create(source, options);
}

function toTensor(type: string, data: Float32Array | Int32Array, dims: readonly number[]): ort.Tensor {
  switch (type) {
    case 'float32':
      return new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);
    case 'float16':
      return new ort.Tensor('float16', float32ToFloat16(data), dims);
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(data), dims);
    case 'int32':
      return new ort.Tensor('int32', data instanceof Int32Array ? data : Int32Array.from(data, Math.trunc), dims);
    case 'int64':
      return new ort.Tensor('int64', BigInt64Array.from(data, (v) => BigInt(Math.trunc(v))), dims);
    default:
      throw invalidModel(`unsupported input element type ${type}`);
  }
}

function fromTensor(tensor: ort.Tensor, path: string, name: string): Float32Array {
  switch (tensor.type) {
    case 'float32':
      return tensor.data as Float32Array;
    case 'float16':
      return float16ToFloat32(tensor.data as Uint16Array);
    case 'float64':
      return Float32Array.from(tensor.data as Float64Array);
    default:
      throw invalidModel(`${path}: output ${name} is ${tensor.type}; a float tensor was expected`);
  }
}
