// Submitting a generation: the request is validated against its model and resolved (defaults,
// seed, size, LoRA and embedding files) before anything is stored, then stored as one QUEUED row
// that is the job itself.
import { z } from 'zod';
import type { Generation, PrismaClient } from '../db/index.ts';
import { badInput, prepareRequest, verifyImage, type AdapterSource, type ModelFolderInfo, type RequestParams, type ResolvedAdapters } from '../diffusion/index.ts';
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

const optionalNumber = z.number().optional();

/** Generation.request is JSON that other versions and processes wrote: checked when read, never cast. */
const storedRequestSchema = z.strictObject({
  modelId: z.string(),
  prompt: z.string(),
  negativePrompt: z.string().optional(),
  promptSyntax: z.string().optional(),
  width: optionalNumber,
  height: optionalNumber,
  steps: optionalNumber,
  guidanceScale: optionalNumber,
  guidanceRescale: optionalNumber,
  scheduler: z.string().optional(),
  seed: optionalNumber,
  numImages: optionalNumber,
  eta: optionalNumber,
  strength: optionalNumber,
  priority: optionalNumber,
  previewEvery: optionalNumber,
  loras: z.array(z.strictObject({ id: z.string(), weight: z.number() })).optional(),
  initImage: z.strictObject({ path: z.string(), sha256: z.string(), format: z.string(), imageId: z.string().optional() }).optional(),
  adapters: z
    .strictObject({
      loras: z.array(z.strictObject({ name: z.string(), path: z.string(), weight: z.number(), unetWeight: z.number().optional() })),
      embeddings: z.array(z.strictObject({ token: z.string(), path: z.string() })),
      warnings: z.array(z.string()),
    })
    .optional(),
}) satisfies z.ZodType<StoredRequest>;

/** The stored request of a generation; an Error that says what is wrong when it does not hold one. */
export function readStoredRequest(generation: { id: string; request: unknown }): StoredRequest {
  const parsed = storedRequestSchema.safeParse(generation.request);
  if (!parsed.success) throw new Error(`the stored request of generation ${generation.id} cannot be read: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The init image file a generation's request refers to, if it has one and the request can be read. */
export function inputPathOf(generation: { request: unknown }): string | undefined {
  const parsed = storedRequestSchema.safeParse(generation.request);
  return parsed.success ? parsed.data.initImage?.path : undefined;
}

/**
 * Removes an input file once no generation refers to it: inputs are stored by content, so one file
 * may serve several generations.
 */
export async function releaseInput(prisma: PrismaClient, images: ImageStore, path: string): Promise<void> {
  const [{ uses }] = await prisma.$queryRaw<{ uses: number }[]>`
    SELECT count(*)::int AS uses FROM "Generation" WHERE request -> 'initImage' ->> 'path' = ${path}`;
  if (uses === 0) await images.remove([path]);
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
    const { format } = await verifyImage(initImage.bytes);
    const file = await deps.images.saveInput(format, initImage.bytes);
    storedInit = { path: file.path, sha256: file.sha256, format, imageId: initImage.imageId };
  }
  const stored: StoredRequest = { ...sent, promptSyntax: request.promptSyntax, modelId: model.id, initImage: storedInit, adapters };
  const generation = await deps.prisma.generation
    .create({
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
    })
    .catch(async (error: unknown) => {
      // A request that could not be stored leaves no file behind.
      if (storedInit) await releaseInput(deps.prisma, deps.images, storedInit.path);
      throw error;
    });
  deps.queue.announce(generation.id, generation.status);
  return generation;
}
