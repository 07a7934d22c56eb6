// SDXL-size UNet (issue 13 part 4, issue 11 part 4): SDXL base's UNet architecture with random
// weights (2.6 G parameters: 10 GB in fp32, built once into bench/out/sdxl-unet/; 5 GB in fp16 as
// Optimum's fp16 export has it, into bench/out/sdxl-unet-fp16/), loaded as the engine loads a
// submodel. Prints the load time, the resident memory after the load and its peak during the load
// against the files' bytes (one copy of the weights or two), and the UNet's time per call at batch 2
// (one image with classifier-free guidance) for each latent side, with the peak over the runs: once as
// one call of batch 2 and once in sub-batches of 1 (what the engine does when the memory is short,
// sub-batch.ts), each in a fresh process, with the ratios between them. SDXL's native 1024² is
// 128×128 latents; on a small CPU measure smaller sides too: the attention levels' cost grows with the
// square of their token count ((side/2)² and (side/4)²), the rest with side².
//
//   npm run bench -- sdxl                          # 128×128 latents (1024²), 2 timed calls after a warm-up
//   npm run bench -- sdxl --runs 1 --warm-up 0     # one timed call each, no warm-up
//   npm run bench -- sdxl --latents 32,64 --runs 1 # smaller sides, with the ratio between them
//   npm run bench -- sdxl --precision fp16         # the fp16 UNet
//   npm run bench -- sdxl --providers cuda,cpu     # on a GPU machine (resident memory is the host's)
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SDXL_UNET } from '../src/diffusion/convert/architecture.ts';
import type { Precision } from '../src/diffusion/fixtures/net.ts';
import type { BenchOptions, BenchRow } from './index.ts';
import { cachedRandomUNet, median } from './lib/common.ts';
import type { UNetStepsReport } from './lib/unet-steps.ts';

const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out');
const MiB = 2 ** 20;

/** Loads the UNet in a fresh process and runs it on each side (see unet-steps.ts). */
async function unetSteps(dir: string, sides: number[], runs: number, perCall: number, warmUp: number, providers: string): Promise<UNetStepsReport> {
  const args = [join(dir, 'model.onnx'), sides.join(','), String(runs), String(perCall), String(warmUp), providers];
  const child = fork(fileURLToPath(new URL('./lib/unet-steps.ts', import.meta.url)), args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = once(child, 'exit');
  const report = (await Promise.race([once(child, 'message'), exited.then(([code]) => Promise.reject(new Error(`the UNet process exited with ${code} (out of memory?)`)))]))[0] as UNetStepsReport;
  await exited;
  return report;
}

export async function benchSdxl(options: BenchOptions): Promise<BenchRow[]> {
  const sides = (options.latents ?? '128').split(',').map(Number);
  const runs = Number(options.runs ?? 2);
  const warmUp = Number(options['warm-up'] ?? 1);
  const precision = (options.precision ?? 'fp32') as Precision;
  const providers = options.providers ?? 'cpu';
  if (!sides.every((s) => Number.isInteger(s) && s > 0 && s % 8 === 0) || !(Number.isInteger(runs) && runs > 0) || !(warmUp === 0 || warmUp === 1) || !['fp32', 'fp16'].includes(precision)) {
    throw new Error('--latents: multiples of 8, comma-separated; --runs a positive whole number; --warm-up 0 or 1; --precision fp32 or fp16');
  }
  const dir = join(OUT, precision === 'fp32' ? 'sdxl-unet' : 'sdxl-unet-fp16');
  process.stderr.write(`  building the ${precision} SDXL UNet (once)…\n`);
  const buildMs = await cachedRandomUNet(dir, SDXL_UNET, precision);
  let bytes = 0;
  for (const name of await readdir(dir)) if (name.startsWith('model.onnx')) bytes += (await stat(join(dir, name))).size;

  process.stderr.write('  loading and running it in a fresh process, batch 2 in one call…\n');
  const report = await unetSteps(dir, sides, runs, 2, warmUp, providers);
  process.stderr.write('  again in a fresh process, in sub-batches of 1…\n');
  const split = await unetSteps(dir, sides, runs, 1, warmUp, providers);

  const note = `${precision}, ${(bytes / MiB).toFixed(0)} MiB of files; providers ${providers}`;
  // The CPU provider computes fp16 graphs in float32: one copy of the weights is then twice the files.
  const copies = precision === 'fp32' ? '2 would mean two copies' : '2: one float32 copy of the weights; 3: that and the float16 one';
  const rows: BenchRow[] = [{ metric: 'UNet', value: 'SDXL base architecture, random weights', note }];
  if (buildMs !== undefined) rows.push({ metric: 'build (cached in bench/out/)', value: buildMs / 1000, unit: 's' });
  rows.push(
    { metric: 'load', value: report.loadMs / 1000, unit: 's', note: 'session from the file, optimised-model cache off' },
    { metric: 'RSS after load', value: report.rssAfterLoad / MiB, unit: 'MiB', note: `${(report.rssAfterLoad / bytes).toFixed(2)}× the files` },
    { metric: 'peak RSS during load', value: report.peakAfterLoad / MiB, unit: 'MiB', note: `${(report.peakAfterLoad / bytes).toFixed(2)}× the files (${copies})` },
  );
  const timed = (r: UNetStepsReport, side: number) => {
    const warm = r.warmUpMs[side];
    return `median of ${runs}${warm === undefined ? ', no warm-up' : ` after a warm-up of ${(warm / 1000).toFixed(1)} s`}`;
  };
  const perCall = new Map(sides.map((side) => [side, median(report.runMs[side])]));
  for (const [side, ms] of perCall) {
    const halves = median(split.runMs[side]);
    rows.push(
      { metric: `${side}×${side} latents (${side * 8}²), batch 2: per call`, value: ms / 1000, unit: 's', note: timed(report, side) },
      { metric: `${side}×${side} latents, 2 sub-batches of 1: per pair`, value: halves / 1000, unit: 's', note: timed(split, side) },
      { metric: `${side}×${side} latents: time sub-batches ÷ one call`, value: halves / ms },
    );
  }
  for (let i = 1; i < sides.length; i++) {
    const [a, b] = [sides[i - 1], sides[i]];
    rows.push({ metric: `per call ${b}² ÷ ${a}²`, value: perCall.get(b)! / perCall.get(a)!, note: `latents ×${((b / a) ** 2).toFixed(0)}; attention tokens² ×${((b / a) ** 4).toFixed(0)}` });
  }
  const largest = `largest side ${Math.max(...sides)}`;
  rows.push(
    { metric: 'peak RSS over the runs, batch 2 in one call', value: report.peak / MiB, unit: 'MiB', note: `${largest}, ${(report.peak / bytes).toFixed(2)}× the files` },
    { metric: 'peak RSS over the runs, sub-batches of 1', value: split.peak / MiB, unit: 'MiB', note: `${largest}, ${(split.peak / bytes).toFixed(2)}× the files` },
    { metric: 'peak RSS sub-batches ÷ one call', value: split.peak / report.peak, note: `above the load's peak: ${((split.peak - split.peakAfterLoad) / MiB).toFixed(0)} ÷ ${((report.peak - report.peakAfterLoad) / MiB).toFixed(0)} MiB` },
  );
  return rows;
}
