// A stand-in for the CLIP tokenizer: one id per word (`w12` is 1012), commas and other
// punctuation one id each, CLIP's special ids. Enough to test chunking without a vocabulary.
import type { PromptTokenizer } from '../../src/diffusion/prompt/chunks.ts';

export const BOS = 49406;
export const EOS = 49407;
export const COMMA = 267;

export function fakeTokenizer(padTokenId = EOS): PromptTokenizer {
  const vocab = new Map<string, number>();
  return {
    bosTokenId: BOS,
    eosTokenId: EOS,
    padTokenId,
    tokenize: (text) =>
      (text.toLowerCase().match(/[a-z0-9]+|[^\sa-z0-9]/g) ?? []).map((w) => {
        if (w === ',') return COMMA;
        const numbered = /^w(\d+)$/.exec(w);
        if (numbered) return 1000 + Number(numbered[1]);
        if (!vocab.has(w)) vocab.set(w, 30000 + vocab.size);
        return vocab.get(w)!;
      }),
  };
}

/** `w1 w2 … wn`, n tokens. */
export const words = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `w${from + i}`).join(' ');
/** The ids of `words(n, from)`. */
export const wordIds = (n: number, from = 1) => Array.from({ length: n }, (_, i) => 1000 + from + i);
