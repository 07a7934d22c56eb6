// Shared by the bench sections: medians, and models built once into bench/out/.
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PipelineArch, UNetArch } from '../../src/diffusion/convert/architecture.ts';
import { buildRandomPipeline, buildRandomUNet } from '../../src/diffusion/convert/random.ts';
import { createFixturePipeline, type FixtureOptions } from '../../src/diffusion/fixtures/index.ts';
import type { Precision } from '../../src/diffusion/fixtures/net.ts';

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Where the sections that measure SD 1.5's architecture share its random-weight pipeline (about 4 GB). */
export const SD15_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'out', 'sd15');

/** Runs `build(dir)` unless `dir` holds what a build described by `recipe` wrote; returns the build time, if it built. */
async function cachedBuild(dir: string, recipe: unknown, build: (dir: string) => Promise<void>): Promise<number | undefined> {
  const stamp = join(dir, 'bench-fixture.json');
  const wanted = JSON.stringify(recipe);
  if (existsSync(stamp) && (await readFile(stamp, 'utf8')) === wanted) return undefined;
  const started = performance.now();
  await rm(dir, { recursive: true, force: true });
  await build(dir);
  await writeFile(stamp, wanted);
  return performance.now() - started;
}

/** A fixture model in `dir` (see cachedBuild). */
export const cachedFixture = (dir: string, options: FixtureOptions) => cachedBuild(dir, options, (d) => createFixturePipeline(d, options));

/** A pipeline folder of a real architecture (SD15, …) with random weights of seed 0 in `dir` (see cachedBuild). */
export const cachedRandomPipeline = (dir: string, arch: PipelineArch) => cachedBuild(dir, { pipeline: arch }, (d) => buildRandomPipeline(d, arch));

/** A UNet alone (`dir/model.onnx` and its external data) of a real architecture with random weights (see cachedBuild). */
export const cachedRandomUNet = (dir: string, arch: UNetArch, precision: Precision = 'fp32') =>
  // fp32's recipe as before, so that UNets built before precision was a choice still count.
  cachedBuild(dir, precision === 'fp32' ? { unet: arch } : { unet: arch, precision }, (d) => buildRandomUNet(d, arch, { precision }));
