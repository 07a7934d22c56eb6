// CLIP's byte-level BPE tokenizer, behaving as transformers' slow CLIPTokenizer without ftfy installed
// (its BasicTokenizer cleanup: no HTML unescaping, accents kept), which is what diffusers' reference ran.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ClipTokenizerFiles {
  vocab: Record<string, number>;
  /** merges.txt lines after its `#version` header, highest priority first: "a b". */
  merges: string[];
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
  unkToken?: string;
  modelMaxLength?: number;
}

const DEFAULT_BOS = '<|startoftext|>';
const DEFAULT_EOS = '<|endoftext|>';
const DEFAULT_MODEL_MAX_LENGTH = 77;
// transformers reads at most this many merges from merges.txt (CLIP's 49152-entry vocabulary layout).
const MAX_MERGES = 49152 - 256 - 2;
const END_OF_WORD = '</w>';
const MAX_CACHED_WORDS = 100_000;

/** GPT-2's bytes_to_unicode: every byte as a printable character, so BPE never sees whitespace or controls. */
const BYTE_CHARS: string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b++) chars.push(String.fromCharCode(printable(b) ? b : 256 + shifted++));
  return chars;
})();

// CLIP's pre-tokenisation; the text is already lowercased, so the case-insensitive flag only mirrors the original.
const WORD_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;
// BasicTokenizer._tokenize_chinese_chars: CJK ideographs become words of their own.
const CJK = /[\u4e00-\u9fff\u3400-\u4dbf\u{20000}-\u{2a6df}\u{2a700}-\u{2b73f}\u{2b740}-\u{2b81f}\u{2b820}-\u{2ceaf}\uf900-\ufaff\u{2f800}-\u{2fa1f}]/gu;

/** BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize, joined by spaces, then lowercased. */
function basicClean(text: string): string {
  return text
    .replace(/[\t\n\r\p{Zs}]/gu, ' ')
    .replace(/[\p{C}\uFFFD]/gu, '')
    .replace(CJK, ' $& ')
    .normalize('NFC')
    .split(/\s+/u)
    .filter((word) => word !== '')
    .join(' ')
    .toLowerCase();
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class ClipTokenizer {
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly modelMaxLength: number;
  readonly #vocab: Map<string, number>;
  readonly #mergeRanks = new Map<string, number>();
  readonly #unkTokenId: number | undefined;
  /** Special and added tokens: matched whole in the raw text before any cleanup, as transformers' trie does. */
  readonly #wholeTokens: Set<string>;
  #wholeTokenPattern: RegExp | null = null;
  readonly #cache = new Map<string, number[]>();

  /** Loads the model's tokenizer/ folder: vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json. */
  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    const readJson = async (name: string, required: boolean): Promise<Record<string, unknown>> => {
      try {
        return JSON.parse(await readFile(join(dir, name), 'utf8')) as Record<string, unknown>;
      } catch (error) {
        if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return {};
        throw error;
      }
    };
    const [vocab, mergesText, config, specialTokens] = await Promise.all([
      readJson('vocab.json', true),
      readFile(join(dir, 'merges.txt'), 'utf8'),
      readJson('tokenizer_config.json', false),
      readJson('special_tokens_map.json', false),
    ]);
    // As from_pretrained: special_tokens_map.json overrides tokenizer_config.json.
    const token = (key: string) => tokenContent(specialTokens[key]) ?? tokenContent(config[key]);
    const maxLength = config.model_max_length;
    return new ClipTokenizer({
      vocab: vocab as Record<string, number>,
      // transformers drops the first line (the `#version` header) unconditionally.
      merges: mergesText.trim().split('\n').slice(1, 1 + MAX_MERGES),
      bosToken: token('bos_token'),
      eosToken: token('eos_token'),
      padToken: token('pad_token'),
      unkToken: token('unk_token'),
      // Unset, transformers stores a huge sentinel; CLIP models mean 77.
      modelMaxLength: typeof maxLength === 'number' && Number.isSafeInteger(maxLength) ? maxLength : undefined,
    });
  }

  constructor(files: ClipTokenizerFiles) {
    this.#vocab = new Map(Object.entries(files.vocab));
    files.merges.forEach((line, rank) => {
      const pair = line.trim().split(/\s+/);
      // A repeated merge keeps its last rank, as dict(zip(merges, ranks)) does.
      if (pair.length === 2) this.#mergeRanks.set(`${pair[0]} ${pair[1]}`, rank);
    });
    const bos = files.bosToken ?? DEFAULT_BOS;
    const eos = files.eosToken ?? DEFAULT_EOS;
    const pad = files.padToken ?? eos;
    const unk = files.unkToken ?? DEFAULT_EOS;
    this.#unkTokenId = this.#vocab.get(unk);
    this.bosTokenId = this.#requireId(bos, 'BOS');
    this.eosTokenId = this.#requireId(eos, 'EOS');
    this.padTokenId = this.#requireId(pad, 'pad');
    this.modelMaxLength = files.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH;
    if (!Number.isSafeInteger(this.modelMaxLength) || this.modelMaxLength < 2) {
      throw new RangeError(`model max length ${this.modelMaxLength} leaves no room for BOS and EOS`);
    }
    this.#wholeTokens = new Set([bos, eos, pad, unk].filter((token) => token !== ''));
  }

  /** Token ids of `text` without BOS/EOS, no truncation. */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    this.#wholeTokenPattern ??= new RegExp(
      `(${[...this.#wholeTokens].sort((a, b) => b.length - a.length).map(escapeRegExp).join('|')})`,
    );
    // split() with a capturing group alternates text (even indexes) and whole tokens (odd indexes).
    text.split(this.#wholeTokenPattern).forEach((part, index) => {
      if (index % 2 === 1) ids.push(this.#idOf(part));
      else if (part !== '') this.#tokenizeText(part, ids);
    });
    return ids;
  }

  /** BOS + ids + EOS, no padding, no truncation (what reference.json `tokens` holds). */
  encode(text: string): number[] {
    return [this.bosTokenId, ...this.tokenize(text), this.eosTokenId];
  }

  /** As diffusers' pipeline: BOS + ids truncated to modelMaxLength-2 + EOS, padded with the pad token to modelMaxLength. */
  encodePadded(text: string): Int32Array {
    const ids = this.tokenize(text).slice(0, this.modelMaxLength - 2);
    const padded = new Int32Array(this.modelMaxLength).fill(this.padTokenId);
    padded[0] = this.bosTokenId;
    padded.set(ids, 1);
    padded[ids.length + 1] = this.eosTokenId;
    return padded;
  }

  /** Adds a token to the vocabulary (for textual-inversion embeddings later); returns its id. */
  addToken(token: string): number {
    if (token === '') throw new Error('cannot add an empty token');
    let id = this.#vocab.get(token);
    if (id === undefined) {
      // transformers gives a new token the id len(tokenizer).
      id = this.#vocab.size;
      this.#vocab.set(token, id);
    }
    this.#wholeTokens.add(token);
    this.#wholeTokenPattern = null;
    this.#cache.clear();
    return id;
  }

  #requireId(token: string, role: string): number {
    const id = this.#vocab.get(token);
    if (id === undefined) throw new Error(`${role} token ${JSON.stringify(token)} is not in the vocabulary`);
    return id;
  }

  #idOf(token: string): number {
    const id = this.#vocab.get(token) ?? this.#unkTokenId;
    if (id === undefined) {
      throw new Error(`token ${JSON.stringify(token)} is not in the vocabulary and there is no unknown token`);
    }
    return id;
  }

  #tokenizeText(text: string, ids: number[]): void {
    for (const word of basicClean(text).match(WORD_PATTERN) ?? []) {
      let wordIds = this.#cache.get(word);
      if (wordIds === undefined) {
        wordIds = this.#encodeWord(word);
        if (this.#cache.size >= MAX_CACHED_WORDS) this.#cache.clear();
        this.#cache.set(word, wordIds);
      }
      for (const id of wordIds) ids.push(id);
    }
  }

  #encodeWord(word: string): number[] {
    // CLIP's BPE cache is seeded with these two, so they stay whole without the end-of-word mark.
    if (word === DEFAULT_BOS || word === DEFAULT_EOS) return [this.#idOf(word)];
    const symbols = Array.from(Buffer.from(word, 'utf8'), (byte) => BYTE_CHARS[byte]);
    symbols[symbols.length - 1] += END_OF_WORD;
    return this.#bpe(symbols).map((symbol) => this.#idOf(symbol));
  }

  /** Repeatedly merges the best-ranked adjacent pair, every occurrence left to right, until none is known. */
  #bpe(symbols: string[]): string[] {
    while (symbols.length > 1) {
      let bestRank = Infinity;
      let best = -1;
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.#mergeRanks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const first = symbols[best];
      const second = symbols[best + 1];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else {
          merged.push(symbols[i]);
        }
      }
      symbols = merged;
    }
    return symbols;
  }
}

/** A special token in a tokenizer JSON file: a string or a serialised AddedToken ({ content, ... }). */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}
