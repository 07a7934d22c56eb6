// The jobs layer as the server uses it: the queue, the image files, the in-process worker, and
// the event streams that subscriptions read.
import { Repeater } from '@repeaterjs/repeater';
import type { PrismaClient } from '../db/index.ts';
import { log } from '../log.ts';
import type { AdapterSource, GenerationEngine, ModelFolderInfo } from '../diffusion/index.ts';
import { TERMINAL_STATUSES, type GenerationEvent, type JobEvents, type QueueEvent } from './events.ts';
import { ImageStore } from './image-store.ts';
import { GenerationQueue } from './queue.ts';
import { GenerationWorker, type WorkerDeps } from './worker.ts';

export type { GenerationEvent, JobEvents, JobTopics, QueueEvent } from './events.ts';

export interface WorkerOptions {
  engine: GenerationEngine;
  model(id: string): ModelFolderInfo | undefined;
  prepare?: WorkerDeps['prepare'];
  modelHash(id: string): Promise<string | null>;
  previewDecoder?(model: ModelFolderInfo): Promise<string | undefined>;
  upscalerPath?(id: string): Promise<string | undefined>;
  vae?: WorkerDeps['vae'];
  /** Where LoRA and embedding files are looked up again when a generation runs. */
  adapters?: AdapterSource;
  heartbeatMs: number;
}

export class Jobs {
  readonly queue: GenerationQueue;
  readonly images: ImageStore;
  private worker: GenerationWorker | undefined;
  private recovery: NodeJS.Timeout | undefined;

  constructor(
    readonly prisma: PrismaClient,
    readonly events: JobEvents,
    dataDir: string,
  ) {
    this.queue = new GenerationQueue(prisma, events);
    this.images = new ImageStore(dataDir);
  }

  /**
   * Requeues (or fails) generations whose worker stopped beating for `leaseMs`, now and then every
   * half lease. `exclusive`: this process owns the database alone (embedded), so whatever it finds
   * running at start was left by a dead process, whatever its heartbeat.
   */
  async startRecovery(leaseMs: number, { exclusive }: { exclusive: boolean }): Promise<void> {
    await this.queue.recoverAbandoned(exclusive ? 0 : leaseMs);
    this.recovery = setInterval(() => {
      this.queue.recoverAbandoned(leaseMs, this.worker?.id).catch((error) => log.warn('could not recover abandoned generations', { err: error }));
    }, leaseMs / 2);
    this.recovery.unref();
  }

  stopRecovery(): void {
    clearInterval(this.recovery);
  }

  /** Starts a worker in this process. */
  async startWorker(options: WorkerOptions): Promise<void> {
    this.worker = new GenerationWorker({ ...options, prisma: this.prisma, queue: this.queue, events: this.events, images: this.images });
    this.worker.start();
  }

  async stopWorker(): Promise<void> {
    await this.worker?.stop();
  }

  /** The generation's state now, then its events, ending after its final status (nothing for an unknown id). */
  progress(id: string): Repeater<GenerationEvent> {
    return new Repeater(async (push, stop) => {
      // Subscribe before reading the state, so no event falls between the two.
      const iterator = this.events.subscribe('generation', id)[Symbol.asyncIterator]();
      void stop.then(() => iterator.return?.());
      const generation = await this.prisma.generation.findUnique({ where: { id } });
      if (!generation) return stop();
      let event: GenerationEvent = {
        generationId: id,
        status: generation.status,
        step: generation.step,
        totalSteps: generation.totalSteps,
        imageIndex: 0,
        etaMs: null,
        preview: null,
        error: generation.error,
      };
      for (;;) {
        await push(event);
        if (TERMINAL_STATUSES.includes(event.status)) return stop();
        const next = await iterator.next();
        if (next.done) return stop();
        event = next.value;
      }
    });
  }

  /** An event now, then one per change of the queue. */
  queueChanges(): Repeater<QueueEvent | null> {
    return new Repeater(async (push, stop) => {
      const iterator = this.events.subscribe('queue')[Symbol.asyncIterator]();
      void stop.then(() => iterator.return?.());
      await push(null);
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) await push(next.value);
      stop();
    });
  }

  /** Resolves when the generation has ended, or after `timeoutMs`. */
  async awaitEnd(id: string, timeoutMs: number): Promise<void> {
    const stream = this.progress(id);
    const timer = setTimeout(() => void stream.return(), timeoutMs);
    try {
      for await (const _event of stream) {
        // progress() ends after the final status
      }
    } finally {
      clearTimeout(timer);
    }
  }
}
