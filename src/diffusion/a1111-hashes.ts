// The short hashes AUTOMATIC1111 writes for the adapters an image used ("Lora hashes", "TI hashes"),
// which civitai and AUTOMATIC1111 match files by. A LoRA's is the SHA-256 of its tensor data alone
// (kohya's "addnet" hash: the bytes after the 8-byte header length and the JSON header), unless its
// metadata carries one as `sshs_model_hash`; an embedding's is the SHA-256 of the whole file. Both
// are cut to 12 hex digits. Hashes are kept per file stamp (size, mtime): LoRA files reach GBs.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { readSafetensorsHeader } from './safetensors.ts';

/** SHA-256 (lowercase hex) of the file from byte `start` to its end, read in 1 MiB chunks. */
export async function sha256File(path: string, start = 0): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const cache = new Map<string, Promise<string>>();

async function cached(kind: string, path: string, compute: () => Promise<string>): Promise<string> {
  const { size, mtimeMs } = await stat(path);
  const key = `${kind}:${path}:${size}:${Math.trunc(mtimeMs)}`;
  let hash = cache.get(key);
  if (!hash) {
    hash = compute();
    cache.set(key, hash);
    hash.catch(() => cache.delete(key));
  }
  return hash;
}

/** AUTOMATIC1111's short hash of a LoRA file (extensions-builtin/Lora/network.py). */
export function loraShortHash(path: string): Promise<string> {
  return cached('lora', path, async () => {
    const { metadata, dataStart } = await readSafetensorsHeader(path);
    return (metadata.sshs_model_hash || (await sha256File(path, dataStart))).slice(0, 12);
  });
}

/** AUTOMATIC1111's short hash of a textual-inversion embedding file. */
export function embeddingShortHash(path: string): Promise<string> {
  return cached('embedding', path, async () => (await sha256File(path)).slice(0, 12));
}
