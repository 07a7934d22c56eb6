// The API's cost over the engine (issue 4's performance section), on a listening server with a
// throwaway database and a fixture whose UNet call takes tens of milliseconds (channels 64/128,
// 256×256, classifier-free guidance), so that per-step overheads show against real denoising.
//
// - Whole request through the API (generate → SUCCEEDED over graphql-ws → image fetched) against the
//   engine alone on the same request (in-process Engine.run + PNG); rounds alternate the two (and
//   rotate their order) so that each pair meets the same load on the machine.
// - Previews: time per step (median gap between step events) with previewEvery 0 and 1, the CPU time
//   of the server's event loop per step, and renderPreview timed directly.
// - Subscribers: one generation followed by 1 or 50 graphql-ws clients (a socket each, in a forked
//   process so that their parsing is not the server's work): time and event-loop CPU per step, whether
//   every client got every step, and how far apart the clients receive one event.
// Other processes on a small machine sway the times: the paired ranges show by how much.
import { fork, type ChildProcess } from 'node:child_process';
import { on } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/diffusion/engine.ts';
import { type FixtureOptions } from '../src/diffusion/fixtures/index.ts';
import { encodeImage } from '../src/diffusion/image.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../src/diffusion/model-folder.ts';
import { resolveRequest, type GenerateParams, type GenerateRequest } from '../src/diffusion/request.ts';
import { latentsToRgb, renderPreview } from '../src/diffusion/preview.ts';
import { configureLogging } from '../src/log.ts';
import { startTestServer, type TestServer } from '../test/helpers/api.ts';
import type { BenchRow } from './index.ts';
import { cachedFixture, median } from './lib/common.ts';
import { PROGRESS, type ReceivedEvent, type SubscribeOrder, type SubscriberReport } from './lib/subscribers.ts';

const FIXTURE: FixtureOptions = { unetChannels: [64, 128], sampleSize: 32 };
const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out', 'api');
const MODELS_DIR = join(OUT, 'models');
const MODEL_ID = 'bench';
const STEPS = 12;
const ROUNDS = 6;
const SUBSCRIBER_ROUNDS = 4;
const SUBSCRIBERS = 50;
const PREVIEW_RENDERS = 30;
/** The default scheduler (DPM++ 2M Karras: one UNet call per step) and guidance scale (UNet batch 2). */
const PARAMS: GenerateParams = { prompt: 'a photograph of an astronaut riding a horse', negativePrompt: 'blurry', steps: STEPS, seed: 1 };
const INPUT = { modelId: MODEL_ID, ...PARAMS };

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const IMAGES = `query($id: ID!) { generation(id: $id) { status totalSteps images { url } } }`;
const CANCEL = `mutation($id: ID!) { cancelGeneration(id: $id) { id } }`;

type ProgressData = { generationProgress: { status: string; step: number } };
/** The engine thread's timings, as the worker logs them when a generation succeeds. */
type ServerTimings = { textEncodingMs: number; denoisingMs: number; vaeMs: number; totalMs: number };

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (values: number[]) => `${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)}`;

/**
 * CPU time of the main thread, which runs the server's event loop (Linux's schedstat: on-CPU
 * nanoseconds, unlike the event loop's busy time not counting a wait for a core); elsewhere that busy time.
 */
function eventLoopCpuMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return performance.eventLoopUtilization().active;
  }
}


/** Collects the server's log of finished generations (startTestServer silences the log). */
function captureServerTimings(): (generationId: string) => Promise<ServerTimings> {
  const seen = new Map<string, ServerTimings>();
  configureLogging({
    write: (line) => {
      const entry = JSON.parse(line) as { level: string; msg: string; generationId?: string } & ServerTimings;
      if (entry.msg === 'generation succeeded' && entry.generationId) seen.set(entry.generationId, entry);
      if (entry.level === 'error') process.stderr.write(`  server: ${line}\n`);
    },
  });
  // The worker logs after publishing SUCCEEDED, so the line may come a moment after the event.
  return async (generationId) => {
    for (let waited = 0; !seen.has(generationId); waited += 5) {
      if (waited > 5000) throw new Error(`the server logged no success for generation ${generationId}`);
      await sleep(5);
    }
    return seen.get(generationId)!;
  };
}

async function engineAlone(engine: Engine, model: ModelFolderInfo, request: GenerateRequest) {
  const started = performance.now();
  const stepAt: number[] = [];
  const result = await engine.run(model, request, { onStep: () => void stepAt.push(performance.now()) });
  await encodeImage(result.images[0].image, 'png');
  return { ms: performance.now() - started, stepMs: median(gaps(stepAt)) };
}

async function submit(api: TestServer, input: Record<string, unknown>): Promise<string> {
  return (await api.data<{ generate: { id: string } }>(GENERATE, { input })).generate.id;
}

/** One request as a client makes it: generate, follow it to SUCCEEDED over graphql-ws, fetch the image. */
async function throughApi(api: TestServer, ws: ReturnType<TestServer['wsClient']>, previewEvery: number, serverTimings: (id: string) => Promise<ServerTimings>) {
  const started = performance.now();
  const loopCpu = eventLoopCpuMs();
  const id = await submit(api, { ...INPUT, previewEvery });
  const stepAt: number[] = [];
  let status = '';
  for await (const { data, errors } of ws.iterate<ProgressData>({ query: PROGRESS, variables: { id } })) {
    if (errors?.length || !data) throw new Error(JSON.stringify(errors));
    ({ status } = data.generationProgress);
    if (status === 'RUNNING' && data.generationProgress.step > 0) stepAt.push(performance.now());
  }
  if (status !== 'SUCCEEDED') throw new Error(`generation ${id} ended ${status}`);
  const { generation } = await api.data<{ generation: { images: { url: string }[] } }>(IMAGES, { id });
  const response = await fetch(generation.images[0].url);
  if (response.status !== 200) throw new Error(`the image is served with status ${response.status}`);
  await response.arrayBuffer();
  const ms = performance.now() - started;
  return { ms, stepMs: median(gaps(stepAt)), loopCpuPerStepMs: (eventLoopCpuMs() - loopCpu) / STEPS, meanStepMs: (await serverTimings(id)).denoisingMs / STEPS };
}

/** Waits for the subscriber process's next report, which must be `type`. */
async function nextReport<T extends SubscriberReport['type']>(messages: AsyncIterator<unknown[]>, type: T): Promise<Extract<SubscriberReport, { type: T }>> {
  const { value, done } = await messages.next();
  const report = (done ? { type: 'error', message: 'the subscriber process exited' } : value[0]) as SubscriberReport;
  if (report.type === 'error') throw new Error(`subscribers: ${report.message}`);
  if (report.type !== type) throw new Error(`subscribers: expected ${type}, got ${report.type}`);
  return report as Extract<SubscriberReport, { type: T }>;
}

/**
 * One generation followed by `count` clients that all subscribed while it was queued (a long
 * generation ahead of it keeps the worker busy until they are connected, then is canceled).
 */
async function withSubscribers(api: TestServer, subscribers: ChildProcess, count: number, serverTimings: (id: string) => Promise<ServerTimings>) {
  const blocker = await submit(api, { ...INPUT, prompt: 'keeps the worker busy', steps: 150, previewEvery: 0 });
  const id = await submit(api, INPUT);
  const messages = on(subscribers, 'message', { signal: AbortSignal.timeout(120_000) });
  subscribers.send({ url: api.server.url, generationId: id, count } satisfies SubscribeOrder);
  await nextReport(messages, 'ready');
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const loopCpu = eventLoopCpuMs();
  await api.data(CANCEL, { id: blocker });
  const { clients } = await nextReport(messages, 'done');
  const loopCpuPerStepMs = (eventLoopCpuMs() - loopCpu) / STEPS;
  delay.disable();
  await messages.return?.();
  const { generation } = await api.data<{ generation: { status: string; totalSteps: number } }>(IMAGES, { id });
  if (generation.status !== 'SUCCEEDED') throw new Error(`generation ${id} ended ${generation.status}`);
  const meanStepMs = (await serverTimings(id)).denoisingMs / STEPS;
  return { meanStepMs, loopCpuPerStepMs, delayP99Ms: delay.percentile(99) / 1e6, ...receipt(clients, generation.totalSteps) };
}

/** What the clients received: complete streams, time between step events, spread of one event over the clients. */
function receipt(clients: ReceivedEvent[][], totalSteps: number) {
  const steps = clients.map((events) => events.filter((e) => e.status === 'RUNNING' && e.step > 0));
  const complete = clients.filter((events, i) => steps[i].length === totalSteps && steps[i].every((e, k) => e.step === k + 1) && events.at(-1)?.status === 'SUCCEEDED').length;
  const spread = Array.from({ length: totalSteps }, (_, k) => {
    const at = steps.flatMap((events) => events.filter((e) => e.step === k + 1).map((e) => e.at));
    return Math.max(...at) - Math.min(...at);
  });
  return {
    complete,
    stepMs: median(steps.flatMap((events) => gaps(events.map((e) => e.at)))),
    spreadMs: median(spread),
    previewChars: median(steps.flat().map((e) => e.previewChars)),
  };
}

export async function benchApi(): Promise<BenchRow[]> {
  const buildMs = await cachedFixture(join(MODELS_DIR, MODEL_ID), FIXTURE);
  const model = await inspectModelFolder(join(MODELS_DIR, MODEL_ID));
  const request = await resolveRequest(model, PARAMS);
  process.stderr.write('  starting a server…\n');
  const api = await startTestServer({ modelsDir: MODELS_DIR });
  const serverTimings = captureServerTimings();
  const engine = new Engine();
  const subscribers = fork(fileURLToPath(new URL('./lib/subscribers.ts', import.meta.url)), { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const ws = api.wsClient();
    process.stderr.write('  warming up…\n');
    let last: { latents: Float32Array; shape: readonly [number, number, number, number] } | undefined;
    await engine.run(model, request, { onStep: ({ latents, latentShape }) => void (last = { latents: latents.slice(), shape: latentShape }) });
    await throughApi(api, ws, 1, serverTimings);

    const engineRuns: Awaited<ReturnType<typeof engineAlone>>[] = [];
    const quiet: Awaited<ReturnType<typeof throughApi>>[] = [];
    const previewed: typeof quiet = [];
    const runs = [
      async () => void engineRuns.push(await engineAlone(engine, model, request)),
      async () => void quiet.push(await throughApi(api, ws, 0, serverTimings)),
      async () => void previewed.push(await throughApi(api, ws, 1, serverTimings)),
    ];
    for (let round = 0; round < ROUNDS; round++) {
      process.stderr.write(`  engine vs API, round ${round + 1}/${ROUNDS}\n`);
      for (let i = 0; i < runs.length; i++) await runs[(round + i) % runs.length]();
    }

    const renderMs: number[] = [];
    const rgbMs: number[] = [];
    let previewChars = 0;
    const cpu = process.cpuUsage();
    for (let i = 0; i < PREVIEW_RENDERS; i++) {
      let started = performance.now();
      latentsToRgb(last!.latents, last!.shape, 0);
      rgbMs.push(performance.now() - started);
      started = performance.now();
      previewChars = (await renderPreview(last!.latents, last!.shape, 0, request)).dataUrl.length;
      renderMs.push(performance.now() - started);
    }
    const { user, system } = process.cpuUsage(cpu);
    const renderCpuMs = (user + system) / 1000 / PREVIEW_RENDERS;

    const one: Awaited<ReturnType<typeof withSubscribers>>[] = [];
    const many: typeof one = [];
    for (let round = 0; round < SUBSCRIBER_ROUNDS; round++) {
      process.stderr.write(`  1 vs ${SUBSCRIBERS} subscribers, round ${round + 1}/${SUBSCRIBER_ROUNDS}\n`);
      for (const count of round % 2 ? [SUBSCRIBERS, 1] : [1, SUBSCRIBERS]) {
        (count === 1 ? one : many).push(await withSubscribers(api, subscribers, count, serverTimings));
      }
    }

    const ratios = (runs: { ms: number }[]) => runs.map((r, i) => r.ms / engineRuns[i].ms);
    const differences = <T,>(a: T[], b: T[], value: (r: T) => number) => a.map((r, i) => value(r) - value(b[i]));
    const rounds = (values: number[]) => `median of ${values.length} paired rounds (${range(values)})`;
    const previewStep = differences(previewed, quiet, (r) => r.stepMs);
    const previewLoop = differences(previewed, quiet, (r) => r.loopCpuPerStepMs);
    const manyStep = differences(many, one, (r) => r.stepMs);
    const manyLoop = differences(many, one, (r) => r.loopCpuPerStepMs);
    const meanStep = (runs: { meanStepMs: number }[]) => `${median(runs.map((r) => r.meanStepMs)).toFixed(1)} ms`;
    const received = many.reduce((sum, r) => sum + r.complete, 0);
    const perEvent = median(many.map((r) => r.previewChars));
    const shape = `${request.width}×${request.height}, ${STEPS} steps, ${request.scheduler}, UNet batch 2`;
    return [
      ...(buildMs === undefined ? [] : [{ metric: 'fixture build (cached in bench/out/api/)', value: buildMs / 1000, unit: 's' }]),
      { metric: 'engine alone: Engine.run + PNG', value: median(engineRuns.map((r) => r.ms)), unit: 'ms', note: `median of ${ROUNDS}, in-process (${shape})` },
      { metric: 'API whole request, previewEvery 0', value: median(quiet.map((r) => r.ms)), unit: 'ms', note: 'generate → SUCCEEDED over graphql-ws → image fetched' },
      { metric: 'ratio API / engine, previewEvery 0', value: median(ratios(quiet)), note: rounds(ratios(quiet)) },
      { metric: 'API whole request, previews every step', value: median(previewed.map((r) => r.ms)), unit: 'ms', note: 'the default previewEvery 1, previews received' },
      { metric: 'ratio API / engine, previews every step', value: median(ratios(previewed)), note: rounds(ratios(previewed)) },
      { metric: 'time per step, engine alone', value: median(engineRuns.map((r) => r.stepMs)), unit: 'ms', note: 'median gap between onStep calls, in-process' },
      { metric: 'time per step, API, previewEvery 0', value: median(quiet.map((r) => r.stepMs)), unit: 'ms', note: `median gap between step events; server's mean ${meanStep(quiet)}` },
      { metric: 'time per step, API, previewEvery 1', value: median(previewed.map((r) => r.stepMs)), unit: 'ms', note: `as above; server's mean ${meanStep(previewed)}` },
      { metric: 'preview cost per step, time', value: median(previewStep), unit: 'ms', note: `previewEvery 1 − 0, ${rounds(previewStep)}` },
      { metric: 'preview cost per step, event loop CPU', value: median(previewLoop), unit: 'ms', note: `main thread, ${rounds(previewLoop)}` },
      { metric: 'renderPreview, direct', value: median(renderMs), unit: 'ms', note: `median of ${PREVIEW_RENDERS}, ${renderCpuMs.toFixed(2)} ms CPU each: ${last!.shape.slice(2).join('×')} latents → ${previewChars} chars of JPEG data URL` },
      { metric: 'of which latentsToRgb (event loop)', value: median(rgbMs), unit: 'ms', note: 'synchronous JavaScript; the rest is sharp on its threads' },
      { metric: 'time per step, 1 subscriber', value: median(one.map((r) => r.stepMs)), unit: 'ms', note: `median gap between step events; server's mean ${meanStep(one)}` },
      { metric: `time per step, ${SUBSCRIBERS} subscribers`, value: median(many.map((r) => r.stepMs)), unit: 'ms', note: `over all clients; server's mean ${meanStep(many)}` },
      { metric: `cost of ${SUBSCRIBERS} subscribers per step, time`, value: median(manyStep), unit: 'ms', note: rounds(manyStep) },
      { metric: 'event loop CPU per step, 1 subscriber', value: median(one.map((r) => r.loopCpuPerStepMs)), unit: 'ms', note: `whole generation / steps (DB writes, finish included); delay p99 ${median(one.map((r) => r.delayP99Ms)).toFixed(1)} ms` },
      { metric: `event loop CPU per step, ${SUBSCRIBERS} subscribers`, value: median(many.map((r) => r.loopCpuPerStepMs)), unit: 'ms', note: `delay p99 ${median(many.map((r) => r.delayP99Ms)).toFixed(1)} ms` },
      { metric: `cost of ${SUBSCRIBERS} subscribers per step, event loop CPU`, value: median(manyLoop), unit: 'ms', note: rounds(manyLoop) },
      { metric: 'clients with every step + SUCCEEDED', value: `${received}/${SUBSCRIBERS * SUBSCRIBER_ROUNDS}`, note: `${SUBSCRIBERS} graphql-ws sockets × ${SUBSCRIBER_ROUNDS} generations` },
      { metric: `one step event reaching all ${SUBSCRIBERS}`, value: median(many.map((r) => r.spreadMs)), unit: 'ms', note: 'last client minus first, median over steps' },
      { metric: `sent per step to ${SUBSCRIBERS} subscribers`, value: (perEvent * SUBSCRIBERS) / 1024, unit: 'KiB', note: `preview data URL ${perEvent} chars per event, before framing` },
    ];
  } finally {
    subscribers.kill();
    await engine.close();
    await api.close();
  }
}
