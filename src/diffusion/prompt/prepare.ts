// The prompt pipeline in the order AUTOMATIC1111 runs it: LoRA tags out of the prompt, prompt
// editing into one text per schedule entry, attention weights, then 75-token chunks. The text
// encoder stage encodes each chunk, applies `applyEmphasis` to chunks where `isWeighted`, and
// concatenates a text's chunks; the denoising loop picks a text per step with `textIndexAtStep`.

import { badInput } from '../errors.ts';
import { chunkSegments, CHUNK_LENGTH, padToSameChunkCount, type FindEmbedding, type PromptChunk, type PromptTokenizer } from './chunks.ts';
import { extractLoraTags, type LoraTag } from './lora-tags.ts';
import { parsePromptAttention, type WeightedSegment } from './parse.ts';
import { conditioningPlan } from './schedule.ts';

/** A1111: the syntax above. PLAIN: diffusers' behaviour, the text as is, truncated to one chunk. */
export type PromptSyntax = 'A1111' | 'PLAIN';

export interface PreparedText {
  text: string;
  segments: WeightedSegment[];
  /** Padded with empty chunks to {@link PreparedPrompts.chunkCount}. */
  chunks: PromptChunk[];
}

export interface PreparedConditioning {
  texts: PreparedText[];
  /** For each denoising step index (0-based), the index in `texts` of the text to condition on. */
  textIndexAtStep: number[];
}

export interface PreparedPrompts {
  loras: LoraTag[];
  positive: PreparedConditioning;
  negative: PreparedConditioning;
  /** Chunks per text, the same for every text of both sides so that they batch together. */
  chunkCount: number;
}

export interface PreparePromptsInput {
  prompt: string;
  negativePrompt: string;
  steps: number;
  syntax: PromptSyntax;
  tokenizer: PromptTokenizer;
  findEmbedding?: FindEmbedding;
}

/**
 * A prompt of at most 75 tokens without special syntax gives one text per side and one chunk
 * that is exactly diffusers' input ids, with all weights 1, in both syntaxes.
 *
 * LoRA tags are read from the prompt only; in the negative prompt they are text, as in A1111.
 * Padding prompt and negative prompt to the same chunk count is A1111's "pad prompt/negative
 * prompt to be same length" option; by default A1111 runs them through the UNet separately.
 */
export function preparePrompts(input: PreparePromptsInput): PreparedPrompts {
  const { tokenizer, findEmbedding, steps } = input;
  let prompt = input.prompt;
  let loras: LoraTag[] = [];
  if (input.syntax === 'A1111') {
    const extracted = extractLoraTags(prompt);
    if (extracted.invalid.length > 0) throw badInput(`invalid LoRA tag ${extracted.invalid.join(', ')}: expected <lora:name:weight>`);
    prompt = extracted.prompt;
    loras = extracted.loras;
  }
  const sides = [prompt, input.negativePrompt].map((text) => {
    if (input.syntax === 'PLAIN') {
      const segments = [{ text, weight: 1 }];
      const { chunks } = chunkSegments(segments, tokenizer, { findEmbedding, commaPaddingBacktrack: 0 });
      return { texts: [{ text, segments, chunks: chunks.slice(0, 1) }], textIndexAtStep: new Array<number>(steps).fill(0) };
    }
    const plan = conditioningPlan(text, steps);
    const texts = plan.texts.map((t) => {
      const segments = parsePromptAttention(t);
      return { text: t, segments, chunks: chunkSegments(segments, tokenizer, { findEmbedding }).chunks };
    });
    return { texts, textIndexAtStep: plan.textIndexAtStep };
  });

  const all = sides.flatMap((side) => side.texts);
  const padded = padToSameChunkCount(
    all.map((t) => t.chunks),
    tokenizer,
  );
  all.forEach((t, i) => (t.chunks = padded[i]));
  return { loras, positive: sides[0], negative: sides[1], chunkCount: padded[0].length };
}

export interface PromptTokenSummary {
  /** A1111's token counter: the largest count over the prompt's scheduled texts. */
  tokenCount: number;
  /** The count at which another chunk begins (A1111 shows `tokenCount/maxLength`). */
  maxLength: number;
  chunkCount: number;
  /** The weighted segments of the text counted. */
  segments: WeightedSegment[];
  loras: LoraTag[];
}

/** What A1111's token counter shows for a prompt, for the panel (the `promptTokens` query). */
export function summarizePrompt(
  prompt: string,
  tokenizer: PromptTokenizer,
  options: { steps: number; findEmbedding?: FindEmbedding },
): PromptTokenSummary {
  // Tags that do not parse are dropped here as A1111's counter does; generating reports them.
  const { prompt: text, loras } = extractLoraTags(prompt);
  let best: Omit<PromptTokenSummary, 'loras' | 'maxLength'> | null = null;
  for (const t of conditioningPlan(text, options.steps).texts) {
    const segments = parsePromptAttention(t);
    const { chunks, tokenCount } = chunkSegments(segments, tokenizer, { findEmbedding: options.findEmbedding });
    if (!best || tokenCount > best.tokenCount) best = { tokenCount, chunkCount: chunks.length, segments };
  }
  const { tokenCount } = best!;
  return { ...best!, maxLength: Math.ceil(Math.max(tokenCount, 1) / CHUNK_LENGTH) * CHUNK_LENGTH, loras };
}
