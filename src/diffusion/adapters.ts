// The LoRA and embedding files a request uses: LoRAs by id (its `loras` and its prompt's
// `<lora:name:weight>` tags) and embeddings by the trigger words its prompts hold, looked up in a
// source (the server's registry, or the folders themselves) and checked against the model.
import { embeddingsUsedIn, listEmbeddings, type EmbeddingInfo, type EmbeddingRequest } from './embeddings.ts';
import { badInput } from './errors.ts';
import { checkAdapters, type LoraRequest } from './lora/adapt.ts';
import { checkLoraFamily } from './lora/lora-file.ts';
import { listLoras, type LoraFileInfo } from './lora/lora-info.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import { extractLoraTags } from './prompt/lora-tags.ts';
import { promptLoraTags, resolveRequest, type GenerateParams, type GenerateRequest, type PromptSyntax } from './request.ts';

/** A LoRA by id, at a weight (text encoder and UNet alike). */
export interface LoraChoice {
  id: string;
  weight: number;
}

/** What resolving needs to know of a LoRA file. */
export type LoraFileRef = Pick<LoraFileInfo, 'path' | 'baseModelVersion' | 'error'>;

/** Where LoRA ids and embedding trigger words are looked up. */
export interface AdapterSource {
  lora(id: string): LoraFileRef | undefined;
  embeddings(): Promise<EmbeddingInfo[]>;
}

/** LoRAs from `loras` (the server's registry, as last scanned) and the embeddings of a folder, read when asked (files come and go). */
export function adapterSource(loras: Pick<AdapterSource, 'lora'>, embeddingsDir: string): AdapterSource {
  return { lora: (id) => loras.lora(id), embeddings: () => listEmbeddings(embeddingsDir) };
}

/** LoRAs and embeddings straight from their folders, as the server's registry would list them; the LoRAs as they are now. */
export async function folderAdapterSource(lorasDir: string, embeddingsDir: string): Promise<AdapterSource> {
  const loras = new Map((await listLoras(lorasDir)).map((l) => [l.id, l]));
  return adapterSource({ lora: (id) => loras.get(id) }, embeddingsDir);
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
  model: Pick<ModelFolderInfo, 'id' | 'family'>,
  request: { prompt: string; negativePrompt?: string; prompt2?: string; negativePrompt2?: string; promptSyntax: PromptSyntax; loras?: LoraChoice[] },
): Promise<ResolvedAdapters> {
  const lookUp = (id: string) => {
    const info = source.lora(id);
    if (!info) throw badInput(`no LoRA is named "${id}" (the \`loras\` query lists them; after adding files, run rescanModels)`);
    if (info.error) throw badInput(`LoRA "${id}" cannot be used: ${info.error}`);
    checkLoraFamily(id, info.baseModelVersion, model);
    return info.path;
  };
  const loras: LoraRequest[] = [
    ...(request.loras ?? []).map(({ id, weight }) => ({ name: id, path: lookUp(id), weight })),
    ...promptLoraTags(request.prompt, request.promptSyntax).map((tag) => ({ name: tag.name, path: lookUp(tag.name), weight: tag.weight, unetWeight: tag.unetWeight })),
  ];
  const texts = [request.promptSyntax === 'A1111' ? extractLoraTags(request.prompt).prompt : request.prompt, request.negativePrompt ?? '', request.prompt2 ?? '', request.negativePrompt2 ?? ''];
  const available = await source.embeddings();
  const warnings = available
    .filter((e) => e.error && texts.some((text) => text.includes(e.name)))
    .map((e) => `embedding "${e.name}" cannot be used: ${e.error}`);
  const embeddings = embeddingsUsedIn(texts, available);
  checkAdapters(loras, embeddings);
  return { loras, embeddings, warnings };
}

/** A request as a caller writes it, LoRAs by id. */
export interface RequestParams extends Omit<GenerateParams, 'loras' | 'embeddings'> {
  /** Applied with the prompt's `<lora:…>` tags. */
  loras?: LoraChoice[];
}

/**
 * What the server and `sdql generate` alike do before the engine runs: a model that cannot run
 * refused, the request checked against the model with its defaults filled in, then its LoRAs and
 * embeddings resolved from `source`. BAD_USER_INPUT for anything the caller can change.
 * `upscalers`: the ids of the model upscalers a hires request may name.
 */
export async function prepareRequest(
  model: ModelFolderInfo,
  params: RequestParams,
  source: AdapterSource,
  upscalers: readonly string[] = [],
): Promise<{ request: GenerateRequest; adapters: ResolvedAdapters }> {
  if (model.error) throw badInput(`model ${model.id} cannot be used: ${model.error}`);
  if (!model.supported) throw badInput(`model ${model.id} is ${model.family}, which sdql does not run yet`);
  const { loras, ...rest } = params;
  const request = await resolveRequest(model, rest, (id) => upscalers.includes(id));
  const adapters = await resolveAdapters(source, model, { ...request, loras });
  if (adapters.loras.length) request.loras = adapters.loras;
  if (adapters.embeddings.length) request.embeddings = adapters.embeddings;
  return { request, adapters };
}
