// Shared by the engine tests: fixture pipelines in a temp folder, init images, and assertions on
// images and typed errors.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { DiffusionError, type DiffusionErrorCode } from '../../src/diffusion/errors.ts';
import { createFixturePipeline, type FixtureOptions } from '../../src/diffusion/fixtures/index.ts';
import type { RgbImage } from '../../src/diffusion/image.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../../src/diffusion/model-folder.ts';

/** A temp folder of fixture pipelines, each written once per name; `remove()` deletes them all. */
export class FixtureDir {
  private constructor(readonly root: string) {}

  static async create(): Promise<FixtureDir> {
    return new FixtureDir(await mkdtemp(join(tmpdir(), 'sdql-engine-')));
  }

  /** Writes the pipeline `name` with `options` and describes it. */
  async model(name: string, options: FixtureOptions = {}): Promise<ModelFolderInfo> {
    const dir = join(this.root, name);
    await createFixturePipeline(dir, options);
    return inspectModelFolder(dir);
  }

  async remove(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Deterministic noise (RGB, 8 bits), so that an unchanged pixel cannot be a coincidence of a flat colour. */
export function noise(width: number, height: number, seed: number): Buffer {
  const data = Buffer.alloc(width * height * 3);
  let state = seed;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    data[i] = state >>> 24;
  }
  return data;
}

/** A PNG of smooth colour gradients plus a seeded pattern, so that img2img has structure to keep. */
export async function initImagePng(width: number, height: number, seed = 0): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      pixels[i] = Math.round((255 * x) / width);
      pixels[i + 1] = Math.round((255 * y) / height);
      pixels[i + 2] = Math.round(127.5 + 127.5 * Math.sin(x * 0.3 + y * 0.17 + seed));
    }
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/** The image has the size asked for, every value finite and in [0, 1], and is not one flat colour. */
export function assertImage(image: RgbImage, width: number, height: number): void {
  assert.equal(image.width, width);
  assert.equal(image.height, height);
  assert.equal(image.data.length, width * height * 3);
  let min = Infinity;
  let max = -Infinity;
  for (const v of image.data) {
    assert.ok(Number.isFinite(v), `non-finite pixel value ${v}`);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  assert.ok(min >= 0 && max <= 1, `pixel values span [${min}, ${max}]`);
  assert.ok(max - min > 0.01, 'the image is one flat colour');
}

/** For assert.rejects/throws: a DiffusionError with `code` whose message matches `message`. */
export function diffusionError(code: DiffusionErrorCode, message?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof DiffusionError, `expected a DiffusionError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  };
}
