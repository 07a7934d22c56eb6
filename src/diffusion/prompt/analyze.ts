// What a prompt amounts to before it runs, for a panel's token counter: tokens, chunks, weights, LoRA
// tags and embeddings under the A1111 syntax, with the model's own tokenizer.
import type { AdapterSource } from '../adapters.ts';
import { embeddingsUsedIn, type EmbeddingInfo } from '../embeddings.ts';
import { badInput, invalidModel } from '../errors.ts';
import { LIMITS } from '../limits.ts';
import type { ModelFolderInfo } from '../model-folder.ts';
import { DEFAULTS } from '../request.ts';
import { ClipTokenizer } from '../tokenizer.ts';
import type { EmbeddingMatch, FindEmbedding } from './chunks.ts';
import { extractLoraTags, type LoraTag } from './lora-tags.ts';
import { summarizePrompt, type PromptTokenSummary } from './prepare.ts';

export interface PromptAnalysis extends PromptTokenSummary {
  /** The `<lora:…>` tags, each with whether the source has a usable LoRA of its name. */
  loras: (LoraTag & { found: boolean })[];
  /** Trigger words of the usable embeddings the prompt calls up. */
  embeddings: string[];
}

// Tokenizers by model, loaded on first use; a rescan describes models anew, so stale entries drop out.
const tokenizers = new WeakMap<ModelFolderInfo, Promise<ClipTokenizer>>();

/** The model's tokenizer, read once per model description; MODEL_INVALID when the model or its tokenizer cannot be used. */
function modelTokenizer(model: ModelFolderInfo): Promise<ClipTokenizer> {
  if (model.error) throw invalidModel(`model ${model.id} cannot be used: ${model.error}`);
  let tokenizer = tokenizers.get(model);
  if (!tokenizer) {
    tokenizer = ClipTokenizer.fromFolder(model.paths.tokenizer).catch((error: Error) => {
      tokenizers.delete(model);
      throw invalidModel(`model ${model.id}: its tokenizer cannot be read: ${error.message}`);
    });
    tokenizers.set(model, tokenizer);
  }
  return tokenizer;
}

function checkLength(name: string, text: string): void {
  if (text.length > LIMITS.maxPromptChars) throw badInput(`${name} is ${text.length} characters; the limit is ${LIMITS.maxPromptChars}`);
}

/** CLIP token ids of a text, with the start and end tokens, no padding and no truncation; no prompt syntax is read. */
export async function tokenizeText(model: ModelFolderInfo, text: string): Promise<number[]> {
  checkLength('text', text);
  return (await modelTokenizer(model)).encode(text);
}

/**
 * The prompt as AUTOMATIC1111's token counter counts it: prompt edits scheduled over `steps`
 * (DEFAULTS.steps when left out), LoRA tags looked up and embeddings found through `adapters`.
 */
export async function analyzePrompt(model: ModelFolderInfo, prompt: string, options: { steps?: number; adapters: AdapterSource }): Promise<PromptAnalysis> {
  checkLength('prompt', prompt);
  const steps = options.steps ?? DEFAULTS.steps;
  if (!Number.isInteger(steps) || steps < LIMITS.minSteps || steps > LIMITS.maxSteps) {
    throw badInput(`steps must be an integer from ${LIMITS.minSteps} to ${LIMITS.maxSteps}, got ${steps}`);
  }
  const tokenizer = await modelTokenizer(model);
  const available = await options.adapters.embeddings();
  const used = new Set(embeddingsUsedIn([extractLoraTags(prompt).prompt], available).map((e) => e.token));
  const summary = summarizePrompt(prompt, tokenizer, { steps, findEmbedding: embeddingCounter(tokenizer, available.filter((e) => used.has(e.name))) });
  return {
    ...summary,
    loras: summary.loras.map((tag) => {
      const lora = options.adapters.lora(tag.name);
      return { ...tag, found: lora !== undefined && !lora.error };
    }),
    embeddings: [...used],
  };
}

/**
 * Embeddings found by their trigger word's tokens, as AUTOMATIC1111 finds them. Only the count of
 * their vectors matters to the counter, so the ids stand in for the ones loading them would add.
 */
function embeddingCounter(tokenizer: ClipTokenizer, embeddings: EmbeddingInfo[]): FindEmbedding {
  const known = embeddings.map((e) => ({ name: e.name, ids: tokenizer.tokenize(e.name), vectors: e.vectors ?? 1 })).filter((e) => e.ids.length > 0);
  return (tokens, position): EmbeddingMatch | undefined => {
    const found = known.find((e) => e.ids.every((id, k) => tokens[position + k] === id));
    return found && { name: found.name, tokenIds: new Array<number>(found.vectors).fill(tokenizer.padTokenId), tokenLength: found.ids.length };
  };
}
