// Submitting a generation: the request is validated against its model and resolved (defaults,
// seed, size, LoRA and embedding files) before anything is stored, then stored as one QUEUED row
// that is the job itself.
import type { Generation, PrismaClient } from '../db/index.ts';
import { badInput, prepareRequest, probeImage, type AdapterSource, type ModelFolderInfo, type RequestParams, type ResolvedAdapters } from '../diffusion/index.ts';
import type { ImageStore } from './image-store.ts';
import type { GenerationQueue } from './queue.ts';

export const PRIORITY_RANGE = { min: -100, max: 100 } as const;

export interface SubmitInput extends Omit<RequestParams, 'initImage'> {
  /** Higher runs first; equal priorities run in submission order. */
  priority?: number;
  /** Send a preview every N steps (0: none). */
  previewEvery?: number;
  initImage?: { bytes: Uint8Array; imageId?: string };
}

/** What Generation.request holds: the request as the client sent it (prompt syntax resolved), with its
 * init image by reference and the adapter files as resolved when it was submitted. */
export interface StoredRequest extends Omit<SubmitInput, 'initImage'> {
  modelId: string;
  initImage?: { path: string; sha256: string; format: string; imageId?: string };
  adapters?: ResolvedAdapters;
}

export interface SubmitDeps {
  prisma: PrismaClient;
  queue: GenerationQueue;
  images: ImageStore;
  adapters: AdapterSource;
}

export async function submitGeneration(deps: SubmitDeps, model: ModelFolderInfo, input: SubmitInput): Promise<Generation> {
  const priority = input.priority ?? 0;
  if (!Number.isInteger(priority) || priority < PRIORITY_RANGE.min || priority > PRIORITY_RANGE.max) {
    throw badInput(`priority must be an integer from ${PRIORITY_RANGE.min} to ${PRIORITY_RANGE.max}, got ${priority}`);
  }
  const { initImage: init, ...params } = input;
  const { request, adapters } = await prepareRequest(model, { ...params, initImage: init?.bytes }, deps.adapters);
  const previewEvery = input.previewEvery ?? 1;
  if (!Number.isInteger(previewEvery) || previewEvery < 0) throw badInput(`previewEvery must be 0 (no previews) or a positive integer, got ${previewEvery}`);

  const { initImage, ...sent } = input;
  let storedInit: StoredRequest['initImage'];
  if (initImage) {
    const { format } = await probeImage(initImage.bytes);
    const file = await deps.images.saveInput(format, initImage.bytes);
    storedInit = { path: file.path, sha256: file.sha256, format, imageId: initImage.imageId };
  }
  const stored: StoredRequest = { ...sent, promptSyntax: request.promptSyntax, modelId: model.id, initImage: storedInit, adapters };
  const generation = await deps.prisma.generation.create({
    data: {
      modelId: model.id,
      prompt: request.prompt,
      negativePrompt: request.negativePrompt,
      scheduler: request.scheduler,
      width: request.width,
      height: request.height,
      steps: request.steps,
      guidanceScale: request.guidanceScale,
      guidanceRescale: request.guidanceRescale,
      eta: request.eta,
      strength: request.strength ?? null,
      seed: BigInt(request.seed),
      numImages: request.numImages,
      priority,
      request: JSON.parse(JSON.stringify(stored)),
    },
  });
  deps.queue.announce(generation.id, generation.status);
  return generation;
}
