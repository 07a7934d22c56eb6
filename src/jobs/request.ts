// Submitting a generation: the request is validated against its model and resolved (defaults,
// seed, size, LoRA and embedding files) before anything is stored, then stored as one QUEUED row
// that is the job itself.
import { z } from 'zod';
import type { Generation, Prisma, PrismaClient } from '../db/index.ts';
import { badInput, countUnetCalls, prepareRequest, resolveUpscale, SCHEDULE_TYPES, verifyImage, type UpscalerInfo, type VaeFile, type AdapterSource, type HiresRequest, type ModelFolderInfo, type RequestParams, type ResolvedAdapters, type ScheduleType } from '../diffusion/index.ts';
import type { ImageStore } from './image-store.ts';
import type { GenerationQueue } from './queue.ts';

export const PRIORITY_RANGE = { min: -100, max: 100 } as const;

/** A generation refused because its owner has as many queued as it may (SDQL_MAX_QUEUED). */
export class QuotaExceededError extends Error {
  override name = 'QuotaExceededError';
  readonly code = 'QUOTA_EXCEEDED';
}

/** Whose generation it is, and how many it may have queued at once. */
export interface Submitter {
  owner: string;
  maxQueued: number;
}

export interface SubmitInput extends Omit<RequestParams, 'initImage' | 'mask'> {
  /** Higher runs first; equal priorities run in submission order. */
  priority?: number;
  /** Send a preview every N steps (0: none). */
  previewEvery?: number;
  /** The id of a separate VAE file (`SDQL_MODELS_DIR/vae/`) used instead of the model's own. */
  vae?: string;
  initImage?: { bytes: Uint8Array; imageId?: string };
  mask?: { bytes: Uint8Array; imageId?: string };
}

/** An input image as a stored request refers to it: a content-addressed file of the image store. */
export interface StoredInput {
  path: string;
  sha256: string;
  format: string;
  imageId?: string;
}

/** What Generation.request holds: the request as the client sent it (prompt syntax, schedule type and
 * clip skip resolved), with its init image and mask by reference and the adapter files as resolved
 * when it was submitted. */
export interface StoredRequest extends Omit<SubmitInput, 'initImage' | 'mask' | 'hires' | 'scheduleType'> {
  scheduleType?: ScheduleType;
  /** Resolved, as it runs. */
  hires?: HiresRequest;
  modelId: string;
  initImage?: StoredInput;
  mask?: StoredInput;
  adapters?: ResolvedAdapters;
}

const optionalNumber = z.number().optional();
const storedInputSchema = z.strictObject({ path: z.string(), sha256: z.string(), format: z.string(), imageId: z.string().optional() });

/** Generation.request is JSON that other versions and processes wrote: checked when read, never cast. */
const storedRequestSchema = z.strictObject({
  modelId: z.string(),
  prompt: z.string(),
  negativePrompt: z.string().optional(),
  promptSyntax: z.string().optional(),
  prompt2: z.string().optional(),
  negativePrompt2: z.string().optional(),
  originalSize: z.strictObject({ width: z.number(), height: z.number() }).optional(),
  cropTopLeft: z.strictObject({ top: z.number(), left: z.number() }).optional(),
  targetSize: z.strictObject({ width: z.number(), height: z.number() }).optional(),
  width: optionalNumber,
  height: optionalNumber,
  steps: optionalNumber,
  guidanceScale: optionalNumber,
  guidanceRescale: optionalNumber,
  scheduler: z.string().optional(),
  scheduleType: z.enum(SCHEDULE_TYPES).optional(),
  clipSkip: optionalNumber,
  seed: optionalNumber,
  numImages: optionalNumber,
  eta: optionalNumber,
  strength: optionalNumber,
  variationSeed: optionalNumber,
  variationStrength: optionalNumber,
  hires: z
    .strictObject({ width: z.number(), height: z.number(), scale: optionalNumber, upscaler: z.string(), steps: z.number(), strength: z.number() })
    .optional(),
  priority: optionalNumber,
  previewEvery: optionalNumber,
  loras: z.array(z.strictObject({ id: z.string(), weight: z.number() })).optional(),
  vae: z.string().optional(),
  initImage: storedInputSchema.optional(),
  mask: storedInputSchema.optional(),
  invertMask: z.boolean().optional(),
  maskBlur: optionalNumber,
  inpaintFill: z.string().optional(),
  inpaintArea: z.string().optional(),
  onlyMaskedPadding: optionalNumber,
  restoreUnmasked: z.boolean().optional(),
  outpaint: z.strictObject({ left: z.number(), right: z.number(), top: z.number(), bottom: z.number() }).optional(),
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

/** The input files (init image, mask; an upscale's image) a row's request refers to, when the request can be read. */
export function inputPathsOf(generation: { request: unknown }): string[] {
  const parsed = storedRequestSchema.safeParse(generation.request);
  if (parsed.success) return [parsed.data.initImage?.path, parsed.data.mask?.path].filter((p) => p !== undefined);
  const upscale = storedUpscaleSchema.safeParse(generation.request);
  return upscale.success ? [upscale.data.image.path] : [];
}

/**
 * Removes input files once no generation refers to them: inputs are stored by content, so one file
 * may serve several generations and upscales, as an init image, a mask or an upscale's image.
 */
export async function releaseInputs(prisma: PrismaClient, images: ImageStore, paths: string[]): Promise<void> {
  for (const path of new Set(paths)) {
    const [{ uses }] = await prisma.$queryRaw<{ uses: number }[]>`
      SELECT count(*)::int AS uses FROM "Generation"
      WHERE request -> 'initImage' ->> 'path' = ${path} OR request -> 'mask' ->> 'path' = ${path} OR request -> 'image' ->> 'path' = ${path}`;
    if (uses === 0) await images.remove([path]);
  }
}

/** What an UPSCALE row's request holds: the upscale resolved, its image by reference, and the scale as sent. */
export interface StoredUpscale {
  upscaler: string;
  /** As it runs: the one sent, or the upscaler's own. */
  scale: number;
  /** As sent; absent for the upscaler's own. */
  requestedScale?: number;
  priority?: number;
  image: StoredInput;
}

const storedUpscaleSchema = z.strictObject({
  upscaler: z.string(),
  scale: z.number(),
  requestedScale: optionalNumber,
  priority: optionalNumber,
  image: storedInputSchema,
}) satisfies z.ZodType<StoredUpscale>;

/** The stored request of an UPSCALE row; an Error that says what is wrong when it does not hold one. */
export function readStoredUpscale(row: { id: string; request: unknown }): StoredUpscale {
  const parsed = storedUpscaleSchema.safeParse(row.request);
  if (!parsed.success) throw new Error(`the stored request of upscale ${row.id} cannot be read: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

export interface UpscaleInput {
  image: { bytes: Uint8Array; imageId?: string };
  upscaler: string;
  scale?: number;
  priority?: number;
}

/**
 * Queues an upscale: checked (image, upscaler, scale, the result's size) before anything is stored,
 * then one QUEUED row of kind UPSCALE whose steps are the upscaler's tiles.
 */
export async function submitUpscale(deps: Pick<SubmitDeps, 'prisma' | 'queue' | 'images' | 'listUpscalers'>, input: UpscaleInput, submitter: Submitter): Promise<Generation> {
  const priority = checkPriority(input.priority);
  const request = await resolveUpscale(input.image.bytes, { upscaler: input.upscaler, scale: input.scale }, (await deps.listUpscalers?.()) ?? []);
  return enqueue(deps, submitter, { image: { ...input.image, format: request.format } }, ({ image: file }) => {
    const stored: StoredUpscale = { upscaler: request.upscaler, scale: request.scale, requestedScale: input.scale, priority: input.priority, image: file! };
    return {
      kind: 'UPSCALE',
      // The denoising columns hold neutral values: an upscale has no prompt, sampler or seed.
      prompt: '',
      scheduler: '',
      steps: 0,
      guidanceScale: 0,
      seed: 0n,
      width: request.width,
      height: request.height,
      totalSteps: request.tiles,
      priority,
      request: JSON.parse(JSON.stringify(stored)),
    };
  });
}

function checkPriority(priority = 0): number {
  if (!Number.isInteger(priority) || priority < PRIORITY_RANGE.min || priority > PRIORITY_RANGE.max) {
    throw badInput(`priority must be an integer from ${PRIORITY_RANGE.min} to ${PRIORITY_RANGE.max}, got ${priority}`);
  }
  return priority;
}

export interface SubmitDeps {
  prisma: PrismaClient;
  queue: GenerationQueue;
  images: ImageStore;
  adapters: AdapterSource;
  /** The ids of the model upscalers (hires requests are checked against them). */
  upscalers?: () => Promise<string[]>;
  /** The model upscalers with their scales (upscales are checked against them). */
  listUpscalers?: () => Promise<UpscalerInfo[]>;
  /** The separate VAE files (`vae` is checked against them). */
  vaes?: () => Promise<VaeFile[]>;
}

/** Checks that the VAE file `id` exists, can be read and makes latents the model's UNet takes. */
function checkVae(model: ModelFolderInfo, id: string, vaes: VaeFile[]): void {
  const vae = vaes.find((v) => v.id === id);
  if (!vae) throw badInput(`unknown VAE "${id}": the \`vaes\` query lists the files of SDQL_MODELS_DIR/vae/ (${vaes.map((v) => v.id).join(', ') || 'none'})`);
  if (vae.error) throw badInput(`VAE "${id}" cannot be used: ${vae.error}`);
  // An inpainting UNet takes latents, masked-image latents and the mask: 2·latent + 1 channels.
  const latentChannels = model.unetInChannels % 2 === 1 ? (model.unetInChannels - 1) / 2 : model.unetInChannels;
  if (vae.latentChannels !== latentChannels || vae.scaleFactor !== model.vaeScaleFactor) {
    throw badInput(
      `VAE "${id}" does not fit model ${model.id}: it makes ${vae.latentChannels}-channel latents of 1/${vae.scaleFactor} the image's size, the model takes ${latentChannels}-channel latents of 1/${model.vaeScaleFactor}`,
    );
  }
}

export async function submitGeneration(deps: SubmitDeps, model: ModelFolderInfo, input: SubmitInput, submitter: Submitter): Promise<Generation> {
  const priority = checkPriority(input.priority);
  const { initImage: init, mask: maskInput, vae, ...params } = input;
  if (vae !== undefined) checkVae(model, vae, (await deps.vaes?.()) ?? []);
  const upscalers = params.hires ? ((await deps.upscalers?.()) ?? []) : [];
  const { request, adapters } = await prepareRequest(model, { ...params, initImage: init?.bytes, mask: maskInput?.bytes }, deps.adapters, upscalers);
  const previewEvery = input.previewEvery ?? 1;
  if (!Number.isInteger(previewEvery) || previewEvery < 0) throw badInput(`previewEvery must be 0 (no previews) or a positive integer, got ${previewEvery}`);

  const { initImage, mask, ...sent } = input;
  // Both decoded whole before either is written: a damaged mask leaves no init image file behind.
  const inputs = {
    initImage: initImage && { ...initImage, format: (await verifyImage(initImage.bytes)).format },
    mask: mask && { ...mask, format: (await verifyImage(mask.bytes, 'mask')).format },
  };
  return enqueue(deps, submitter, inputs, (files) => {
    const stored: StoredRequest = {
      ...sent,
      promptSyntax: request.promptSyntax,
      // A random variation seed is recorded as drawn.
      variationSeed: request.variationSeed ?? sent.variationSeed,
      hires: request.hires,
      scheduleType: request.scheduleType,
      clipSkip: request.clipSkip,
      modelId: model.id,
      ...files,
      adapters,
    };
    return {
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
      // Known before it runs, so that every progress event can say it.
      totalSteps: countUnetCalls(model, request),
      priority,
      request: JSON.parse(JSON.stringify(stored)),
    };
  });
}

/** An input image decoded whole (so it is known to be readable) and not yet written. */
interface VerifiedInput {
  bytes: Uint8Array;
  imageId?: string;
  format: string;
}

/**
 * Writes the input files, then inserts the QUEUED row `row` makes of them, unless the owner has
 * SDQL_MAX_QUEUED rows queued (generations and upscales alike). A row that cannot be stored leaves
 * no file behind.
 */
export async function enqueue<K extends string>(
  deps: Pick<SubmitDeps, 'prisma' | 'queue' | 'images'>,
  { owner, maxQueued }: Submitter,
  inputs: Record<K, VerifiedInput | undefined>,
  row: (files: Record<K, StoredInput | undefined>) => Omit<Prisma.GenerationUncheckedCreateInput, 'owner'>,
): Promise<Generation> {
  const saved: string[] = [];
  let generation: Generation;
  try {
    const files = {} as Record<K, StoredInput | undefined>;
    for (const [key, image] of Object.entries(inputs) as [K, VerifiedInput | undefined][]) {
      if (!image) continue;
      const file = await deps.images.saveInput(image.format, image.bytes);
      saved.push(file.path);
      files[key] = { path: file.path, sha256: file.sha256, format: image.format, imageId: image.imageId };
    }
    const data = { ...row(files), owner };
    // Counting and inserting under a lock per owner, so that concurrent requests cannot pass the quota together.
    generation = await deps.prisma.$transaction(async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`sdql-quota:${owner}`}::text))`;
      const queued = await tx.generation.count({ where: { owner, status: 'QUEUED' } });
      if (queued >= maxQueued) {
        throw new QuotaExceededError(`"${owner}" has ${queued} generations and upscales queued, the most SDQL_MAX_QUEUED allows: wait for some to run, or cancel some`);
      }
      return tx.generation.create({ data });
    });
  } catch (error) {
    await releaseInputs(deps.prisma, deps.images, saved);
    throw error;
  }
  deps.queue.announce(generation.id, generation.status);
  return generation;
}
