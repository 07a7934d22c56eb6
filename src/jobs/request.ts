// Submitting a generation: the request is validated against its model and resolved (defaults,
// seed, size, LoRA and embedding files) before anything is stored, then stored as one QUEUED row
// that is the job itself.
import type { Generation, PrismaClient } from '../db/index.ts';
import { embeddingsUsedIn, listEmbeddings, type EmbeddingInfo, type EmbeddingRequest } from '../diffusion/embeddings.ts';
import { badInput } from '../diffusion/errors.ts';
import { probeImage } from '../diffusion/image.ts';
import { checkAdapters, type LoraRequest } from '../diffusion/lora/adapt.ts';
import { checkLoraFamily, familyOfVersion } from '../diffusion/lora/lora-file.ts';
import type { ModelFolderInfo } from '../diffusion/model-folder.ts';
import { promptLoraTags, resolveRequest, type GenerateParams, type PromptSyntax } from '../diffusion/pipeline.ts';
import { extractLoraTags } from '../diffusion/prompt/lora-tags.ts';
import type { LoraFileInfo } from '../registry/index.ts';
import type { ImageStore } from './image-store.ts';
import type { GenerationQueue } from './queue.ts';

export const PRIORITY_RANGE = { min: -100, max: 100 } as const;

/** A LoRA of the registry, by id, at a weight (text encoder and UNet alike). */
export interface LoraChoice {
  id: string;
  weight: number;
}

export interface SubmitInput extends Omit<GenerateParams, 'initImage' | 'loras' | 'embeddings'> {
  /** Higher runs first; equal priorities run in submission order. */
  priority?: number;
  /** Send a preview every N steps (0: none). */
  previewEvery?: number;
  initImage?: { bytes: Uint8Array; imageId?: string };
  /** Applied with the prompt's `<lora:…>` tags. */
  loras?: LoraChoice[];
}

/** What Generation.request holds: the request as the client sent it (prompt syntax resolved), with its
 * init image by reference and the adapter files as resolved when it was submitted. */
export interface StoredRequest extends Omit<SubmitInput, 'initImage'> {
  modelId: string;
  initImage?: { path: string; sha256: string; format: string; imageId?: string };
  adapters?: ResolvedAdapters;
}

/** Where LoRA ids and embedding trigger words are looked up. */
export interface AdapterSource {
  lora(id: string): LoraFileInfo | undefined;
  embeddings(): Promise<EmbeddingInfo[]>;
}

/** The registry's LoRAs and the embeddings of SDQL_EMBEDDINGS_DIR, read when asked (files come and go). */
export function adapterSource(registry: Pick<AdapterSource, 'lora'>, embeddingsDir: string): AdapterSource {
  return { lora: (id) => registry.lora(id), embeddings: () => listEmbeddings(embeddingsDir) };
}

export interface ResolvedAdapters {
  loras: LoraRequest[];
  embeddings: EmbeddingRequest[];
  /** Embeddings the prompts name that cannot be used. */
  warnings: string[];
}

/**
 * The LoRA files of `loras` and of the prompt's `<lora:name:weight>` tags, and the embeddings whose
 * trigger words the prompts use. BAD_USER_INPUT for a LoRA that is unknown, unreadable or made for
 * another family than the model. Run when a request is submitted and again before it runs.
 */
export async function resolveAdapters(
  source: AdapterSource,
  model: ModelFolderInfo,
  request: { prompt: string; negativePrompt?: string; promptSyntax: PromptSyntax; loras?: LoraChoice[] },
): Promise<ResolvedAdapters> {
  const lookUp = (id: string) => {
    const info = source.lora(id);
    if (!info) throw badInput(`no LoRA is named "${id}" (the \`loras\` query lists them; after adding files, run rescanModels)`);
    if (info.error) throw badInput(`LoRA "${id}" cannot be used: ${info.error}`);
    const { baseModelVersion } = info;
    checkLoraFamily({ name: id, path: info.path, modules: [], unsupported: [], family: familyOfVersion(baseModelVersion), baseModelVersion }, model.id, model.family);
    return info.path;
  };
  const loras: LoraRequest[] = [
    ...(request.loras ?? []).map(({ id, weight }) => ({ name: id, path: lookUp(id), weight })),
    ...promptLoraTags(request.prompt, request.promptSyntax).map((tag) => ({ name: tag.name, path: lookUp(tag.name), weight: tag.weight, unetWeight: tag.unetWeight })),
  ];
  const texts = [request.promptSyntax === 'A1111' ? extractLoraTags(request.prompt).prompt : request.prompt, request.negativePrompt ?? ''];
  const available = await source.embeddings();
  const warnings = available
    .filter((e) => e.error && texts.some((text) => text.includes(e.name)))
    .map((e) => `embedding "${e.name}" cannot be used: ${e.error}`);
  const embeddings = embeddingsUsedIn(texts, available);
  checkAdapters(loras, embeddings);
  return { loras, embeddings, warnings };
}

export interface SubmitDeps {
  prisma: PrismaClient;
  queue: GenerationQueue;
  images: ImageStore;
  adapters: AdapterSource;
}

export async function submitGeneration(deps: SubmitDeps, model: ModelFolderInfo, input: SubmitInput): Promise<Generation> {
  if (model.error) throw badInput(`model ${model.id} cannot be used: ${model.error}`);
  if (!model.supported) throw badInput(`model ${model.id} is ${model.family}, which sdql does not run yet`);
  const priority = input.priority ?? 0;
  if (!Number.isInteger(priority) || priority < PRIORITY_RANGE.min || priority > PRIORITY_RANGE.max) {
    throw badInput(`priority must be an integer from ${PRIORITY_RANGE.min} to ${PRIORITY_RANGE.max}, got ${priority}`);
  }
  const { loras, initImage: init, ...params } = input;
  const request = await resolveRequest(model, { ...params, initImage: init?.bytes });
  const adapters = await resolveAdapters(deps.adapters, model, { ...request, loras });
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
