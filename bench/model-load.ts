// Model load time (issue 11): a UNet session created from the model file as it is (the load without
// the optimised-model cache), the first load with the cache (which also saves the optimised graph) and
// the cached load, each in a fresh process, with its resident memory after the load. The model files
// are read once before, so that every load meets a warm page cache. Goal: cached ÷ first ≤ 0.35 at
// SD 1.5 UNet size (3.4 GB): `--model sd15` loads that UNet (SD 1.5's architecture with random
// weights, built once into bench/out/sd15/); by default a fixture UNet of `--channels`, which loads in
// a fraction of the time, named in the output.
//
//   npm run bench -- model-load [--channels 640,1280] [--rounds 3]
//   npm run bench -- model-load --model sd15 [--rounds 1]
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { devNull } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { BenchOptions, BenchRow } from './index.ts';
import { SD15 } from '../src/diffusion/convert/architecture.ts';
import { cachedFixture, cachedRandomPipeline, median, SD15_DIR } from './lib/common.ts';

const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out', 'model-load');

interface Load {
  ms: number;
  rss: number;
  from: string;
}

async function load(path: string, cacheDir = ''): Promise<Load> {
  const child = fork(fileURLToPath(new URL('./lib/load-model.ts', import.meta.url)), [path, cacheDir], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const [message] = (await once(child, 'message')) as [Load];
  await once(child, 'exit');
  return message;
}

export async function benchModelLoad(options: BenchOptions): Promise<BenchRow[]> {
  const [c0, c1] = (options.channels ?? '640,1280').split(',').map(Number);
  const rounds = Number(options.rounds ?? 3);
  const sd15 = options.model === 'sd15';
  if (options.model && !sd15 && options.model !== 'fixture') throw new Error('--model must be fixture or sd15');
  const dir = sd15 ? SD15_DIR : join(OUT, `fixture-${c0}-${c1}`);
  if (sd15) await cachedRandomPipeline(dir, SD15);
  else await cachedFixture(dir, { unetChannels: [c0, c1], externalData: 'model.onnx_data' });
  const unet = join(dir, 'unet', 'model.onnx');
  const bytes = (await stat(unet)).size + (await stat(join(dir, 'unet', 'model.onnx_data'))).size;
  // Streamed: readFile stops at 2 GiB, and SD 1.5's weights are 3.4 GB.
  await pipeline(createReadStream(join(dir, 'unet', 'model.onnx_data')), createWriteStream(devNull));
  const cacheDir = join(OUT, 'optimized');

  const plain: Load[] = [];
  const first: Load[] = [];
  const cached: Load[] = [];
  // Interleaved, so that all three meet the same load on the machine.
  for (let round = 0; round < rounds; round++) {
    plain.push(await load(unet));
    await rm(cacheDir, { recursive: true, force: true });
    first.push(await load(unet, cacheDir));
    const hit = await load(unet, cacheDir);
    if (hit.from !== 'optimized-cache') throw new Error(`the cached load came from ${hit.from}`);
    cached.push(hit);
  }
  await rm(cacheDir, { recursive: true, force: true });
  const ms = (loads: Load[]) => median(loads.map((l) => l.ms));
  const rss = (loads: Load[]) => median(loads.map((l) => l.rss));
  const MiB = 2 ** 20;
  const note = `median of ${rounds}, each in a fresh process`;
  return [
    { metric: 'UNet', value: sd15 ? 'SD 1.5 architecture, random weights' : `fixture UNet ${c0}/${c1}`, note: `${(bytes / MiB).toFixed(0)} MiB of weights (SD 1.5: 3,279 MiB)` },
    { metric: 'load without the cache', value: ms(plain), unit: 'ms', note },
    { metric: 'first load (optimises, saves)', value: ms(first), unit: 'ms', note },
    { metric: 'cached load', value: ms(cached), unit: 'ms', note },
    { metric: 'cached ÷ first load time', value: ms(cached) / ms(first), note: 'goal ≤ 0.35 at SD 1.5 size' },
    { metric: 'cached ÷ uncached load time', value: ms(cached) / ms(plain) },
    { metric: 'RSS after load, uncached', value: rss(plain) / MiB, unit: 'MiB', note },
    { metric: 'RSS after load, cached', value: rss(cached) / MiB, unit: 'MiB', note },
    { metric: 'RSS after load cached ÷ uncached', value: rss(cached) / rss(plain) },
  ];
}
