// What the queue and the workers announce. Payloads are plain JSON (dates as ISO strings) so the
// same events cross processes through Redis when REDIS_URL is set.
import type { GenerationStatus } from '../db/index.ts';
import type { EventBus } from '../events/bus.ts';
import type { ConversionProgress } from '../diffusion/index.ts';

export type { GenerationStatus };
export const TERMINAL_STATUSES: readonly GenerationStatus[] = ['SUCCEEDED', 'FAILED', 'CANCELED'];

export interface PreviewImage {
  dataUrl: string;
  width: number;
  height: number;
}

/** One moment of one generation: a status change, or a denoising step with its preview. */
export interface GenerationEvent {
  generationId: string;
  status: GenerationStatus;
  step: number;
  totalSteps: number | null;
  /** The image of the batch the preview shows. */
  imageIndex: number;
  /** Estimated time to the end of denoising, from the pace so far. */
  etaMs: number | null;
  preview: PreviewImage | null;
  error: string | null;
  /** While the model, a checkpoint, is converted before its first use. */
  conversion?: ConversionProgress | null;
}

/** The queue changed: a generation was added, started, finished, canceled or deleted. */
export interface QueueEvent {
  generationId: string;
  status: GenerationStatus | 'DELETED';
}

/** Topic name → published arguments. */
export type JobTopics = {
  generation: [generationId: string, event: GenerationEvent];
  queue: [QueueEvent];
  /** Asks whichever worker runs the generation to stop it. */
  cancel: [generationId: string];
};

/** The part of the event bus the queue and workers use (closing it is its owner's business). */
export type JobEvents = Pick<EventBus<JobTopics>, 'publish' | 'subscribe'>;
