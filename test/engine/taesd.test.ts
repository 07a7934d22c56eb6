// TAESD previews: found by file name in the model's folder or the models folder, run by the engine
// at the steps previewEvery asks for on image 0 (pixels equal to running the decoder here), carried
// across the engine thread and into generationProgress, and never a reason for a generation to
// fail or change.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { EngineThread } from '../../src/diffusion/engine-thread.ts';
import { Engine, type EngineOptions, type EngineStepProgress, type GenerationEngine, type PreviewSettings } from '../../src/diffusion/engine.ts';
import { createTaesdDecoder, type TaesdFixtureOptions } from '../../src/diffusion/fixtures/taesd.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { GraphBuilder } from '../../src/diffusion/onnx/builder.ts';
import { DataType, encodeModel } from '../../src/diffusion/onnx/proto.ts';
import { resolveRequest, type GenerateRequest } from '../../src/diffusion/request.ts';
import { encodePreview, renderPreview, type PreviewImage } from '../../src/diffusion/preview.ts';
import { findTaesdDecoder } from '../../src/diffusion/taesd.ts';
import { BLOCKER, collectWs, startTestServer, type TestServer } from '../helpers/api.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { FixtureDir } from './helpers.ts';

const OPTIONS: EngineOptions = { runtime: { intraOpNumThreads: 1 } };

/** The decoder run here on image 0 of `latents`, as 8-bit RGB rows: [0, 1] or, for `signed`, [-1, 1] mapped to 0…255. */
async function decodeHere(path: string, latents: Float32Array, shape: readonly number[], signed: boolean) {
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
  try {
    const [, c, h, w] = shape;
    const input = new ort.Tensor('float32', latents.slice(0, c * h * w), [1, c, h, w]);
    const output = (await session.run({ [session.inputNames[0]]: input }))[session.outputNames[0]];
    const [, , height, width] = output.dims;
    const data = output.data as Float32Array;
    const rgb = new Uint8Array(width * height * 3);
    for (let ch = 0; ch < 3; ch++) {
      for (let p = 0; p < width * height; p++) {
        const v = signed ? (data[ch * width * height + p] + 1) / 2 : data[ch * width * height + p];
        rgb[p * 3 + ch] = Math.round(Math.min(Math.max(v, 0), 1) * 255);
      }
    }
    return { width, height, rgb };
  } finally {
    await session.release();
  }
}

/** Runs a request, keeping a copy of every step's latents and what the engine sent with it. */
async function runCollecting(engine: GenerationEngine, model: ModelFolderInfo, request: GenerateRequest, previews?: PreviewSettings) {
  const steps: EngineStepProgress[] = [];
  const result = await engine.run(model, request, { previews, onStep: (p) => void steps.push({ ...p, latents: p.latents.slice() }) });
  return { result, steps };
}

describe('findTaesdDecoder', () => {
  let fixtures: FixtureDir;
  before(async () => (fixtures = await FixtureDir.create()));
  after(() => fixtures.remove());

  test("takes the model folder's own decoder, else the models folder's, by the family's file name", async () => {
    const modelsDir = fixtures.root;
    const sd = { dir: join(modelsDir, 'sd15'), family: 'SD1' as const };
    const own = { dir: join(modelsDir, 'tuned'), family: 'SD2' as const };
    const xl = { dir: join(modelsDir, 'xl'), family: 'SDXL' as const };
    for (const path of [join(modelsDir, 'vae_approx', 'taesd_decoder.onnx'), join(own.dir, 'vae_approx', 'taesd_decoder.onnx')]) {
      await mkdir(join(path, '..'), { recursive: true });
      await writeFile(path, 'onnx');
    }
    assert.equal(await findTaesdDecoder(sd, modelsDir), join(modelsDir, 'vae_approx', 'taesd_decoder.onnx'));
    assert.equal(await findTaesdDecoder(sd), undefined, 'without a models folder only the model folder counts');
    assert.equal(await findTaesdDecoder(own, modelsDir), join(own.dir, 'vae_approx', 'taesd_decoder.onnx'));
    assert.equal(await findTaesdDecoder(xl, modelsDir), undefined, 'SDXL latents need taesdxl_decoder.onnx');
    await writeFile(join(modelsDir, 'vae_approx', 'taesdxl_decoder.onnx'), 'onnx');
    assert.equal(await findTaesdDecoder(xl, modelsDir), join(modelsDir, 'vae_approx', 'taesdxl_decoder.onnx'));
  });
});

describe('TAESD previews', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;
  let request: GenerateRequest;
  const engine = new Engine(OPTIONS);
  let plain: Awaited<ReturnType<typeof runCollecting>>;

  const decoderAt = async (name: string, options: TaesdFixtureOptions = {}) => {
    const path = join(fixtures.root, name, 'vae_approx', 'taesd_decoder.onnx');
    await createTaesdDecoder(path, options);
    return path;
  };

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('sd', { unetChannels: [16, 32] });
    // Two images, and a size that is not square, so that image 0 and the axes are told apart.
    request = await resolveRequest(model, { prompt: 'a lighthouse', width: 96, height: 64, steps: 5, numImages: 2, seed: 7, scheduler: 'EULER_A' });
    plain = await runCollecting(engine, model, request);
  });
  after(async () => {
    await engine.close();
    await fixtures.remove();
  });

  for (const convention of ['taesd', 'diffusers'] as const) {
    test(`a ${convention} decoder previews image 0 at the steps previewEvery asks for, as running it here does, and changes no image`, async () => {
      const decoder = await decoderAt(`dec-${convention}`, { convention, seed: 3 });
      const { result, steps } = await runCollecting(engine, model, request, { every: 2, decoder });
      assert.deepEqual(steps.filter((s) => s.previewRgb).map((s) => s.step), [2, 4, 5], 'every 2 steps, and the last');
      for (const step of steps.filter((s) => s.previewRgb)) {
        const here = await decodeHere(decoder, step.latents, step.latentShape, convention === 'diffusers');
        const { width, height, data } = step.previewRgb!;
        assert.deepEqual([width, height], [96, 64]);
        assert.deepEqual([here.width, here.height], [96, 64]);
        assert.ok(maxAbsDiff(data, here.rgb) <= 1, `step ${step.step}: the preview differs from the decoder's output by ${maxAbsDiff(data, here.rgb)}`);
        const other = await decodeHere(decoder, step.latents.subarray(step.latents.length / 2), step.latentShape, convention === 'diffusers');
        assert.ok(maxAbsDiff(data, other.rgb) > 16, 'image 1 would give another preview');
      }
      assert.deepEqual(result.warnings, []);
      assert.ok((result.timings.previewMs ?? 0) > 0, 'the decoding time is reported');
      for (const [i, { image }] of result.images.entries()) assert.equal(maxAbsDiff(image.data, plain.result.images[i].image.data), 0);
      for (const [i, s] of steps.entries()) assert.equal(maxAbsDiff(s.latents, plain.steps[i].latents), 0);
    });
  }

  test('no decoder, or previewEvery 0: no TAESD pixels and no preview timing', async () => {
    const decoder = await decoderAt('dec-unused');
    assert.ok(plain.steps.every((s) => !s.previewRgb));
    assert.equal(plain.result.timings.previewMs, undefined);
    const none = await runCollecting(engine, model, request, { every: 0, decoder });
    assert.ok(none.steps.every((s) => !s.previewRgb));
    assert.equal(none.result.timings.previewMs, undefined);
  });

  test('a decoder that cannot be loaded, or fails while decoding, leaves one warning, the linear approximation, and the same images', async () => {
    const garbage = join(fixtures.root, 'garbage', 'vae_approx', 'taesd_decoder.onnx');
    await mkdir(join(garbage, '..'), { recursive: true });
    await writeFile(garbage, 'not an onnx model');
    // Loads (its shapes are dynamic), then gives 4 channels rather than RGB at the first decode.
    const identity = join(fixtures.root, 'identity', 'vae_approx', 'taesd_decoder.onnx');
    const g = new GraphBuilder();
    g.input('latents', DataType.FLOAT, ['batch', 'channels', 'height', 'width']);
    g.op('', 'Identity', ['latents'], [], 'image');
    g.output('image', DataType.FLOAT, ['batch', 'channels', 'height', 'width']);
    await mkdir(join(identity, '..'), { recursive: true });
    await writeFile(identity, encodeModel(g.model(14)));
    // Loads, but takes 3 channels.
    const unfit = join(fixtures.root, 'unfit', 'vae_approx', 'taesd_decoder.onnx');
    const u = new GraphBuilder();
    u.input('latents', DataType.FLOAT, ['batch', 3, 'height', 'width']);
    u.op('', 'Identity', ['latents'], [], 'image');
    u.output('image', DataType.FLOAT, ['batch', 3, 'height', 'width']);
    await mkdir(join(unfit, '..'), { recursive: true });
    await writeFile(unfit, encodeModel(u.model(14)));

    for (const [decoder, reason] of [
      [garbage, /onnxruntime could not load it/],
      [identity, /gave \[1, 4, 8, 12\]/],
      [unfit, /is no TAESD decoder: its input latents is \[batch, 3, height, width\]/],
      [join(fixtures.root, 'gone.onnx'), /ENOENT/],
    ] as const) {
      const { result, steps } = await runCollecting(engine, model, request, { every: 1, decoder });
      assert.ok(steps.every((s) => !s.previewRgb));
      assert.equal(result.warnings.length, 1, `one warning, not one a step: ${result.warnings.join(' | ')}`);
      assert.match(result.warnings[0], /^the preview decoder .*could not be used \(.*\); previews use the linear approximation$/);
      assert.match(result.warnings[0], reason);
      assert.ok(!result.warnings[0].includes(fixtures.root), `the warning names no server path: ${result.warnings[0]}`);
      for (const [i, { image }] of result.images.entries()) assert.equal(maxAbsDiff(image.data, plain.result.images[i].image.data), 0);
    }
  });

  test('the engine thread sends the same TAESD pixels', async () => {
    const decoder = await decoderAt('dec-thread', { seed: 5 });
    const local = await runCollecting(engine, model, request, { every: 3, decoder });
    const thread = new EngineThread(OPTIONS);
    try {
      const remote = await runCollecting(thread, model, request, { every: 3, decoder });
      assert.deepEqual(remote.steps.filter((s) => s.previewRgb).map((s) => s.step), [3, 5]);
      for (const [i, step] of remote.steps.entries()) {
        assert.equal(step.previewRgb === undefined, local.steps[i].previewRgb === undefined);
        if (step.previewRgb) {
          assert.ok(step.previewRgb.data instanceof Uint8Array);
          assert.deepEqual(step.previewRgb, local.steps[i].previewRgb);
        }
      }
      assert.ok((remote.result.timings.previewMs ?? 0) > 0);
    } finally {
      await thread.close();
    }
  });
});

describe('TAESD previews through generationProgress', () => {
  const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status step preview { dataUrl width height } } }`;
  const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
  let api: TestServer;
  let decoder: string;

  before(async () => {
    api = await startTestServer({ models: { demo: {}, broken: {} } });
    decoder = join(api.config.modelsDir, 'vae_approx', 'taesd_decoder.onnx');
    await createTaesdDecoder(decoder, { seed: 2 });
    await mkdir(join(api.config.modelsDir, 'broken', 'vae_approx'));
    await writeFile(join(api.config.modelsDir, 'broken', 'vae_approx', 'taesd_decoder.onnx'), 'not an onnx model');
  });
  after(() => api.close());

  /** The progress events of a generation, subscribed while another one keeps the worker busy, so that none is missed. */
  async function generateFollowing(input: Record<string, unknown>) {
    const generate = async (i: Record<string, unknown>) => (await api.data<{ generate: { id: string } }>(GENERATE, { input: i })).generate.id;
    const busy = await generate(BLOCKER);
    const id = await generate(input);
    const stream = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id });
    await stream.next('the state when subscribing');
    await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: busy });
    const events = (await stream.done()).map((e) => e.generationProgress);
    const { generation } = await api.data<{ generation: { status: string; warnings: string[] } }>(`query($id: ID!) { generation(id: $id) { status warnings } }`, { id });
    return { steps: events.filter((e) => e.status === 'RUNNING' && e.step > 0), generation };
  }

  /** The same request on an engine here: each step's latents. */
  async function latentsOf(modelId: string, input: Record<string, unknown>) {
    const model = await inspectModelFolder(join(api.config.modelsDir, modelId));
    const request = await resolveRequest(model, input as { prompt: string });
    const local = new Engine(OPTIONS);
    try {
      return { request, steps: (await runCollecting(local, model, request)).steps };
    } finally {
      await local.close();
    }
  }

  /** Mean absolute difference of two previews' decoded pixels, 0…255. */
  async function meanDiff(a: PreviewImage, b: PreviewImage): Promise<number> {
    const [x, y] = await Promise.all([a, b].map((p) => sharp(Buffer.from(p.dataUrl.split(',')[1], 'base64')).raw().toBuffer()));
    assert.equal(x.length, y.length);
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += Math.abs(x[i] - y[i]);
    return sum / x.length;
  }

  test("SDQL_MODELS_DIR/vae_approx's decoder makes the previews, at the steps previewEvery asks for", async () => {
    const input = { modelId: 'demo', prompt: 'a harbour', steps: 3, seed: 11, scheduler: 'EULER', previewEvery: 2 };
    const { steps, generation } = await generateFollowing(input);
    assert.equal(generation.status, 'SUCCEEDED');
    assert.deepEqual(generation.warnings, []);
    assert.deepEqual(steps.map((e) => [e.step, e.preview !== null]), [[1, false], [2, true], [3, true]]);

    const local = await latentsOf('demo', input);
    for (const event of steps.filter((e) => e.preview)) {
      const { latents, latentShape } = local.steps[event.step - 1];
      const here = await decodeHere(decoder, latents, latentShape, false);
      const taesd = await encodePreview({ width: here.width, height: here.height, data: here.rgb }, local.request);
      const linear = await renderPreview(latents, latentShape, 0, local.request);
      assert.deepEqual([event.preview.width, event.preview.height], [taesd.width, taesd.height]);
      const fromDecoder = await meanDiff(event.preview, taesd);
      const fromLinear = await meanDiff(event.preview, linear);
      assert.ok(fromDecoder < 1 && fromLinear > 10, `step ${event.step}: the preview is ${fromDecoder.toFixed(2)} from the decoder's, ${fromLinear.toFixed(2)} from the linear approximation's`);
    }
  });

  test("a broken decoder in the model's folder: the linear approximation, a warning, and SUCCEEDED", async () => {
    const input = { modelId: 'broken', prompt: 'a harbour', steps: 2, seed: 11, scheduler: 'EULER' };
    const { steps, generation } = await generateFollowing(input);
    assert.equal(generation.status, 'SUCCEEDED');
    assert.equal(generation.warnings.length, 1);
    assert.match(generation.warnings[0], /^the preview decoder broken\/vae_approx\/taesd_decoder\.onnx could not be used/);
    assert.deepEqual(steps.map((e) => e.step), [1, 2]);
    const local = await latentsOf('broken', input);
    for (const event of steps) {
      const { latents, latentShape } = local.steps[event.step - 1];
      const diff = await meanDiff(event.preview, await renderPreview(latents, latentShape, 0, local.request));
      assert.ok(diff < 1, `step ${event.step}: the preview is ${diff.toFixed(2)} from the linear approximation's`);
    }
  });
});
