// The hires fix through the API: with `lanczos` it is a txt2img followed by an img2img of its 8-bit
// image at the hires size; latent upscalers give the hires size too; progress and previews run
// through both passes; the infotext carries AUTOMATIC1111's hires keys; bad settings store nothing.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { createUpscaler } from '../../src/diffusion/fixtures/index.ts';
import { BLOCKER, collectWs, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error width height step totalSteps images { url seed width height infotext } } }`;
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status step totalSteps preview { width height } } }`;

let api: TestServer;
let png: string;
before(async () => {
  api = await startTestServer({ models: { demo: {}, noencoder: { vaeEncoderOutput: 'none' } } });
  await createUpscaler(join(api.config.modelsDir, 'upscalers', 'fixture-x2.onnx'));
  png = `data:image/png;base64,${(await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png().toBuffer()).toString('base64')}`;
});
after(() => api?.close());

const base = { modelId: 'demo', prompt: 'a castle on a hill', steps: 4, width: 96, height: 64, seed: 11, scheduler: 'EULER' };

async function submit(input: Record<string, unknown>): Promise<string> {
  return (await api.data<any>(GENERATE, { input: { ...base, ...input } })).generate.id;
}

async function finished(id: string) {
  await waitForStatus(api.server.url, id, ['SUCCEEDED']);
  const { generation } = await api.data<any>(GENERATION, { id });
  const images = await Promise.all(
    generation.images.map(async (image: any) => {
      const bytes = Buffer.from(await (await fetch(image.url)).arrayBuffer());
      return { ...image, bytes, pixels: await sharp(bytes).raw().toBuffer() };
    }),
  );
  return { ...generation, images };
}

test('hires with lanczos is a txt2img followed by an img2img of its 8-bit image at the hires size', async () => {
  const hires = await finished(await submit({ hires: { scale: 2, upscaler: 'lanczos', steps: 5, strength: 0.6 } }));
  assert.deepEqual([hires.images[0].width, hires.images[0].height], [192, 128]);
  const first = await finished(await submit({}));
  const second = await finished(
    await submit({ initImage: { dataUrl: `data:image/png;base64,${first.images[0].bytes.toString('base64')}` }, width: 192, height: 128, steps: 5, strength: 0.6 }),
  );
  assert.ok(hires.images[0].pixels.equals(second.images[0].pixels), 'hires differs from its two passes run by hand');
  assert.match(hires.images[0].infotext, /Size: 96x64, .*Denoising strength: 0\.6, Hires upscale: 2, Hires steps: 5, Hires upscaler: Lanczos/);
});

test('latent upscalers give the hires size; progress and previews run through both passes', async () => {
  const busy = await submit(BLOCKER);
  const id = await submit({ hires: { width: 192, steps: 5, strength: 0.6 } });
  const ws = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id });
  await ws.next('the state when subscribing');
  await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: busy });
  const steps = (await ws.done()).map((e) => e.generationProgress).filter((e) => e.status === 'RUNNING' && e.step > 0);
  // 4 first-pass steps, then trunc(5 × 0.6) = 3 img2img steps.
  assert.deepEqual(steps.map((e) => e.step), [1, 2, 3, 4, 5, 6, 7]);
  assert.ok(steps.every((e) => e.totalSteps === 7 && e.preview));
  const latent = await finished(id);
  assert.equal(latent.totalSteps, 7);
  assert.deepEqual([latent.width, latent.height, latent.images[0].width, latent.images[0].height], [96, 64, 192, 128]);
  assert.match(latent.images[0].infotext, /Denoising strength: 0\.6, Hires resize: 192x128, Hires steps: 5, Hires upscaler: Latent(,|$)/);
  const nearest = await finished(await submit({ hires: { width: 192, steps: 5, strength: 0.6, upscaler: 'latent-nearest' } }));
  assert.match(nearest.images[0].infotext, /Hires upscaler: Latent \(nearest\)/);
  assert.ok(!nearest.images[0].pixels.equals(latent.images[0].pixels), 'nearest and bilinear gave one image');
  // The latent upscaler needs no VAE encoder; the default scale is 2.
  const noEncoder = await finished(await submit({ modelId: 'noencoder', hires: {} }));
  assert.deepEqual([noEncoder.images[0].width, noEncoder.images[0].height], [192, 128]);
  assert.match(noEncoder.images[0].infotext, /Denoising strength: 0\.7, Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent/);
});

test('an ONNX upscaler of the upscalers folder is listed with its scale and upscales the first pass', async () => {
  const { upscalers } = await api.data<any>(`{ upscalers { id scale error } }`);
  assert.deepEqual(upscalers, [{ id: 'fixture-x2', scale: 2, error: null }]);
  const model = await finished(await submit({ hires: { upscaler: 'fixture-x2', steps: 5, strength: 0.6 } }));
  assert.deepEqual([model.images[0].width, model.images[0].height], [192, 128]);
  assert.match(model.images[0].infotext, /Hires upscale: 2, Hires steps: 5, Hires upscaler: fixture-x2/);
  const lanczos = await finished(await submit({ hires: { upscaler: 'lanczos', steps: 5, strength: 0.6 } }));
  assert.ok(!model.images[0].pixels.equals(lanczos.images[0].pixels), 'the model upscaler was not used');
});

test('bad hires settings are BAD_USER_INPUT naming the field, and store nothing', async () => {
  const count = async () => (await api.data<any>(`{ generations(first: 100) { edges { node { id } } } }`)).generations.edges.length;
  const inputs = join(api.config.dataDir, 'inputs');
  const inputFiles = () => (existsSync(inputs) ? readdirSync(inputs).length : 0);
  const before = await count();
  const filesBefore = inputFiles();
  for (const [input, message] of [
    [{ initImage: { dataUrl: png }, hires: {} }, /hires applies only to txt2img/],
    [{ width: 512, height: 512, hires: { scale: 3 } }, /hires: 1536×1536 is more than 589824 pixels, model demo's limit: one image of it needs \d+\.\d GiB for the UNet's attention, more than the 5\.3 GiB allowed \(see the README's limits\): lower scale or the size/],
    [{ width: 512, height: 512, hires: { scale: 1.52 } }, /hires: 776×776 is more than 589824 pixels, model demo's limit/],
    [{ hires: { upscaler: 'nope' } }, /hires: unknown upscaler "nope"/],
    [{ hires: { scale: 0.5 } }, /hires: scale/],
    [{ hires: { scale: 2, width: 128 } }, /hires: give scale or width\/height/],
    [{ hires: { width: 100 } }, /hires: width must be a positive multiple of 8/],
    [{ hires: { strength: 0 } }, /hires: strength/],
    [{ hires: { steps: 2, strength: 0.2 } }, /hires: steps × strength/],
    [{ modelId: 'noencoder', hires: { upscaler: 'lanczos' } }, /hires: the model has no VAE encoder/],
  ] as const) {
    const result = await api.gql(GENERATE, { input: { ...base, ...input } });
    assert.equal(result.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(result));
    assert.match(result.errors![0].message, message);
  }
  assert.equal(await count(), before);
  assert.equal(inputFiles(), filesBefore, 'an init image of a rejected request was kept');
});
