// Shared by the bench sections: medians, and fixture models built once into bench/out/.
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFixturePipeline, type FixtureOptions } from '../../src/diffusion/fixtures/index.ts';

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Writes a fixture model into `dir` unless the one there was built with the same options; returns the build time, if it built. */
export async function cachedFixture(dir: string, options: FixtureOptions): Promise<number | undefined> {
  const stamp = join(dir, 'bench-fixture.json');
  const wanted = JSON.stringify(options);
  if (existsSync(stamp) && (await readFile(stamp, 'utf8')) === wanted) return undefined;
  const started = performance.now();
  await rm(dir, { recursive: true, force: true });
  await createFixturePipeline(dir, options);
  await writeFile(stamp, wanted);
  return performance.now() - started;
}
