// File identity for the lazily computed hashes: a stamp (size and mtime) says when a stored hash is
// stale (the SHA-256 itself is streamed by the engine's sha256File).
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

/** AUTOMATIC1111's short form of a SHA-256: its first 10 hex digits. */
export const shortHash = (sha256: string) => sha256.slice(0, 10);
