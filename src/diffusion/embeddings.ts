// Textual-inversion embeddings: learned token vectors in a .safetensors file whose name is the word
// that calls them up in a prompt. AUTOMATIC1111 stores them under `emb_params` (or `string_to_param.*`
// when converted from its .pt files), diffusers under a single key; either holds [vectors, dim] or
// [dim]. As diffusers' load_textual_inversion: an embedding of n vectors becomes the tokens `name`,
// `name_1`, … `name_{n-1}` appended to the tokenizer and to the text encoder's token-embedding table,
// and the word `name` in a prompt stands for all of them.
import { readdir } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { badInput } from './errors.ts';
import type { ModelEditor } from './lora/model-editor.ts';
import { checkSafetensorsPath } from './lora/lora-file.ts';
import { readSafetensorsFloat32, readSafetensorsHeader, type SafetensorsHeader } from './safetensors.ts';
import type { ClipTokenizer } from './tokenizer.ts';

export interface EmbeddingRequest {
  /** The trigger word: the file name without its extension. */
  token: string;
  path: string;
}

export interface EmbeddingInfo {
  name: string;
  path: string;
  vectors?: number;
  dim?: number;
  /** Why the file cannot be used. */
  error?: string;
}

export interface Embedding {
  token: string;
  /** `count` rows of `dim` values (an SDXL embedding's `clip_l`, for the first text encoder). */
  vectors: Float32Array;
  count: number;
  dim: number;
  /** An SDXL embedding's `clip_g`: `count` rows for the second text encoder. */
  second?: { vectors: Float32Array; dim: number };
}

const TOKEN_EMBEDDING = 'text_model.embeddings.token_embedding';

/** The tensor holding the vectors and its [count, dim]; for SDXL embeddings (`clip_l` and `clip_g`, as
 * AUTOMATIC1111 and kohya write them) `clip_l`'s, with `clip_g`'s as `second`. Throws a message saying why there is none. */
function embeddingTensor(header: SafetensorsHeader): { key: string; count: number; dim: number; second?: { key: string; dim: number } } {
  const keys = Object.keys(header.tensors);
  const a1111 = keys.filter((k) => k === 'emb_params' || k.startsWith('string_to_param.'));
  if (keys.includes('clip_l') || keys.includes('clip_g')) {
    if (!keys.includes('clip_l') || !keys.includes('clip_g')) throw new Error('it is an SDXL embedding with only one of clip_l and clip_g');
    const [l, g] = [tensorShape(header, 'clip_l'), tensorShape(header, 'clip_g')];
    if (l.count !== g.count) throw new Error(`its clip_l has ${l.count} vectors but its clip_g ${g.count}`);
    return { key: 'clip_l', ...l, second: { key: 'clip_g', dim: g.dim } };
  }
  let key: string;
  if (a1111.length === 1) key = a1111[0];
  else if (keys.length === 1) key = keys[0];
  else throw new Error(`it holds no embedding tensor (${keys.length} tensors: ${keys.slice(0, 4).join(', ')})`);
  return { key, ...tensorShape(header, key) };
}

/** A tensor's [vectors, dim], leading 1s dropped. */
function tensorShape(header: SafetensorsHeader, key: string): { count: number; dim: number } {
  const { dtype, shape } = header.tensors[key];
  if (!['F32', 'F16', 'BF16', 'F64'].includes(dtype)) throw new Error(`its tensor ${key} is ${dtype}, not floats`);
  const dims = [...shape];
  while (dims.length > 2 && dims[0] === 1) dims.shift();
  if (dims.length === 1) dims.unshift(1);
  if (dims.length !== 2 || dims[0] < 1 || dims[1] < 1) throw new Error(`its tensor ${key} has shape [${shape.join(', ')}], not [vectors, dim]`);
  return { count: dims[0], dim: dims[1] };
}

/** The embeddings of a folder (SDQL_MODELS_DIR/embeddings), sorted by name; a missing folder has none. */
export async function listEmbeddings(dir: string): Promise<EmbeddingInfo[]> {
  let files: string[];
  try {
    files = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const infos: EmbeddingInfo[] = [];
  for (const file of files.sort()) {
    const ext = extname(file).toLowerCase();
    if (file.startsWith('.') || !['.safetensors', '.pt', '.bin'].includes(ext)) continue;
    const info: EmbeddingInfo = { name: file.slice(0, -ext.length), path: join(dir, file) };
    try {
      checkSafetensorsPath('embedding', info.name, info.path);
      const { count, dim, second } = embeddingTensor(await readSafetensorsHeader(info.path));
      info.vectors = count;
      // An SDXL embedding's width is both encoders' together, as AUTOMATIC1111 shows it.
      info.dim = dim + (second?.dim ?? 0);
    } catch (error) {
      info.error = (error as Error).message;
    }
    infos.push(info);
  }
  return infos;
}

/** The usable embeddings whose trigger word occurs in any of the texts, where the tokenizer will find it
 * (anywhere, case-sensitively): what a request on those texts should load. */
export function embeddingsUsedIn(texts: readonly string[], available: readonly EmbeddingInfo[]): EmbeddingRequest[] {
  return available.filter((e) => !e.error && texts.some((text) => text.includes(e.name))).map((e) => ({ token: e.name, path: e.path }));
}

/** Reads an embedding file; BAD_USER_INPUT when it is not one. */
export async function readEmbedding({ token, path }: EmbeddingRequest): Promise<Embedding> {
  checkSafetensorsPath('embedding', token, path);
  try {
    const header = await readSafetensorsHeader(path);
    const { key, count, dim, second } = embeddingTensor(header);
    const tensors = await readSafetensorsFloat32(path, header, second ? [key, second.key] : [key]);
    const embedding: Embedding = { token, vectors: tensors.get(key)!.data, count, dim };
    if (second) embedding.second = { vectors: tensors.get(second.key)!.data, dim: second.dim };
    return embedding;
  } catch (error) {
    throw badInput(`embedding "${token}" cannot be used: ${(error as Error).message}`);
  }
}

/** The tokens an embedding of `count` vectors adds, as diffusers names them. */
export function embeddingTokens(token: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => (i === 0 ? token : `${token}_${i}`));
}

/**
 * Appends the embeddings' vectors to the text encoder's token-embedding table and their tokens to the
 * tokenizer: `encoder` 'second' is SDXL's second text encoder, which takes an SDXL embedding's `clip_g`;
 * 'first' takes `clip_l` on SDXL (`sdxl`) and the only vectors of others. Returns the tokens each
 * multi-vector trigger word expands to, and warnings for embeddings left out (made for another
 * family, or vectors of another width than the model's); the second encoder's pass leaves those to
 * the first's unless `warn` (a refiner's text_encoder_2, the only one).
 */
export async function addEmbeddings(
  editor: ModelEditor,
  tokenizer: ClipTokenizer,
  embeddings: readonly Embedding[],
  encoder: { sdxl: boolean; second?: boolean; warn?: boolean } = { sdxl: false },
): Promise<{ expansions: Map<string, string[]>; warnings: string[] }> {
  const expansions = new Map<string, string[]>();
  const warnings: string[] = [];
  // Exports of a wrapping module name the table under a prefix (`te.text_model.…`): the one that ends so.
  const matches = editor.weights.modules.filter((m) => m === TOKEN_EMBEDDING || m.endsWith(`.${TOKEN_EMBEDDING}`));
  const slot = matches.length === 1 ? editor.weights.get(matches[0]) : undefined;
  if (!slot || slot.node.opType !== 'Gather') throw badInput(`the text encoder ${editor.path} has no token-embedding table (${TOKEN_EMBEDDING}) to add embeddings to`);
  const [rows, dim] = slot.initializer.dims;
  const added: { id: number; values: Float32Array }[] = [];
  for (const embedding of embeddings) {
    // One warning per embedding: the first encoder's pass says why one is left out.
    const warn = (message: string) => (encoder.second && !encoder.warn) || warnings.push(message);
    if (encoder.sdxl !== (embedding.second !== undefined)) {
      warn(`embedding "${embedding.token}" is ${encoder.sdxl ? 'not an SDXL embedding (clip_l and clip_g)' : 'an SDXL embedding (clip_l/clip_g)'}, and the model is ${encoder.sdxl ? 'SDXL' : 'not'}: not applied`);
      continue;
    }
    const vectors = encoder.second ? embedding.second! : embedding;
    if (vectors.dim !== dim) {
      warn(`embedding "${embedding.token}" has ${vectors.dim}-wide vectors but this model's text encoder takes ${dim}: not applied`);
      continue;
    }
    const tokens = embeddingTokens(embedding.token, embedding.count);
    tokens.forEach((token, i) => {
      const id = tokenizer.addToken(token);
      // diffusers refuses these too: the word would stop meaning what the model learned.
      if (id < rows) throw badInput(`embedding "${embedding.token}": "${token}" is already a token of the model's vocabulary; rename the file`);
      added.push({ id, values: vectors.vectors.subarray(i * dim, (i + 1) * dim) });
    });
    if (tokens.length > 1) expansions.set(embedding.token, tokens);
  }
  if (added.length === 0) return { expansions, warnings };
  // Ids the tokenizer gives past the table (a vocabulary longer than it) get zero rows no token reaches.
  const total = Math.max(...added.map((a) => a.id)) + 1;
  const table = new Float32Array(total * dim);
  table.set(await editor.read(slot));
  for (const { id, values } of added) table.set(values, id * dim);
  editor.write(slot, table, [total, dim]);
  return { expansions, warnings };
}

/** Rewrites each multi-vector trigger word as its tokens, as diffusers' maybe_convert_prompt does, matching
 * them where the tokenizer will (anywhere in the text, longest first). */
export function expandEmbeddingTokens(text: string, expansions: ReadonlyMap<string, readonly string[]>): string {
  if (expansions.size === 0) return text;
  const tokens = [...expansions.values()].flat().sort((a, b) => b.length - a.length);
  const pattern = new RegExp(tokens.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  return text.replace(pattern, (token) => expansions.get(token)?.join(' ') ?? token);
}
