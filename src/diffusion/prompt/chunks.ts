// AUTOMATIC1111's long-prompt chunking (modules/sd_hijack_clip.py, `tokenize_line`): weighted
// segments become chunks of 75 tokens, each wrapped in start and end tokens to CLIP's 77, with one
// emphasis weight per token. The text encoder encodes each chunk separately; the pipeline
// concatenates the results along the sequence axis.

import { badInput } from '../errors.ts';
import { isBreak, type WeightedSegment } from './parse.ts';

/** What the chunker needs from a CLIP tokenizer (`ClipTokenizer` fits it). */
export interface PromptTokenizer {
  /** Token ids of a text, without start and end tokens, never truncated. */
  tokenize(text: string): number[];
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  /** The id of `,</w>`; when absent it is taken from `tokenize(',')`. */
  readonly commaTokenId?: number;
}

/** Prompt tokens per chunk, between the start and end tokens. */
export const CHUNK_LENGTH = 75;
/** A1111's `comma_padding_backtrack` default: how far back a comma may move a chunk's edge. */
export const COMMA_PADDING_BACKTRACK = 20;

/** A textual-inversion embedding found in a prompt's tokens. */
export interface EmbeddingMatch {
  name: string;
  /** The ids that stand for the embedding's vectors in the encoder's (extended) vocabulary, one per vector. */
  tokenIds: readonly number[];
  /** How many of the prompt's tokens, from the match position on, the trigger word covers. */
  tokenLength: number;
}

/**
 * The textual-inversion hook, A1111's `embeddings.find_embedding_at_position`: the embedding whose
 * trigger word starts at `tokens[position]`, if any. The chunker keeps an embedding's vectors in one
 * chunk, as A1111 does.
 */
export type FindEmbedding = (tokens: readonly number[], position: number) => EmbeddingMatch | undefined;

export interface PromptChunk {
  /** CHUNK_LENGTH + 2 ids: start token, prompt tokens, end token, then padding. */
  tokenIds: number[];
  /** Emphasis weight of each position; 1 for the start, end and padding tokens. */
  weights: number[];
  /** Where embeddings sit in `tokenIds`. */
  embeddings: { offset: number; name: string }[];
}

export interface ChunkedPrompt {
  chunks: PromptChunk[];
  /** The token count A1111's counter shows: 75 per full chunk plus the tokens of the last one. */
  tokenCount: number;
}

export interface ChunkOptions {
  findEmbedding?: FindEmbedding;
  /** 0 turns comma backtracking off. */
  commaPaddingBacktrack?: number;
}

/**
 * Wraps up to 75 tokens as [start, tokens, end, padding…]. A1111 pads with the end token and, for
 * tokenizers whose pad token differs (SD 2), replaces everything after the first end token with the
 * pad token, which is this layout; it is also diffusers' `padding="max_length"` layout.
 */
function wrap(tokens: number[], weights: number[], tokenizer: PromptTokenizer): { tokenIds: number[]; weights: number[] } {
  const padding = CHUNK_LENGTH - tokens.length;
  return {
    tokenIds: [tokenizer.bosTokenId, ...tokens, tokenizer.eosTokenId, ...new Array<number>(padding).fill(tokenizer.padTokenId)],
    weights: [1, ...weights, 1, ...new Array<number>(padding).fill(1)],
  };
}

/** The chunk of an empty prompt, which A1111 also uses to pad shorter prompts. */
export function emptyChunk(tokenizer: PromptTokenizer): PromptChunk {
  return { ...wrap([], [], tokenizer), embeddings: [] };
}

function commaTokenOf(tokenizer: PromptTokenizer): number | undefined {
  if (tokenizer.commaTokenId !== undefined) return tokenizer.commaTokenId;
  const ids = tokenizer.tokenize(',');
  return ids.length === 1 ? ids[0] : undefined;
}

/** Turns parsed segments into chunks as A1111's `tokenize_line`. */
export function chunkSegments(segments: WeightedSegment[], tokenizer: PromptTokenizer, options: ChunkOptions = {}): ChunkedPrompt {
  const backtrack = options.commaPaddingBacktrack ?? COMMA_PADDING_BACKTRACK;
  const commaToken = commaTokenOf(tokenizer);
  const chunks: PromptChunk[] = [];
  let tokens: number[] = [];
  let weights: number[] = [];
  let embeddings: { offset: number; name: string }[] = [];
  let tokenCount = 0;
  let lastComma = -1;

  const nextChunk = (isLast = false) => {
    tokenCount += isLast ? tokens.length : CHUNK_LENGTH;
    // Embedding offsets count the start token.
    chunks.push({ ...wrap(tokens, weights, tokenizer), embeddings: embeddings.map((e) => ({ ...e, offset: e.offset + 1 })) });
    tokens = [];
    weights = [];
    embeddings = [];
    lastComma = -1;
  };

  for (const segment of segments) {
    if (isBreak(segment)) {
      nextChunk();
      continue;
    }
    const ids = tokenizer.tokenize(segment.text);
    let position = 0;
    while (position < ids.length) {
      const token = ids[position];
      if (token === commaToken) {
        lastComma = tokens.length;
      } else if (backtrack !== 0 && tokens.length === CHUNK_LENGTH && lastComma !== -1 && tokens.length - lastComma <= backtrack) {
        // Move the words after the last comma into the next chunk rather than cut them apart.
        const breakAt = lastComma + 1;
        const movedTokens = tokens.slice(breakAt);
        const movedWeights = weights.slice(breakAt);
        const movedEmbeddings = embeddings.filter((e) => e.offset >= breakAt).map((e) => ({ ...e, offset: e.offset - breakAt }));
        tokens = tokens.slice(0, breakAt);
        weights = weights.slice(0, breakAt);
        embeddings = embeddings.filter((e) => e.offset < breakAt);
        nextChunk();
        tokens = movedTokens;
        weights = movedWeights;
        embeddings = movedEmbeddings;
      }
      if (tokens.length === CHUNK_LENGTH) nextChunk();

      const embedding = options.findEmbedding?.(ids, position);
      if (!embedding) {
        tokens.push(token);
        weights.push(segment.weight);
        position++;
        continue;
      }
      const vectors = embedding.tokenIds.length;
      if (embedding.tokenLength < 1) throw new RangeError(`embedding ${embedding.name} matched ${embedding.tokenLength} tokens`);
      if (vectors > CHUNK_LENGTH) throw badInput(`embedding ${embedding.name} has ${vectors} vectors; at most ${CHUNK_LENGTH} fit in a prompt chunk`);
      if (tokens.length + vectors > CHUNK_LENGTH) nextChunk();
      embeddings.push({ offset: tokens.length, name: embedding.name });
      tokens.push(...embedding.tokenIds);
      weights.push(...new Array<number>(vectors).fill(segment.weight));
      position += embedding.tokenLength;
    }
  }
  if (tokens.length > 0 || chunks.length === 0) nextChunk(true);
  return { chunks, tokenCount };
}

/** Pads each prompt's chunk list with empty chunks to the longest, so they can share one batch. */
export function padToSameChunkCount(prompts: PromptChunk[][], tokenizer: PromptTokenizer): PromptChunk[][] {
  const count = Math.max(1, ...prompts.map((chunks) => chunks.length));
  return prompts.map((chunks) => [...chunks, ...Array.from({ length: count - chunks.length }, () => emptyChunk(tokenizer))]);
}

/** Whether any token of the chunk carries a weight other than 1 (then emphasis must be applied). */
export const isWeighted = (chunk: PromptChunk) => chunk.weights.some((w) => w !== 1);
