// File identity for the lazily computed hashes: a stamp (size and mtime) says when a stored hash is
// stale, and the SHA-256 itself is streamed so that a multi-GB file never blocks the event loop.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';

/** `size:mtimeMs` of the file, or null when it cannot be read. */
export async function fileStamp(path: string): Promise<string | null> {
  try {
    const s = await stat(path);
    return `${s.size}:${Math.trunc(s.mtimeMs)}`;
  } catch {
    return null;
  }
}

/** SHA-256 (lowercase hex) of the whole file, read in 1 MiB chunks. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** AUTOMATIC1111's short form of a SHA-256: its first 10 hex digits. */
export const shortHash = (sha256: string) => sha256.slice(0, 10);
