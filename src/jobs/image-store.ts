// Image files under SDQL_DATA_DIR: generated images in images/<yyyy-mm-dd>/, init images that
// queued requests still need in inputs/ (content-addressed, so a reused image is stored once).
// The database keeps paths relative to the data dir, so the folder can move.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface StoredFile {
  /** Relative to the data dir. */
  path: string;
  sha256: string;
  bytes: number;
}

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

export class ImageStore {
  constructor(readonly dataDir: string) {}

  /** Writes a generated image as images/<day>/<imageId>.<ext>. */
  saveImage(imageId: string, format: string, bytes: Uint8Array, createdAt = new Date()): Promise<StoredFile> {
    const day = createdAt.toISOString().slice(0, 10);
    return this.write(join('images', day, `${imageId}.${extension(format)}`), bytes);
  }

  /** Keeps an init image for a queued request; the same bytes map to the same file. */
  saveInput(format: string, bytes: Uint8Array): Promise<StoredFile> {
    return this.write(join('inputs', `${sha256(bytes)}.${extension(format)}`), bytes);
  }

  read(path: string): Promise<Buffer> {
    return readFile(this.absolute(path));
  }

  /** Removes files; files already gone are not an error. */
  async remove(paths: Iterable<string>): Promise<void> {
    await Promise.all([...paths].map((p) => rm(this.absolute(p), { force: true })));
  }

  absolute(path: string): string {
    return join(this.dataDir, path);
  }

  private async write(path: string, bytes: Uint8Array): Promise<StoredFile> {
    const absolute = this.absolute(path);
    await mkdir(dirname(absolute), { recursive: true });
    await writeFile(absolute, bytes);
    return { path, sha256: sha256(bytes), bytes: bytes.byteLength };
  }
}

const extension = (format: string) => (format === 'jpeg' ? 'jpg' : format);
