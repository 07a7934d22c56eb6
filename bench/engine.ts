// The engine's overhead over onnxruntime (issue 3's performance section), on a fixture whose UNet
// dominates: UNet channels 320/640 at 256×256, classifier-free guidance (UNet batch 2).
//
// - The very UNet calls of a request (captured feeds) through a plain onnxruntime session with the
//   engine's session options, against the pipeline's time per denoising step (scheduler, guidance
//   and tensor conversions included); bare call k runs just before the engine's step k, so both
//   meet the same load on the machine. In-thread and EngineThread requests alternate likewise.
// - The shares of a whole request, and the first image in a fresh process (start, load, generate,
//   PNG) with that process's peak RSS.
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { EngineThread } from '../src/diffusion/engine-thread.ts';
import { Engine } from '../src/diffusion/engine.ts';
import { type FixtureOptions } from '../src/diffusion/fixtures/index.ts';
import { encodeImage } from '../src/diffusion/image.ts';
import { inspectModelFolder } from '../src/diffusion/model-folder.ts';
import { sessionOptions, type TensorData } from '../src/diffusion/onnx-model.ts';
import { generate, type GenerateCallbacks, type GenerateResult } from '../src/diffusion/pipeline.ts';
import { resolveRequest, type GenerateParams } from '../src/diffusion/request.ts';
import { MEM_PATTERN, StableDiffusionModel } from '../src/diffusion/stable-diffusion.ts';
import type { BenchRow } from './index.ts';
import { cachedFixture, median } from './lib/common.ts';

const FIXTURE: FixtureOptions = { unetChannels: [320, 640], sampleSize: 32 };
const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'out', 'engine-fixture');
const STEPS = 5;
const ROUNDS = 3;
/** The default scheduler and guidance scale (7.5, so the UNet runs on batch 2). */
const PARAMS: GenerateParams = { prompt: 'a photograph of an astronaut riding a horse', negativePrompt: 'blurry', steps: STEPS, seed: 1 };



interface FirstImage {
  /** When each stage ended, in milliseconds since the process started. */
  importsDone: number;
  inspected: number;
  generated: number;
  encoded: number;
  /** Durations within `generated - inspected`. */
  loadMs: number;
  generationMs: number;
  maxRssBytes: number;
}

/** Runs in a fresh process (see measureFirstImage): one request from a cold start, as `sdql generate` does. */
export async function firstImage(dir: string): Promise<FirstImage> {
  const importsDone = performance.now();
  const info = await inspectModelFolder(dir);
  const inspected = performance.now();
  const engine = new Engine();
  const result = await engine.run(info, await resolveRequest(info, PARAMS));
  const generated = performance.now();
  await encodeImage(result.images[0].image);
  const encoded = performance.now();
  await engine.close();
  return {
    importsDone,
    inspected,
    generated,
    encoded,
    loadMs: generated - inspected - result.timings.totalMs,
    generationMs: result.timings.totalMs,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

async function measureFirstImage(dir: string): Promise<FirstImage> {
  const script = `const { firstImage } = await import(${JSON.stringify(import.meta.url)}); process.stdout.write(JSON.stringify(await firstImage(${JSON.stringify(dir)})));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as FirstImage;
}

/** Runs a request, returning the time between consecutive onStep calls and the event loop's longest stall. */
async function timedRequest(run: (callbacks: GenerateCallbacks) => Promise<GenerateResult>) {
  const stepAt: number[] = [];
  let last = performance.now();
  let maxGapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
  }, 5);
  try {
    const result = await run({ onStep: () => void stepAt.push(performance.now()) });
    return { result, stepMs: stepAt.slice(1).map((t, i) => t - stepAt[i]), maxGapMs };
  } finally {
    clearInterval(timer);
  }
}

function toOrtFeeds(feeds: Record<string, TensorData>): Record<string, ort.Tensor> {
  // The fixture is float32 throughout, so the engine's arrays go to onnxruntime as they are.
  return Object.fromEntries(Object.entries(feeds).map(([name, { data, dims }]) => [name, new ort.Tensor('float32', Float32Array.from(data), dims)]));
}

export async function benchEngine(): Promise<BenchRow[]> {
  const buildMs = await cachedFixture(FIXTURE_DIR, FIXTURE);
  const info = await inspectModelFolder(FIXTURE_DIR);
  const request = await resolveRequest(info, PARAMS);
  process.stderr.write('  first image in a fresh process…\n');
  const first = await measureFirstImage(FIXTURE_DIR);

  process.stderr.write('  loading and warming up…\n');
  const model = await StableDiffusionModel.load(info);
  const bare = await ort.InferenceSession.create(info.paths.unet, sessionOptions({ memPattern: MEM_PATTERN.unet }));
  const thread = new EngineThread();
  try {
    // The warm-up request records its UNet feeds; every call to the engine's UNet adapter is timed.
    const calls: Record<string, ort.Tensor>[] = [];
    const adapterMs: number[] = [];
    const unetRun = model.unet.run.bind(model.unet);
    let capture = true;
    model.unet.run = async (feeds) => {
      if (capture) calls.push(toOrtFeeds(feeds));
      const started = performance.now();
      const out = await unetRun(feeds);
      adapterMs.push(performance.now() - started);
      return out;
    };
    await generate(model, request);
    capture = false;
    adapterMs.length = 0;
    await thread.run(info, { ...request, steps: 1 });
    for (const feeds of calls) await bare.run(feeds);

    const bareMs: number[] = [];
    const stepMs: number[] = [];
    const threadStepMs: number[] = [];
    const pngMs: number[] = [];
    const results: GenerateResult[] = [];
    let threadStallMs = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      process.stderr.write(`  round ${round}/${ROUNDS}\n`);
      // Step k runs from the end of onStep(k - 1) to the start of onStep(k); within onStep(k - 1) the
      // bare session runs the engine's call k, so that each pair meets the same load on the machine.
      let stepStart = 0;
      await generate(model, request, {
        onStep: async ({ step }) => {
          if (step > 1) stepMs.push(performance.now() - stepStart);
          if (step < calls.length) {
            const started = performance.now();
            await bare.run(calls[step]);
            bareMs.push(performance.now() - started);
          }
          stepStart = performance.now();
        },
      });
      const remote = await timedRequest((callbacks) => thread.run(info, request, callbacks));
      threadStepMs.push(...remote.stepMs);
      threadStallMs = Math.max(threadStallMs, remote.maxGapMs);
      // The thread's requests, untouched by the bare calls, give the whole request's parts.
      results.push(remote.result);
      const started = performance.now();
      await encodeImage(remote.result.images[0].image);
      pngMs.push(performance.now() - started);
    }

    const bareStep = median(bareMs);
    const step = median(stepMs);
    const threadStep = median(threadStepMs);
    const textMs = median(results.map((r) => r.timings.textEncodingMs));
    const vaeMs = median(results.map((r) => r.timings.vaeMs));
    const png = median(pngMs);
    const whole = median(results.map((r) => r.timings.totalMs)) + png;
    // The same fixed costs over a default-length request (25 steps).
    const whole25 = textMs + vaeMs + png + 25 * step;
    const percent = (part: number, of: number) => Number(((100 * part) / of).toFixed(2));
    const [, channels, height, width] = calls[0].sample.dims;
    const shape = `UNet batch ${calls[0].sample.dims[0]}, ${channels}×${height}×${width} latents (${request.width}×${request.height})`;
    return [
      ...(buildMs === undefined ? [] : [{ metric: 'fixture build (cached in bench/out/)', value: buildMs / 1000, unit: 's' }]),
      { metric: 'UNet session.run, bare', value: bareStep, unit: 'ms', note: `median of ${bareMs.length}: ${shape}` },
      { metric: 'UNet through the engine adapter', value: median(adapterMs), unit: 'ms', note: `OnnxModel.run, median of ${adapterMs.length}` },
      { metric: 'engine time per step', value: step, unit: 'ms', note: `median of ${stepMs.length}, onStep to onStep (${request.scheduler})` },
      { metric: 'ratio engine step / bare run', value: step / bareStep, note: 'target ≤ 1.03' },
      { metric: 'EngineThread time per step', value: threadStep, unit: 'ms', note: `median of ${threadStepMs.length}` },
      { metric: 'ratio EngineThread / in-thread step', value: threadStep / step },
      { metric: 'event loop longest stall, EngineThread', value: threadStallMs, unit: 'ms', note: '5 ms timer; on the calling thread ≥ one UNet call' },
      { metric: `whole request (${STEPS} steps + PNG)`, value: whole, unit: 'ms', note: 'median, on the EngineThread' },
      { metric: 'share: text encoding', value: percent(textMs, whole), unit: '%', note: `${textMs.toFixed(1)} ms; ${percent(textMs, whole25)} % of a 25-step request` },
      { metric: 'share: VAE decoding', value: percent(vaeMs, whole), unit: '%', note: `${vaeMs.toFixed(1)} ms; ${percent(vaeMs, whole25)} % of a 25-step request` },
      { metric: 'share: PNG encoding', value: percent(png, whole), unit: '%', note: `${png.toFixed(1)} ms; ${percent(png, whole25)} % of a 25-step request` },
      {
        metric: 'first image after process start',
        value: first.encoded,
        unit: 'ms',
        note: `imports ${first.importsDone.toFixed(0)}, inspect ${(first.inspected - first.importsDone).toFixed(0)}, load ${first.loadMs.toFixed(0)}, generate ${first.generationMs.toFixed(0)}, PNG ${(first.encoded - first.generated).toFixed(0)}`,
      },
      { metric: 'peak RSS, that process', value: first.maxRssBytes / 2 ** 20, unit: 'MiB', note: `model folder ${(info.sizeBytes / 2 ** 20).toFixed(0)} MiB` },
    ];
  } finally {
    await thread.close();
    await model.release();
    await bare.release();
  }
}
