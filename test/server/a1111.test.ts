// AUTOMATIC1111's REST API (/sdapi/v1/) on a real server with fixture models: requests shaped as its
// API documentation and the Photoshop plugin (Auto-Photoshop-StableDiffusion-Plugin) send them, its
// answers' shapes, and that a REST generation goes through the same validation, queue and history
// as GraphQL's `generate`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { startTestServer, type TestServer } from '../helpers/api.ts';
import { pollUntil, withDeadline } from '../helpers/wait.ts';

let api: TestServer;
before(async () => {
  api = await startTestServer({ models: { demo: {}, other: { seed: 2 } } });
});
after(() => api?.close());

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`${api.server.url}/sdapi/v1/${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

async function get(path: string): Promise<any> {
  const response = await fetch(`${api.server.url}/sdapi/v1/${path}`);
  assert.equal(response.status, 200, `GET ${path}`);
  return response.json();
}

const HISTORY = `{ generations(first: 50) { edges { node { id prompt status scheduler model { name } seed mask { sha256 } inpaint { inpaintFill inpaintArea maskBlur } images { infotext } } } } }`;
const history = async () => (await api.data(HISTORY)).generations.edges.map((e: any) => e.node);

const noise = (width: number, height: number) => {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
};

describe('txt2img', () => {
  test("the API documentation's example: base64 PNGs, the request back, and info as a JSON string; the generation is in GraphQL's history", async () => {
    const { status, body } = await post('txt2img', { prompt: 'maltese puppy', steps: 5 });
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.images.length, 1);
    const png = Buffer.from(body.images[0], 'base64');
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    assert.deepEqual(body.parameters, { prompt: 'maltese puppy', steps: 5 });
    const info = JSON.parse(body.info);
    assert.equal(info.prompt, 'maltese puppy');
    assert.equal(info.steps, 5);
    assert.equal(info.width, meta.width);
    assert.equal(info.all_seeds[0], info.seed);
    const stored = (await history()).find((g: any) => g.id === info.sdql_generation_id);
    assert.ok(stored, 'the REST generation is in the history');
    assert.equal(stored.status, 'SUCCEEDED');
    assert.equal(stored.seed, info.seed);
    assert.equal(stored.images[0].infotext, info.infotexts[0]);
    assert.match(info.infotexts[0], /^maltese puppy\nSteps: 5, Sampler: /);
  });

  test("AUTOMATIC1111's sampler names map to sdql's schedulers, and back in info", async () => {
    for (const [request, scheduler, name] of [
      [{ sampler_name: 'Euler a' }, 'EULER_A', 'Euler a'],
      [{ sampler_name: 'DPM++ 2M Karras' }, 'DPMPP_2M_KARRAS', 'DPM++ 2M'],
      [{ sampler_name: 'DPM++ 2M', scheduler: 'Karras' }, 'DPMPP_2M_KARRAS', 'DPM++ 2M'],
      [{ sampler_index: 'DDIM' }, 'DDIM', 'DDIM'],
    ] as const) {
      const { status, body } = await post('txt2img', { prompt: 'a lighthouse', steps: 2, seed: 5, ...request });
      assert.equal(status, 200, JSON.stringify(body));
      const info = JSON.parse(body.info);
      assert.equal(info.sampler_name, name);
      assert.equal((await history()).find((g: any) => g.id === info.sdql_generation_id).scheduler, scheduler, JSON.stringify(request));
    }
  });

  test('an unknown sampler and bad input are 422 in FastAPI\'s shape, and store nothing', async () => {
    const before = (await history()).length;
    for (const [request, field] of [
      [{ sampler_name: 'Warp Drive' }, 'sampler_name'],
      [{ steps: 0 }, ''],
      [{ cfg_scale: 'high' }, 'cfg_scale'],
      [{ enable_hr: true, hr_upscaler: 'R-ESRGAN 4x+' }, ''],
      [{ tiling: true }, 'tiling'],
      [{ override_settings: { sd_model_checkpoint: 'nope' } }, 'sd_model_checkpoint'],
    ] as const) {
      const { status, body } = await post('txt2img', { prompt: 'x', ...request });
      assert.equal(status, 422, JSON.stringify(request));
      assert.equal(body.detail[0].loc[1], field);
      assert.equal(typeof body.detail[0].msg, 'string');
    }
    const steps = await post('txt2img', { prompt: 'x', steps: 0 });
    assert.match(steps.body.detail[0].msg, /steps/);
    assert.equal((await history()).length, before);
  });

  test('enable_hr is the hires fix, and subseed/subseed_strength the variation seed, as the infotext says', async () => {
    const { status, body } = await post('txt2img', {
      prompt: 'a castle',
      steps: 2,
      seed: 3,
      enable_hr: true,
      hr_scale: 2,
      hr_upscaler: 'Latent (nearest)',
      hr_second_pass_steps: 2,
      denoising_strength: 0.5,
      subseed: 9,
      subseed_strength: 0.25,
    });
    assert.equal(status, 200, JSON.stringify(body));
    const meta = await sharp(Buffer.from(body.images[0], 'base64')).metadata();
    assert.deepEqual([meta.width, meta.height], [128, 128]);
    const info = JSON.parse(body.info);
    assert.equal(info.subseed, 9);
    assert.equal(info.subseed_strength, 0.25);
    assert.match(info.infotexts[0], /Variation seed: 9, Variation seed strength: 0.25/);
    assert.match(info.infotexts[0], /Denoising strength: 0.5/);
    assert.match(info.infotexts[0], /Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent \(nearest\)/);
  });

  test('override_settings.CLIP_stop_at_last_layers is clip skip; past its range it is 422 and nothing is stored', async () => {
    const { status, body } = await post('txt2img', { prompt: 'a castle', steps: 2, seed: 3, override_settings: { CLIP_stop_at_last_layers: 2 } });
    assert.equal(status, 200, JSON.stringify(body));
    assert.match(JSON.parse(body.info).infotexts[0], /Clip skip: 2/);
    const before = (await history()).length;
    const refused = await post('txt2img', { prompt: 'a castle', steps: 2, override_settings: { CLIP_stop_at_last_layers: 13 } });
    assert.equal(refused.status, 422, JSON.stringify(refused.body));
    assert.match(JSON.stringify(refused.body.detail), /clipSkip/);
    assert.equal((await history()).length, before);
  });

  test('options: POST sd_model_checkpoint chooses the model of later requests without override_settings', async () => {
    const models = await get('sd-models');
    assert.deepEqual(models.map((m: any) => m.model_name).sort(), ['demo', 'other']);
    const other = models.find((m: any) => m.model_name === 'other');
    assert.match(other.title, /^other \[\w{10}\]$/);
    assert.equal((await post('options', { sd_model_checkpoint: other.title, CLIP_stop_at_last_layers: 1 })).status, 200);
    assert.equal((await get('options')).sd_model_checkpoint, other.title);
    const chosen = JSON.parse((await post('txt2img', { prompt: 'a barn', steps: 2 })).body.info);
    assert.equal(chosen.sd_model_name, 'other');
    const overridden = JSON.parse((await post('txt2img', { prompt: 'a barn', steps: 2, override_settings: { sd_model_checkpoint: 'demo' } })).body.info);
    assert.equal(overridden.sd_model_name, 'demo');
    assert.equal((await post('options', { sd_model_checkpoint: 'demo' })).status, 200);
  });

  test('only application/json is accepted, and pages of other sites are refused: a cross-site form triggers no generation', async () => {
    const before = (await history()).length;
    const form = await fetch(`${api.server.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ prompt: 'x' }) });
    assert.equal(form.status, 415);
    const foreign = await post('txt2img', { prompt: 'x', steps: 2 }, { origin: 'https://evil.example' });
    assert.equal(foreign.status, 403);
    assert.equal((await history()).length, before);
  });
});

describe('img2img', () => {
  test("inpainting as the API documentation shows it: init_images, mask, inpainting_fill, inpaint_full_res; pixels outside the mask are kept", async () => {
    const init = await noise(64, 64);
    const mask = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'black' } })
      .composite([{ input: { create: { width: 32, height: 32, channels: 3, background: 'white' } }, left: 16, top: 16 }])
      .png()
      .toBuffer();
    const { status, body } = await post('img2img', {
      init_images: [init.toString('base64')],
      mask: mask.toString('base64'),
      prompt: 'a red door',
      denoising_strength: 0.75,
      mask_blur: 0,
      inpainting_fill: 1,
      inpaint_full_res: false,
      inpaint_full_res_padding: 32,
      inpainting_mask_invert: 0,
      steps: 3,
      seed: 7,
      sampler_name: 'Euler a',
      alwayson_scripts: { ControlNet: { args: [] } },
    });
    assert.equal(status, 200, JSON.stringify(body));
    const info = JSON.parse(body.info);
    assert.match(info.sdql_warnings[0], /alwayson_scripts ignored: ControlNet/);
    const result = await sharp(Buffer.from(body.images[0], 'base64')).removeAlpha().raw().toBuffer();
    const original = await sharp(init).raw().toBuffer();
    let changedOutside = 0;
    let changedInside = 0;
    for (let i = 0; i < 64 * 64; i++) {
      const x = i % 64;
      const y = Math.floor(i / 64);
      const same = [0, 1, 2].every((c) => result[i * 3 + c] === original[i * 3 + c]);
      if (x >= 16 && x < 48 && y >= 16 && y < 48) changedInside += same ? 0 : 1;
      else changedOutside += same ? 0 : 1;
    }
    assert.equal(changedOutside, 0);
    assert.ok(changedInside > 500, `${changedInside} pixels changed in the mask`);
    const stored = (await history()).find((g: any) => g.id === info.sdql_generation_id);
    assert.deepEqual(stored.inpaint, { inpaintFill: 'ORIGINAL', inpaintArea: 'WHOLE_PICTURE', maskBlur: 0 });
    assert.ok(stored.mask.sha256);
  });

  test('as the Photoshop plugin sends it (its own keys beside, bare base64), then its png-info round trip', async () => {
    const init = await noise(64, 64);
    const { status, body } = await post('img2img', {
      prompt: 'cute dog',
      negative_prompt: 'blurry',
      steps: 3,
      init_images: [init.toString('base64')],
      denoising_strength: 0.6,
      batch_size: 1,
      n_iter: 2,
      cfg_scale: 7,
      seed: 11,
      width: 64,
      height: 64,
      sampler_index: 'Euler a',
      mask_blur: 4,
      inpainting_fill: 1,
      restore_faces: false,
      use_prompt_shortcut: false,
      init_image_name: 'layer.png',
      uniqueDocumentId: 'doc-1',
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.images.length, 2);
    const info = JSON.parse(body.info);
    assert.deepEqual(info.all_seeds, [11, 12]);
    assert.equal(info.denoising_strength, 0.6);
    const read = await post('png-info', { image: `data:image/png;base64,${body.images[1]}` });
    assert.equal(read.status, 200);
    assert.equal(read.body.info, info.infotexts[1]);
    assert.equal(read.body.parameters.Prompt, 'cute dog');
    assert.equal(read.body.parameters['Negative prompt'], 'blurry');
    assert.equal(read.body.parameters.Seed, '12');
    assert.equal(read.body.parameters['Denoising strength'], '0.6');
  });

  test('img2img without init_images is 422', async () => {
    const { status, body } = await post('img2img', { prompt: 'x' });
    assert.equal(status, 422);
    assert.equal(body.detail[0].loc[1], 'init_images');
  });
});

describe('progress, interrupt and lists', () => {
  test('progress while a request runs shows its step and latest preview as a PNG; interrupt ends it, CANCELED in the history', async () => {
    const running = post('txt2img', { prompt: 'a long one', steps: 150, batch_size: 8 });
    const progress = await pollUntil(() => get('progress'), (p) => p.state.sampling_step > 0 && p.current_image !== null, 'progress with a preview');
    assert.ok(progress.progress > 0 && progress.progress < 1, JSON.stringify({ ...progress, current_image: null }));
    assert.ok(progress.state.sampling_steps > progress.state.sampling_step, JSON.stringify(progress.state));
    assert.equal(typeof progress.eta_relative, 'number');
    assert.equal((await sharp(Buffer.from(progress.current_image, 'base64')).metadata()).format, 'png');
    const skipped = await get('progress?skip_current_image=true');
    assert.equal(skipped.current_image, null);
    assert.equal((await post('interrupt', {})).status, 200);
    const { status, body } = await withDeadline(running, 'the interrupted txt2img answering');
    assert.equal(status, 200);
    assert.deepEqual(body.images, []);
    const info = JSON.parse(body.info);
    assert.equal(info.sdql_status, 'CANCELED');
    assert.equal((await history()).find((g: any) => g.id === info.sdql_generation_id).status, 'CANCELED');
    assert.equal((await get('progress')).state.job_count, 0);
  });

  test('samplers, loras, embeddings and refresh-checkpoints answer in their shapes', async () => {
    const samplers = (await get('samplers')).map((s: any) => s.name);
    for (const name of ['Euler a', 'Euler', 'DPM++ 2M', 'DDIM', 'UniPC']) assert.ok(samplers.includes(name), name);
    assert.equal(new Set(samplers).size, samplers.length);
    assert.deepEqual(await get('loras'), []);
    assert.deepEqual(await get('embeddings'), { loaded: {}, skipped: {} });
    assert.equal((await post('refresh-checkpoints', {})).status, 200);
  });
});

test('SDQL_A1111_API=false serves no /sdapi/v1/', async () => {
  const off = await startTestServer({ env: { SDQL_A1111_API: 'false' } });
  try {
    assert.equal((await fetch(`${off.server.url}/sdapi/v1/sd-models`)).status, 404);
  } finally {
    await off.close();
  }
});
