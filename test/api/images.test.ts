// Images in and out: init images by history id, data URL and multipart upload, and the parameters
// a PNG carries read back with pngInfo (ours and AUTOMATIC1111's).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { addPngText } from '../../src/diffusion/png-text.ts';
import { startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id width height strength } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error images { id url seed width height } } }`;
const PNG_INFO = `query($image: ImageInput!) { pngInfo(image: $image) { parameters prompt negativePrompt steps sampler scheduleType scheduler guidanceScale seed width height modelHash model strength
  hires { upscale resizeWidth resizeHeight steps upscaler denoisingStrength sampler prompt negativePrompt } request settings { key value } } }`;

let api: TestServer;

before(async () => {
  api = await startTestServer();
});
after(() => api.close());

/** Submits a request and returns it once it has ended. */
async function run(input: Record<string, unknown>) {
  const { generate } = await api.data<any>(GENERATE, { input });
  await waitForStatus(api.server.url, generate.id, ['SUCCEEDED', 'FAILED', 'CANCELED']);
  const { generation } = await api.data<any>(GENERATION, { id: generate.id });
  return { submitted: generate, generation };
}

test('an image of the history is an init image by its id, and pngInfo reads our parameters back', async () => {
  const first = await run({ modelId: 'demo', prompt: 'a castle', negativePrompt: 'rain', steps: 3, seed: 77, scheduler: 'DDIM', guidanceScale: 5 });
  assert.equal(first.generation.status, 'SUCCEEDED', first.generation.error);
  const [image] = first.generation.images;
  const { pngInfo } = await api.data<any>(PNG_INFO, { image: { imageId: image.id } });
  assert.deepEqual(
    { prompt: pngInfo.prompt, negativePrompt: pngInfo.negativePrompt, steps: pngInfo.steps, scheduler: pngInfo.scheduler, seed: pngInfo.seed, guidanceScale: pngInfo.guidanceScale, model: pngInfo.model },
    { prompt: 'a castle', negativePrompt: 'rain', steps: 3, scheduler: 'DDIM', seed: 77, guidanceScale: 5, model: 'demo' },
  );
  assert.deepEqual([pngInfo.width, pngInfo.height], [image.width, image.height]);
  assert.equal(JSON.parse(pngInfo.request).seed, 77);

  const second = await run({ modelId: 'demo', prompt: 'a castle at night', steps: 4, seed: 3, initImage: { imageId: image.id }, strength: 0.5 });
  assert.equal(second.generation.status, 'SUCCEEDED', second.generation.error);
  assert.deepEqual([second.submitted.width, second.submitted.height, second.submitted.strength], [image.width, image.height, 0.5]);
  const again = await run({ modelId: 'demo', prompt: 'a castle at night', steps: 4, seed: 3, initImage: { imageId: image.id }, strength: 1 });
  const pixels = async (url: string) => sharp(Buffer.from(await (await fetch(url)).arrayBuffer())).raw().toBuffer();
  assert.notDeepEqual(await pixels(second.generation.images[0].url), await pixels(again.generation.images[0].url), 'strength made no difference');
});

test('an init image uploaded as a multipart file takes its size from the image, rounded down to the VAE grid', async () => {
  const png = await sharp({ create: { width: 83, height: 70, channels: 3, background: '#a0522d' } }).png().toBuffer();
  const form = new FormData();
  form.set('operations', JSON.stringify({ query: GENERATE, variables: { input: { modelId: 'demo', prompt: 'upload', steps: 2, initImage: { file: null } } } }));
  form.set('map', JSON.stringify({ 0: ['variables.input.initImage.file'] }));
  form.set('0', new File([png], 'init.png', { type: 'image/png' }));
  const response = await fetch(`${api.server.url}/graphql`, { method: 'POST', body: form, headers: { 'graphql-require-preflight': '1' } });
  const body = (await response.json()) as any;
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  assert.deepEqual([body.data.generate.width, body.data.generate.height], [80, 64]);
});

test("pngInfo reads AUTOMATIC1111's infotext, and gives nulls for an image without one", async () => {
  const plain = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } }).png().toBuffer();
  const a1111 = addPngText(plain, {
    parameters: 'masterpiece, (a fox:1.2)\nNegative prompt: lowres\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3141592653, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned, Denoising strength: 0.45, Lora hashes: "fox: abc123"',
  });
  const { pngInfo } = await api.data<any>(PNG_INFO, { image: { dataUrl: `data:image/png;base64,${a1111.toString('base64')}` } });
  assert.equal(pngInfo.prompt, 'masterpiece, (a fox:1.2)');
  assert.equal(pngInfo.negativePrompt, 'lowres');
  assert.deepEqual([pngInfo.steps, pngInfo.scheduler, pngInfo.guidanceScale, pngInfo.seed], [30, 'DPMPP_2M_KARRAS', 7, 3141592653]);
  assert.deepEqual([pngInfo.width, pngInfo.height, pngInfo.modelHash, pngInfo.model, pngInfo.strength], [512, 768, '6ce0161689', 'v1-5-pruned', 0.45]);
  assert.deepEqual(pngInfo.settings.at(-1), { key: 'Lora hashes', value: 'fox: abc123' });
  assert.equal(pngInfo.request, null);
  assert.equal(pngInfo.hires, null);

  // AUTOMATIC1111 1.10: the schedule type apart, hires fix, and an extension's key in French.
  const hires = addPngText(plain, {
    parameters:
      'a fox\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 512x512, Denoising strength: 0.4, ' +
      'Hires prompt: "a fox, detailed", Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Modèle de détail: 0.5, Version: v1.10.1',
  });
  const read = (await api.data<any>(PNG_INFO, { image: { dataUrl: `data:image/png;base64,${hires.toString('base64')}` } })).pngInfo;
  assert.deepEqual([read.sampler, read.scheduleType, read.scheduler, read.strength], ['DPM++ 2M', 'Karras', 'DPMPP_2M_KARRAS', null]);
  assert.deepEqual(read.hires, { upscale: 2, resizeWidth: null, resizeHeight: null, steps: 10, upscaler: 'Latent', denoisingStrength: 0.4, sampler: null, prompt: 'a fox, detailed', negativePrompt: null });
  assert.deepEqual(read.settings.slice(-2), [{ key: 'Modèle de détail', value: '0.5' }, { key: 'Version', value: 'v1.10.1' }]);
  // Without a schedule type, AUTOMATIC1111 runs DPM2 with Karras: none of ours.
  const dpm2 = addPngText(plain, { parameters: 'a fox\nSteps: 20, Sampler: DPM2, CFG scale: 7, Seed: 5, Size: 512x512' });
  const old = (await api.data<any>(PNG_INFO, { image: { dataUrl: `data:image/png;base64,${dpm2.toString('base64')}` } })).pngInfo;
  assert.deepEqual([old.sampler, old.scheduleType, old.scheduler], ['DPM2', 'Karras', null]);

  const none = await api.data<any>(PNG_INFO, { image: { dataUrl: `data:image/png;base64,${plain.toString('base64')}` } });
  assert.equal(none.pngInfo.parameters, null);
  assert.deepEqual([none.pngInfo.scheduleType, none.pngInfo.scheduler, none.pngInfo.hires], [null, null, null]);
  assert.deepEqual(none.pngInfo.settings, []);
});

test('an image of every scheduler names, to AUTOMATIC1111 and back to pngInfo, the sampler and schedule type it ran', async () => {
  // The fixture model's scheduler_config.json has "leading" timestep spacing: AUTOMATIC1111's DDIM schedule.
  const expected: Record<string, [string, string | null]> = {
    DDIM: ['DDIM', null],
    PNDM: ['PLMS', null],
    UNIPC: ['UniPC', null],
    LMS: ['LMS', 'DDIM'],
    EULER: ['Euler', 'DDIM'],
    EULER_A: ['Euler a', 'DDIM'],
    HEUN: ['Heun', 'DDIM'],
    DPM2: ['DPM2', 'DDIM'],
    DPMPP_2M: ['DPM++ 2M', 'SGM Uniform'],
    DPMPP_2M_KARRAS: ['DPM++ 2M', 'Karras'],
    LCM: ['LCM', 'SGM Uniform'],
  };
  for (const [scheduler, [sampler, scheduleType]] of Object.entries(expected)) {
    const { generation } = await run({ modelId: 'demo', prompt: 'a castle', steps: 2, seed: 1, scheduler, eta: 0.5 });
    assert.equal(generation.status, 'SUCCEEDED', generation.error);
    const { pngInfo } = await api.data<any>(PNG_INFO, { image: { imageId: generation.images[0].id } });
    assert.deepEqual([pngInfo.sampler, pngInfo.scheduleType, pngInfo.scheduler], [sampler, scheduleType, scheduler]);
    const written = Object.fromEntries(pngInfo.settings.map((s: { key: string; value: string }) => [s.key, s.value]));
    assert.equal(written['Schedule type'], scheduleType ?? undefined, scheduler);
    // η is DDIM's alone; AUTOMATIC1111 would read a bare Eta as the ancestral samplers'.
    assert.deepEqual([written['Eta DDIM'], written.Eta], [scheduler === 'DDIM' ? '0.5' : undefined, undefined], scheduler);
  }
});
