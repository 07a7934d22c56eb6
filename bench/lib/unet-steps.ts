// Child process of bench/sdxl.ts: loads one SDXL-architecture UNet file as the engine does (a
// session from the file's path, onnxruntime reading the external data itself, on the given
// providers), then runs it once to warm up (unless `warmUp` is 0) and `runs` times on each latent
// size, batch 2 (classifier-free guidance) in sub-batches of `perCall` samples, as the engine
// splits a batch (sub-batch.ts). Reports the load time, the resident memory after the load and the
// peak before any run (what loading alone needed), the run times and the peak over everything. A
// fresh process, so that these peaks are the UNet's own.
import { OnnxModel, type TensorData } from '../../src/diffusion/onnx-model.ts';
import { runInSubBatches } from '../../src/diffusion/sub-batch.ts';

export interface UNetStepsReport {
  loadMs: number;
  rssAfterLoad: number;
  peakAfterLoad: number;
  /** Milliseconds of the first call (allocations included), if there was a warm-up, and of each timed one, by latent side. */
  warmUpMs: Record<number, number | undefined>;
  runMs: Record<number, number[]>;
  peak: number;
}

const [path, sidesArg, runsArg, perCallArg, warmUpArg, providersArg = 'cpu'] = process.argv.slice(2);
const BATCH = 2;
const perCall = Number(perCallArg);
const warmUp = Number(warmUpArg);
const peakRss = () => process.resourceUsage().maxRSS * 1024;
const filled = (dims: number[]): TensorData => ({ data: new Float32Array(dims.reduce((a, b) => a * b)).map((_, i) => Math.sin(i * 0.37)), dims });

const started = performance.now();
const model = await OnnxModel.load(path, { executionProviders: providersArg.split(',') });
const report: UNetStepsReport = { loadMs: performance.now() - started, rssAfterLoad: process.memoryUsage.rss(), peakAfterLoad: peakRss(), warmUpMs: {}, runMs: {}, peak: 0 };
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
process.stderr.write(`  loaded in ${(report.loadMs / 1000).toFixed(1)} s: RSS ${mib(report.rssAfterLoad)} MiB, peak ${mib(report.peakAfterLoad)} MiB\n`);
const hidden = Number(model.inputShape('encoder_hidden_states').at(-1));
const pooled = Number(model.inputShape('text_embeds').at(-1));
for (const side of sidesArg.split(',').map(Number)) {
  const feeds = {
    sample: filled([BATCH, 4, side, side]),
    timestep: { data: Float32Array.of(500, 500), dims: [BATCH] },
    encoder_hidden_states: filled([BATCH, 77, hidden]),
    text_embeds: filled([BATCH, pooled]),
    // original size, crop top-left, target size: SDXL's micro-conditioning at this resolution.
    time_ids: { data: Float32Array.from({ length: BATCH * 6 }, (_, i) => [side * 8, side * 8, 0, 0, side * 8, side * 8][i % 6]), dims: [BATCH, 6] },
  };
  process.stderr.write(`  ${side}×${side} latents, ${perCall} sample(s) a call…\n`);
  const times: number[] = [];
  for (let i = 0; i < warmUp + Number(runsArg); i++) {
    const t = performance.now();
    await runInSubBatches(model, feeds, BATCH, perCall);
    times.push(performance.now() - t);
    // On stderr as it goes (the load above too): a run stopped by a time limit still shows them.
    process.stderr.write(`  ${side}×${side}: call ${i + 1} ${(times[i] / 1000).toFixed(1)} s, peak RSS ${mib(peakRss())} MiB\n`);
  }
  report.warmUpMs[side] = warmUp ? times[0] : undefined;
  report.runMs[side] = times.slice(warmUp);
}
report.peak = peakRss();
process.send!(report);
await model.release();
