// The engine on a worker thread. onnxruntime-node runs sessions synchronously on the calling
// thread, so the server's event loop would stall for every UNet call; here it only relays
// messages: requests in, step progress (latents and TAESD previews transferred, not copied) and
// results out.
import { Worker } from 'node:worker_threads';
import type { EngineModelStatus, EngineOptions, EngineResult, EngineStepProgress, GenerationEngine, PreviewSettings, RunOptions, UpscaleJob, UpscaleOptions } from './engine.ts';
import { DiffusionError, type DiffusionErrorCode } from './errors.ts';
import type { RgbImage } from './image.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import type { GenerateRequest } from './request.ts';

export type ToWorker =
  | { type: 'run'; id: number; model: ModelFolderInfo; request: GenerateRequest; previews?: PreviewSettings }
  | { type: 'preload'; id: number; model: ModelFolderInfo }
  | { type: 'upscale'; id: number; job: UpscaleJob }
  | { type: 'abort'; id: number }
  | { type: 'close' };

export type FromWorker =
  | { type: 'step'; id: number; progress: EngineStepProgress }
  | { type: 'tile'; id: number; done: number; total: number }
  | { type: 'done'; id: number; result?: EngineResult | RgbImage }
  | { type: 'models'; models: EngineModelStatus[] }
  | { type: 'error'; id: number; error: { code?: DiffusionErrorCode; message: string; stack?: string } }
  | { type: 'closed' };

interface Pending {
  resolve: (result: EngineResult | RgbImage | undefined) => void;
  reject: (error: Error) => void;
  onStep?: RunOptions['onStep'];
  onTile?: UpscaleOptions['onTile'];
}

/**
 * The engine on its own thread. A thread that dies (a native crash, memory exhausted) fails the
 * runs it had with the reason, and the next run starts a new one: one bad request must not leave
 * the worker failing every generation after it.
 */
export class EngineThread implements GenerationEngine {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  /** As the thread last reported them. */
  private status: EngineModelStatus[] = [];
  /** Preloads sent to the thread and not finished: LOADING until the thread reports them (it may be starting still). */
  private readonly preloading = new Map<number, ModelFolderInfo>();

  constructor(private readonly options: EngineOptions = {}) {
    this.start();
  }

  private start(): Worker {
    const worker = startTsWorker(new URL('./engine-worker.ts', import.meta.url), this.options);
    worker.on('message', (message: FromWorker) => this.receive(message));
    this.status = [];
    worker.on('error', (error) => this.lost(worker, error));
    worker.on('exit', (code) => this.lost(worker, new Error(`the engine thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  run(model: ModelFolderInfo, request: GenerateRequest, { signal, onStep, previews }: RunOptions = {}): Promise<EngineResult> {
    return this.submit<EngineResult>(signal, { onStep }, (id) => ({ type: 'run', id, model, request, previews }));
  }

  upscale(job: UpscaleJob, { signal, onTile }: UpscaleOptions = {}): Promise<RgbImage> {
    return this.submit<RgbImage>(signal, { onTile }, (id) => ({ type: 'upscale', id, job }));
  }

  /** Posts a request to the thread; `signal` aborts it there. */
  private submit<R extends EngineResult | RgbImage>(signal: AbortSignal | undefined, listeners: Pick<Pending, 'onStep' | 'onTile'>, message: (id: number) => ToWorker): Promise<R> {
    if (this.closed) return Promise.reject(new Error('the engine is closed'));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      const abort = () => this.post(worker, { type: 'abort', id });
      signal?.addEventListener('abort', abort, { once: true });
      const settle = () => signal?.removeEventListener('abort', abort);
      this.pending.set(id, {
        resolve: (result) => (settle(), resolve(result as R)),
        reject: (error) => (settle(), reject(error)),
        ...listeners,
      });
      this.post(worker, message(id));
      if (signal?.aborted) abort();
    });
  }

  async preload(model: ModelFolderInfo): Promise<void> {
    if (this.closed) throw new Error('the engine is closed');
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    this.preloading.set(id, model);
    try {
      await new Promise<unknown>((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        this.post(worker, { type: 'preload', id, model });
      });
    } finally {
      this.preloading.delete(id);
    }
  }

  models(): EngineModelStatus[] {
    const reported = new Set(this.status.filter((m) => !m.loras.length).map((m) => m.modelId));
    const waiting = [...this.preloading.values()].filter((m) => !reported.has(m.id));
    return [...this.status, ...waiting.map((m): EngineModelStatus => ({ modelId: m.id, loras: [], state: 'LOADING', submodels: [] }))];
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.post(worker, { type: 'close' });
    await exited;
  }

  private post(worker: Worker, message: ToWorker): void {
    // A thread that has died drops the message; its runs are failed by lost().
    if (worker === this.worker) worker.postMessage(message);
  }

  private receive(message: FromWorker): void {
    if (message.type === 'closed') return;
    if (message.type === 'models') {
      this.status = message.models;
      return;
    }
    const pending = this.pending.get(message.id);
    if (!pending) return;
    // Progress is best effort: a failing listener must not fail the generation.
    if (message.type === 'step') return void Promise.resolve(pending.onStep?.(message.progress)).catch(() => {});
    if (message.type === 'tile') return void Promise.resolve(pending.onTile?.(message.done, message.total)).catch(() => {});
    this.pending.delete(message.id);
    if (message.type === 'done') pending.resolve(message.result);
    else {
      const { code, message: text, stack } = message.error;
      const error = code ? new DiffusionError(code, text) : new Error(text);
      if (stack) error.stack = stack;
      pending.reject(error);
    }
  }

  /** The thread is gone: its runs fail with the reason, and the next run starts another thread. */
  private lost(worker: Worker, error: Error): void {
    if (worker !== this.worker) return;
    this.worker = undefined;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

/**
 * Starts a worker on a TypeScript module: workers do not inherit the tsx loader, so a one-line
 * bootstrap registers it in the new thread before importing the entry.
 */
export function startTsWorker(entry: URL, workerData: unknown): Worker {
  const loader = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(loader)}; register(); await import(${JSON.stringify(entry.href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { workerData });
}
