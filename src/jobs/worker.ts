// A worker runs queued generations one at a time on a generation engine (the engine thread in
// the server), streams each step with a preview, and stores the images with their metadata.
import { hostname } from 'node:os';
import { databaseReachable, retryWhileUnreachable, waitForDatabase, type Generation, type Prisma, type PrismaClient } from '../db/index.ts';
import {
  addPngText,
  BUILTIN_UPSCALERS,
  countUnetCalls,
  encodeImage,
  DiffusionError,
  encodeImageWithInfo,
  infotextAdapters,
  encodePreview,
  formatInfotext,
  inpaintDefaults,
  inpaintInfotext,
  LANCZOS,
  readImageInfo,
  renderPreview,
  resolveAdapters,
  upscaleInfotext,
  wantsPreview,
  type AdapterSource,
  type EngineStepProgress,
  type GenerateRequest,
  type GenerationEngine,
  type InfotextAdapters,
  type RgbImage,
  type ModelFamily,
  type ModelFolderInfo,
  type SchedulerName,
  type ConversionProgress,
} from '../diffusion/index.ts';
import { log } from '../log.ts';
import type { JobEvents, PreviewImage } from './events.ts';
import type { ImageStore, StoredFile } from './image-store.ts';
import { statusEvent, type GenerationQueue } from './queue.ts';
import { readStoredRequest, readStoredUpscale, type StoredRequest } from './request.ts';

export interface WorkerDeps {
  prisma: PrismaClient;
  queue: GenerationQueue;
  events: JobEvents;
  engine: GenerationEngine;
  images: ImageStore;
  /** The model folder a generation names, as last scanned (undefined when it is gone). */
  model(id: string): ModelFolderInfo | undefined;
  /** The model as the engine loads it: a checkpoint converted to ONNX first (reporting how far), a folder as it is. */
  prepare?(model: ModelFolderInfo, onProgress: (progress: ConversionProgress) => void): Promise<ModelFolderInfo>;
  /** The model's short hash for infotext (AUTOMATIC1111's "Model hash"), when known. */
  modelHash(id: string): Promise<string | null>;
  /** The TAESD decoder file for the model's previews (see diffusion/taesd.ts), when there is one. */
  previewDecoder?(model: ModelFolderInfo): Promise<string | undefined>;
  /** Where LoRA ids and embeddings are resolved again before a generation runs (files may have changed
   * since it was submitted); without it, the files resolved at submission are used. */
  adapters?: AdapterSource;
  /** A separate VAE file by id, its graphs converted (undefined when there is no such usable file). */
  vae?(id: string): Promise<SeparateVae | undefined>;
  /** The file of a model upscaler, by id (undefined when there is none). */
  upscalerPath?(id: string): Promise<string | undefined>;
  /** How often to look for work when no event says there is some. */
  pollMs?: number;
  /** How often to renew the lease on the running generation (queue.ts heartbeatInterval). */
  heartbeatMs: number;
}

/** A separate VAE file as a generation runs with it. */
export interface SeparateVae {
  fileName: string;
  sha256: string;
  vaeEncoder: string;
  vaeDecoder: string;
}

export class GenerationWorker {
  readonly id = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  private readonly stopping = new AbortController();
  private current: { id: string; abort: AbortController } | undefined;
  private loop: Promise<void> | undefined;
  private cancelListener: AsyncIterator<string> | undefined;

  constructor(private readonly deps: WorkerDeps) {}

  start(): void {
    this.loop ??= this.run();
    this.listenForCancels();
  }

  /** Stops taking work; a generation in progress is stopped and put back in the queue for the next start. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.current?.abort.abort();
    await this.cancelListener?.return?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { queue } = this.deps;
    const { signal } = this.stopping;
    while (!signal.aborted) {
      let generation: Generation | undefined;
      try {
        generation = await retryWhileUnreachable(this.deps.prisma, 'claim the next generation', () => queue.claimNext(this.id), signal);
      } catch (error) {
        if (!signal.aborted) log.error('could not claim a generation', { err: error });
      }
      if (generation) await this.process(generation);
      else await queue.waitForWork(this.deps.pollMs ?? 2000, signal);
    }
  }

  private listenForCancels(): void {
    const iterator = this.deps.events.subscribe('cancel')[Symbol.asyncIterator]();
    this.cancelListener = iterator;
    void (async () => {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        if (this.current?.id === next.value) this.current.abort.abort();
      }
    })();
  }

  private async process(generation: Generation): Promise<void> {
    const { queue } = this.deps;
    const abort = new AbortController();
    this.current = { id: generation.id, abort };
    const heartbeat = setInterval(() => {
      queue
        .heartbeat(generation.id, this.id)
        .then(({ cancelRequested }) => cancelRequested && abort.abort())
        .catch((error) => log.warn('heartbeat failed', { generationId: generation.id, err: error }));
    }, this.deps.heartbeatMs);
    const started = performance.now();
    log.info(`${generation.kind === 'UPSCALE' ? 'upscale' : 'generation'} started`, { generationId: generation.id, model: generation.modelId ?? undefined, attempt: generation.attempts });
    // What the row and every event say of the progress, the final event included.
    const progress: Progress = { step: 0, totalSteps: generation.totalSteps };
    const stream = new ProgressStream(this.deps, generation.id, progress, started);
    try {
      const timings = generation.kind === 'UPSCALE' ? await this.upscale(generation, abort.signal, stream) : await this.generate(generation, abort.signal, stream);
      log.info(`${generation.kind === 'UPSCALE' ? 'upscale' : 'generation'} succeeded`, { generationId: generation.id, ms: Math.round(performance.now() - started), ...timings });
    } catch (error) {
      // The steps' events go out before the final one.
      await stream.flushed();
      await this.fail(generation, error, abort.signal.aborted, progress);
    } finally {
      clearInterval(heartbeat);
      this.current = undefined;
    }
  }

  /** Publishes RUNNING with the steps the run will take, and records them. */
  private async running(generation: Generation, progress: Progress): Promise<void> {
    await this.deps.prisma.generation.updateMany({ where: { id: generation.id, workerId: this.id, status: 'RUNNING' }, data: { ...progress } });
    this.deps.events.publish('generation', generation.id, statusEvent(generation.id, 'RUNNING', null, progress.step, progress.totalSteps));
  }

  /** Runs a GENERATE row; returns the engine's timings. */
  private async generate(generation: Generation, signal: AbortSignal, events: ProgressStream): Promise<Record<string, number | undefined>> {
    const model = generation.modelId === null ? undefined : this.deps.model(generation.modelId);
    if (!model || model.error) {
      throw new DiffusionError('MODEL_INVALID', `model ${generation.modelId} ${model ? `cannot be used: ${model.error}` : 'is no longer in the models folder'}`);
    }
    const stored = readStoredRequest(generation);
    const { request, warnings } = await this.engineRequest(generation, stored, model);
    const hash = this.deps.modelHash(model.id).catch(() => null);
    // Hashed while the images are made: a LoRA's first hash reads the whole file.
    const adapters = infotextAdapters(request, stored.loras?.length ?? 0);
    const previewEvery = stored.previewEvery ?? 1;
    events.progress.totalSteps = countUnetCalls(model, request);
    const decoder = previewEvery > 0 ? await this.deps.previewDecoder?.(model) : undefined;
    await this.running(generation, events.progress);
    // A checkpoint is converted to ONNX on its first use; subscribers see the conversion's progress.
    const runnable = this.deps.prepare
      ? await this.deps.prepare(model, (conversion) =>
          this.deps.events.publish('generation', generation.id, { ...statusEvent(generation.id, 'RUNNING', null, events.progress.step, events.progress.totalSteps), conversion }),
        )
      : model;
    const vae = stored.vae === undefined ? undefined : await this.separateVae(stored.vae);
    const result = await this.deps.engine.run(vae ? withVae(runnable, vae) : runnable, request, {
      signal,
      onStep: (p) => events.push(p.step, p.totalSteps, previewOf(p, request, model.family, previewEvery, generation.id)),
      previews: { every: previewEvery, decoder },
    });
    await events.flushed();
    await this.finish(generation, model, request, await adapters, stored, result.images, await hash, [...warnings, ...(result.warnings ?? [])], vae);
    return result.timings;
  }

  private async separateVae(id: string): Promise<SeparateVae> {
    const vae = await this.deps.vae?.(id);
    if (!vae) throw new DiffusionError('MODEL_INVALID', `VAE ${id} is no longer a usable file of the vae folder`);
    return vae;
  }

  /** Runs an UPSCALE row: its image through the engine thread, a progress event per tile, one result image. */
  private async upscale(generation: Generation, signal: AbortSignal, events: ProgressStream): Promise<Record<string, number>> {
    const stored = readStoredUpscale(generation);
    const upscalerPath = stored.upscaler === LANCZOS ? undefined : await this.upscalerPath(stored.upscaler);
    const source = await this.deps.images.read(stored.image.path);
    const request = { upscaler: stored.upscaler, scale: stored.scale, width: generation.width, height: generation.height, tiles: generation.totalSteps ?? 1 };
    await this.running(generation, events.progress);
    const image = await this.deps.engine.upscale({ ...request, image: source, upscalerPath }, { signal, onTile: (done, total) => events.push(done, total) });
    await events.flushed();
    // AUTOMATIC1111's Extras keep the source's parameters and add their keys in "postprocessing" and "extras" texts.
    const parameters = (await readImageInfo(source)).parameters;
    const postprocessing = upscaleInfotext(request);
    const { image: input, ...sent } = stored;
    const png = await addPngText(await encodeImage(image, 'png'), {
      ...(parameters !== undefined && { parameters }),
      postprocessing,
      extras: postprocessing,
      sdql: JSON.stringify({ ...sent, image: { sha256: input.sha256 }, upscaleId: generation.id }),
    });
    await this.record(generation, {}, async (save) => {
      const file = await save(`${generation.id}-0`, png);
      return [{ generationId: generation.id, index: 0, path: file.path, width: image.width, height: image.height, seed: 0n, format: 'png', bytes: file.bytes, sha256: file.sha256, infotext: parameters ?? null }];
    });
    return {};
  }

  private async engineRequest(generation: Generation, stored: StoredRequest, model: ModelFolderInfo): Promise<{ request: GenerateRequest; warnings: string[] }> {
    const promptSyntax = stored.promptSyntax === 'PLAIN' ? 'PLAIN' : 'A1111';
    const adapters = this.deps.adapters
      ? await resolveAdapters(this.deps.adapters, model, { ...stored, prompt: generation.prompt, negativePrompt: generation.negativePrompt, promptSyntax, loras: stored.loras })
      : stored.adapters;
    const request: GenerateRequest = {
      prompt: generation.prompt,
      negativePrompt: generation.negativePrompt,
      width: generation.width,
      height: generation.height,
      steps: generation.steps,
      guidanceScale: generation.guidanceScale,
      guidanceRescale: generation.guidanceRescale,
      scheduler: generation.scheduler as SchedulerName,
      scheduleType: stored.scheduleType ?? 'DEFAULT',
      seed: Number(generation.seed),
      numImages: generation.numImages,
      eta: generation.eta,
      clipSkip: stored.clipSkip ?? 1,
      strength: generation.strength ?? undefined,
      variationSeed: stored.variationSeed,
      variationStrength: stored.variationStrength,
      hires: stored.hires,
      // The built-in ones have no file.
      upscalerPath: stored.hires && !Object.hasOwn(BUILTIN_UPSCALERS, stored.hires.upscaler) ? await this.upscalerPath(stored.hires.upscaler) : undefined,
      initImage: stored.initImage ? await this.deps.images.read(stored.initImage.path) : undefined,
      inpaint: stored.mask || stored.outpaint ? inpaintDefaults({ ...stored, mask: stored.mask && (await this.deps.images.read(stored.mask.path)) }) : undefined,
      promptSyntax,
      prompt2: stored.prompt2,
      negativePrompt2: stored.negativePrompt2,
      originalSize: stored.originalSize,
      cropTopLeft: stored.cropTopLeft,
      targetSize: stored.targetSize,
      loras: adapters?.loras,
      embeddings: adapters?.embeddings,
    };
    return { request, warnings: adapters?.warnings ?? [] };
  }

  /** The file of a model upscaler; MODEL_INVALID once it is gone. */
  private async upscalerPath(id: string): Promise<string> {
    const path = await this.deps.upscalerPath?.(id);
    if (!path) throw new DiffusionError('MODEL_INVALID', `upscaler ${id} is no longer in the upscalers folder`);
    return path;
  }

  /** Writes the images, then records them and the outcome in one transaction; files of a failed write are removed. */
  private async finish(
    generation: Generation,
    model: ModelFolderInfo,
    request: GenerateRequest,
    adapters: InfotextAdapters,
    stored: StoredRequest,
    results: { seed: number; image: RgbImage }[],
    modelHash: string | null,
    warnings: string[],
    vae?: SeparateVae,
  ): Promise<void> {
    await this.record(generation, { modelHash: modelHash?.slice(0, 10) ?? null, warnings }, async (save) => {
      const rows: Prisma.ImageCreateManyInput[] = [];
      for (const [index, { seed, image }] of results.entries()) {
        const extra = request.inpaint && inpaintInfotext(request.inpaint);
        const variationSeed = request.variationSeed === undefined ? undefined : request.variationSeed + index;
        const infotext = formatInfotext({ ...request, ...adapters, seed, variationSeed, schedulerConfig: model.schedulerConfig, modelHash: modelHash?.slice(0, 10), modelName: model.id, vae: vae && { fileName: vae.fileName, hash: vae.sha256.slice(0, 10) }, extra });
        const png = await encodeImageWithInfo(image, 'png', {
          parameters: infotext,
          sdql: JSON.stringify({ ...storedRequestForImage(stored), seed, generationId: generation.id, model: model.id }),
        });
        const file = await save(`${generation.id}-${index}`, png);
        rows.push({ generationId: generation.id, index, path: file.path, width: image.width, height: image.height, seed: BigInt(seed), format: 'png', bytes: file.bytes, sha256: file.sha256, infotext });
      }
      return rows;
    });
  }

  /**
   * Writes the result files (`write` saves each through `save`), then records them and SUCCEEDED
   * (with `data`) in one transaction; the files of a failed write or record are removed.
   */
  private async record(
    generation: Generation,
    data: Prisma.GenerationUpdateManyMutationInput,
    write: (save: (imageId: string, png: Uint8Array) => Promise<StoredFile>) => Promise<Prisma.ImageCreateManyInput[]>,
  ): Promise<void> {
    const { prisma, images, events, queue } = this.deps;
    const written: string[] = [];
    try {
      const rows = await write(async (imageId, png) => {
        const file = await images.saveImage(imageId, 'png', png);
        written.push(file.path);
        return file;
      });
      // Through an outage the images wait here, made, until the database answers again.
      await retryWhileUnreachable(
        prisma,
        'record a finished generation',
        () =>
          prisma.$transaction(async (tx) => {
            const updated = await tx.generation.updateMany({
              where: { id: generation.id, workerId: this.id, status: 'RUNNING' },
              data: { ...data, status: 'SUCCEEDED', finishedAt: new Date(), heartbeatAt: null },
            });
            if (updated.count > 0) return void (await tx.image.createMany({ data: rows }));
            // A try whose commit was lost with its connection has recorded it already.
            const row = await tx.generation.findUnique({ where: { id: generation.id }, select: { status: true, workerId: true } });
            if (row?.status === 'SUCCEEDED' && row.workerId === this.id) return;
            // Canceled, or requeued by a recovery that took this worker for dead: its images are not wanted.
            throw new GenerationTaken();
          }),
        this.stopping.signal,
      );
    } catch (error) {
      await images.remove(written);
      throw error;
    }
    const final = await retryWhileUnreachable(prisma, 'read a finished generation', () => prisma.generation.findUniqueOrThrow({ where: { id: generation.id } }), this.stopping.signal);
    events.publish('generation', generation.id, statusEvent(generation.id, 'SUCCEEDED', null, final.step, final.totalSteps));
    queue.announce(final.id, final.status);
  }

  private async fail(generation: Generation, error: unknown, aborted: boolean, progress: Progress): Promise<void> {
    const { prisma, events, queue } = this.deps;
    const { signal } = this.stopping;
    if (aborted && signal.aborted) {
      await queue.release(generation.id, this.id).catch((e) => log.error('could not release a generation', { err: e }));
      log.info('generation released for the next start', { generationId: generation.id });
      return;
    }
    if (error instanceof GenerationTaken) {
      log.info('generation taken from this worker; its images are dropped', { generationId: generation.id });
      return;
    }
    const canceled = aborted || (error instanceof DiffusionError && error.code === 'ABORTED');
    if (!canceled && !(error instanceof DiffusionError) && !(await databaseReachable(prisma))) return this.requeueAfterOutage(generation, error);
    const message = canceled ? null : error instanceof DiffusionError ? error.message : `internal error: ${(error as Error).message}`;
    if (!canceled && !(error instanceof DiffusionError)) log.error('generation failed', { generationId: generation.id, err: error });
    else log.info(canceled ? 'generation canceled' : 'generation failed', { generationId: generation.id, error: message });
    const status = canceled ? 'CANCELED' : 'FAILED';
    const recorded = await retryWhileUnreachable(
      prisma,
      `record a ${status.toLowerCase()} generation`,
      () => prisma.generation.updateMany({ where: { id: generation.id, workerId: this.id, status: 'RUNNING' }, data: { status, error: message, finishedAt: new Date(), heartbeatAt: null, ...progress } }),
      signal,
    ).catch((e: unknown) => void log.error('could not record a failed generation', { generationId: generation.id, err: e }));
    // Nothing recorded: the generation is no longer this worker's (requeued, or the process stops);
    // whoever has it tells subscribers how it ends.
    if (!recorded?.count) return;
    events.publish('generation', generation.id, statusEvent(generation.id, status, message, progress.step, progress.totalSteps));
    queue.announce(generation.id, status);
  }

  /** A generation that stopped because the database went away runs again once it is back, without counting the attempt. */
  private async requeueAfterOutage(generation: Generation, error: unknown): Promise<void> {
    log.warn('lost the database during a generation; it runs again once the database answers', { generationId: generation.id, err: error });
    try {
      await waitForDatabase(this.deps.prisma, 'requeue a generation', this.stopping.signal);
      await this.deps.queue.release(generation.id, this.id);
    } catch (e) {
      // Stopping: the generation is left RUNNING without heartbeats, and the next recovery requeues it.
      log.warn('could not requeue a generation after losing the database', { generationId: generation.id, err: e });
    }
  }
}

/** The generation's row no longer names this worker as the one running it. */
class GenerationTaken extends Error {
  constructor() {
    super('the generation was taken from this worker');
  }
}

/** The request as an image's `sdql` chunk records it: parameters only, input images by their SHA-256, no internal file paths. */
/** The model with a separate VAE's graphs instead of its own (an encoder only where the model has one: what it can do was checked at submission). */
function withVae(model: ModelFolderInfo, vae: SeparateVae): ModelFolderInfo {
  const paths = { ...model.paths, vaeDecoder: vae.vaeDecoder, ...(model.paths.vaeEncoder && { vaeEncoder: vae.vaeEncoder }) };
  return { ...model, paths, vaeSha256: vae.sha256 };
}

function storedRequestForImage(stored: StoredRequest): Omit<StoredRequest, 'initImage' | 'mask' | 'adapters'> & { initImage?: { sha256: string }; mask?: { sha256: string } } {
  const { initImage, mask, adapters: _adapters, ...rest } = stored;
  return { ...rest, ...(initImage && { initImage: { sha256: initImage.sha256 } }), ...(mask && { mask: { sha256: mask.sha256 } }) };
}

/** A running generation's step and UNet calls in all (null until known). */
interface Progress {
  step: number;
  totalSteps: number | null;
}

/** How often a running generation's step is written to its row. */
const RECORD_PROGRESS_MS = 500;

/** A step's preview, when the step wants one: the engine's TAESD pixels when it sends them, else the linear approximation. */
/** The step's preview, when one is due: the engine's TAESD image, else the latents' approximation in the model family's colours. */
function previewOf(p: EngineStepProgress, request: GenerateRequest, family: ModelFamily, every: number, generationId: string): Promise<PreviewImage | null> {
  if (!wantsPreview(p.step, p.totalSteps, every)) return Promise.resolve(null);
  return (p.previewRgb ? encodePreview(p.previewRgb, request) : renderPreview(p.latents, p.latentShape, 0, request, { family })).catch((error) => {
    log.warn('preview failed', { generationId, err: error });
    return null;
  });
}

/**
 * Turns steps (a generation's UNet calls, an upscale's tiles) into events, with their previews.
 * Previews render on sharp's threads while the engine thread keeps working; a chain keeps events in
 * step order.
 */
class ProgressStream {
  private chain = Promise.resolve();
  private lastRecorded = -Infinity;

  constructor(
    private readonly deps: Pick<WorkerDeps, 'events' | 'prisma'>,
    private readonly generationId: string,
    /** Updated as each step's event goes out. */
    readonly progress: Progress,
    private readonly startedAt: number,
  ) {}

  push(step: number, totalSteps: number, preview: Promise<PreviewImage | null> = Promise.resolve(null)): void {
    const elapsed = performance.now() - this.startedAt;
    const etaMs = Math.round((elapsed / step) * (totalSteps - step));
    const { prisma, events } = this.deps;
    // Subscribers get every step; the row (for queries and late subscribers) twice a second at most.
    const record = step === 1 || step === totalSteps || performance.now() - this.lastRecorded >= RECORD_PROGRESS_MS;
    if (record) this.lastRecorded = performance.now();
    this.chain = this.chain.then(async () => {
      this.progress.step = step;
      this.progress.totalSteps = totalSteps;
      if (record) {
        await prisma.generation
          .updateMany({ where: { id: this.generationId, status: 'RUNNING' }, data: { step, totalSteps } })
          .catch((error) => log.warn('could not record progress', { generationId: this.generationId, err: error }));
      }
      events.publish('generation', this.generationId, {
        generationId: this.generationId,
        status: 'RUNNING',
        step,
        totalSteps,
        imageIndex: 0,
        etaMs,
        preview: await preview,
        error: null,
      });
    });
  }

  flushed(): Promise<void> {
    return this.chain;
  }
}
