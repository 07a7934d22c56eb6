// Memory (issue 11 part 4), each figure from a fresh process so that its peak RSS is its own:
//
// - RSS growth when each submodel's session is created, against its file's bytes (what the model
//   cache counts, model-cache.ts);
// - onnxruntime's memory pattern on and off per submodel: peak RSS and run time at 512 × 512;
// - the VAE decoder at 1024 × 1024 whole and in tiles (vae-tiles.ts): peak RSS and time;
// - a request of 2 images with guidance at 512 × 512 with and without sub-batching (sub-batch.ts);
// - the largest request the limits allow the model (limits.ts: its maxPixels as a square, 768 × 768
//   on SD 1.x; 16 images; guidance; 1 step) through the Engine with its defaults (sub-batches from
//   the free memory, the VAE in tiles above its threshold): that it completes, its peak RSS and time.
//
// The model is a fixture at SD 1.5's widths where its memory peaks: the UNet's full-resolution
// level (320 channels, 8 heads over every latent) and the VAE's last level (128 channels, with a
// mid-block attention over every latent). `--model sd15` measures SD 1.5's architecture with random
// weights instead (about 4 GB built once into bench/out/; its sessions take minutes each on a small CPU).
//
//   npm run bench -- memory [--model fixture|sd15] [--parts sessions,vae,batch,largest]
import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Engine, type EngineOptions } from '../src/diffusion/engine.ts';
import { SD15 } from '../src/diffusion/convert/architecture.ts';
import type { FixtureOptions } from '../src/diffusion/fixtures/index.ts';
import { LIMITS, maxPixels } from '../src/diffusion/limits.ts';
import { inspectModelFolder } from '../src/diffusion/model-folder.ts';
import { OnnxModel, type TensorData } from '../src/diffusion/onnx-model.ts';
import { resolveRequest, type GenerateParams } from '../src/diffusion/request.ts';
import { DEFAULT_MARGIN, DEFAULT_TILE, runTiled } from '../src/diffusion/vae-tiles.ts';
import type { BenchOptions, BenchRow } from './index.ts';
import { cachedFixture, cachedRandomPipeline, median, SD15_DIR } from './lib/common.ts';

const FIXTURE: FixtureOptions = { unetChannels: [320, 640], sampleSize: 64, vaeChannels: 128, vaeLayout: 'attention' };
const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'out', 'memory-fixture');
const MiB = 2 ** 20;
const RUNS = 3;
const PARTS = ['sessions', 'vae', 'batch', 'largest'];

/** The models `--model` names: their folder, and their build (which returns its time when it built). */
const MODELS: Record<string, { dir: string; build: (dir: string) => Promise<number | undefined> }> = {
  fixture: { dir: FIXTURE_DIR, build: (dir) => cachedFixture(dir, FIXTURE) },
  sd15: { dir: SD15_DIR, build: (dir) => cachedRandomPipeline(dir, SD15) },
};

type Submodel = 'textEncoder' | 'unet' | 'vaeDecoder' | 'vaeEncoder';

type Job = { modelDir: string } & (
  | { kind: 'session'; submodel: Submodel; memPattern: boolean; side: number; runs: number; tiled?: boolean }
  | { kind: 'generate'; params: GenerateParams; options: EngineOptions }
);

interface Measured {
  rssBeforeLoad: number;
  rssAfterLoad: number;
  maxRss: number;
  runMs: number[];
}

/** The feeds of one call of `submodel` for a `side` × `side` image: batch 2 for the UNet (guidance), 1 otherwise. */
function feeds(submodel: Submodel, side: number, hidden: number): Record<string, TensorData> {
  const latent = side / 8;
  const filled = (dims: number[]) => ({ data: new Float32Array(dims.reduce((a, b) => a * b)).map((_, i) => Math.sin(i * 0.37)), dims });
  switch (submodel) {
    case 'textEncoder':
      return { input_ids: { data: new Int32Array(77).map((_, i) => (i * 7) % 1000), dims: [1, 77] } };
    case 'unet':
      return { sample: filled([2, 4, latent, latent]), timestep: { data: Float32Array.of(500, 500), dims: [2] }, encoder_hidden_states: filled([2, 77, hidden]) };
    case 'vaeDecoder':
      return { latent_sample: filled([1, 4, latent, latent]) };
    case 'vaeEncoder':
      return { sample: filled([1, 3, side, side]) };
  }
}

/** Runs in a fresh process (see measure). */
export async function memoryJob(job: Job): Promise<Measured> {
  const info = await inspectModelFolder(job.modelDir);
  const rssBeforeLoad = process.memoryUsage.rss();
  const runMs: number[] = [];
  if (job.kind === 'session') {
    const model = await OnnxModel.load(info.paths[job.submodel]!, { memPattern: job.memPattern });
    const rssAfterLoad = process.memoryUsage.rss();
    const input = feeds(job.submodel, job.side, info.crossAttentionDim ?? 32);
    const decode = async (tile: TensorData) => (await model.run({ latent_sample: tile })).sample;
    for (let i = 0; i < job.runs; i++) {
      const started = performance.now();
      if (job.tiled) await runTiled(decode, input.latent_sample as TensorData & { data: Float32Array }, { inCell: 1, outCell: 8 }, { tile: DEFAULT_TILE, margin: DEFAULT_MARGIN });
      else await model.run(input);
      runMs.push(performance.now() - started);
    }
    return { rssBeforeLoad, rssAfterLoad, maxRss: process.resourceUsage().maxRSS * 1024, runMs };
  }
  const engine = new Engine(job.options);
  const request = await resolveRequest(info, job.params);
  const result = await engine.run(info, request);
  runMs.push(result.timings.denoisingMs / job.params.steps!, result.timings.vaeMs);
  return { rssBeforeLoad, rssAfterLoad: rssBeforeLoad, maxRss: process.resourceUsage().maxRSS * 1024, runMs };
}

async function measure(job: Job): Promise<Measured> {
  const script = `const { memoryJob } = await import(${JSON.stringify(import.meta.url)}); process.stdout.write(JSON.stringify(await memoryJob(${JSON.stringify(job)})));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as Measured;
}

const mib = (bytes: number) => bytes / MiB;

export async function benchMemory(options: BenchOptions): Promise<BenchRow[]> {
  const name = options.model ?? 'fixture';
  const model = MODELS[name];
  if (!model) throw new Error(`--model must be one of ${Object.keys(MODELS).join(', ')}`);
  const parts = (options.parts ?? PARTS.join(',')).split(',');
  if (!parts.every((part) => PARTS.includes(part))) throw new Error(`--parts: comma-separated, of ${PARTS.join(', ')}`);
  const modelDir = model.dir;
  const buildMs = await model.build(modelDir);
  const info = await inspectModelFolder(modelDir);
  const rows: BenchRow[] = [{ metric: 'model', value: name === 'sd15' ? 'SD 1.5 architecture, random weights' : 'fixture at SD 1.5 widths (320/640)' }];
  if (buildMs !== undefined) rows.push({ metric: 'model build (cached in bench/out/)', value: buildMs / 1000, unit: 's' });

  for (const submodel of parts.includes('sessions') ? (['textEncoder', 'unet', 'vaeDecoder', 'vaeEncoder'] as const) : []) {
    process.stderr.write(`  ${submodel}: memory pattern on and off…\n`);
    const fileBytes = await folderBytes(dirname(info.paths[submodel]!));
    const [on, off] = [await measure({ modelDir, kind: 'session', submodel, memPattern: true, side: 512, runs: RUNS }), await measure({ modelDir, kind: 'session', submodel, memPattern: false, side: 512, runs: RUNS })];
    const growth = on.rssAfterLoad - on.rssBeforeLoad;
    const steady = (m: Measured) => median(m.runMs.slice(1));
    rows.push(
      { metric: `${submodel}: RSS growth at session creation`, value: mib(growth), unit: 'MiB', note: `${(growth / fileBytes).toFixed(2)}× its files (${mib(fileBytes).toFixed(0)} MiB)` },
      { metric: `${submodel}: peak RSS, memory pattern on`, value: mib(on.maxRss), unit: 'MiB', note: `512², ${RUNS} runs` },
      { metric: `${submodel}: peak RSS, memory pattern off`, value: mib(off.maxRss), unit: 'MiB', note: `ratio off/on ${(off.maxRss / on.maxRss).toFixed(3)}` },
      { metric: `${submodel}: run time off / on`, value: steady(off) / steady(on), note: `${steady(on).toFixed(0)} ms on, median of runs 2–${RUNS}` },
    );
  }

  for (const side of parts.includes('vae') ? [768, 1024] : []) {
    process.stderr.write(`  VAE decoder at ${side}², whole and in tiles…\n`);
    const vae = { modelDir, kind: 'session', submodel: 'vaeDecoder', memPattern: true, side, runs: 1 } as const;
    const whole = await measure(vae);
    const tiled = await measure({ ...vae, tiled: true });
    rows.push(
      { metric: `VAE decoder ${side}²: peak RSS, whole`, value: mib(whole.maxRss), unit: 'MiB', note: `${(whole.runMs[0] / 1000).toFixed(1)} s` },
      { metric: `VAE decoder ${side}²: peak RSS, in tiles`, value: mib(tiled.maxRss), unit: 'MiB', note: `${(tiled.runMs[0] / 1000).toFixed(1)} s; peak ratio ${(tiled.maxRss / whole.maxRss).toFixed(3)}, time ratio ${(tiled.runMs[0] / whole.runMs[0]).toFixed(2)}` },
    );
  }

  if (parts.includes('batch')) {
    process.stderr.write('  2 images with guidance at 512², with and without sub-batches…\n');
    const batch = { prompt: 'two cats', width: 512, height: 512, steps: 2, seed: 3, numImages: 2 };
    const oneCall = await measure({ modelDir, kind: 'generate', params: batch, options: { batchMemoryBytes: Number.MAX_SAFE_INTEGER } });
    const perSample = await measure({ modelDir, kind: 'generate', params: batch, options: { batchMemoryBytes: 1 } });
    rows.push(
      { metric: '512² ×2 with guidance: peak RSS, one UNet call', value: mib(oneCall.maxRss), unit: 'MiB', note: `${(oneCall.runMs[0] / 1000).toFixed(2)} s a step` },
      { metric: '512² ×2 with guidance: peak RSS, sub-batches of 1', value: mib(perSample.maxRss), unit: 'MiB', note: `${(perSample.runMs[0] / 1000).toFixed(2)} s a step; peak ratio ${(perSample.maxRss / oneCall.maxRss).toFixed(3)}` },
    );
  }

  if (parts.includes('largest')) {
    const side = Math.sqrt(maxPixels(info));
    const label = `${side}² ×${LIMITS.maxImages} with guidance, 1 step`;
    process.stderr.write(`  the largest request within the limits (${label}), the engine's defaults…\n`);
    const largest = await measure({ modelDir, kind: 'generate', params: { prompt: 'many cats', width: side, height: side, steps: 1, seed: 3, numImages: LIMITS.maxImages }, options: {} });
    rows.push({ metric: `${label}: peak RSS`, value: mib(largest.maxRss), unit: 'MiB', note: `completed; UNet step ${(largest.runMs[0] / 1000).toFixed(0)} s, VAE ${(largest.runMs[1] / 1000).toFixed(0)} s` });
  }
  return rows;
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size;
  return total;
}
