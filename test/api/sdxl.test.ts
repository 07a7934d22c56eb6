// SDXL through the API on the reference tiny-sdxl (../shared/reference/sdxl): listed as SDXL and
// supported; the SDXL fields checked at submission (nothing stored for a bad one) and recorded as
// they ran; img2img and inpainting, with the pixels outside the mask the init image's own; an SDXL
// embedding applied by its trigger word; a kohya SDXL LoRA by its <lora:> tag, served as the engine
// merges it; AUTOMATIC1111's prompt syntax; previews on every step.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { Engine } from '../../src/diffusion/engine.ts';
import { createKohyaSdxlLora } from '../../src/diffusion/fixtures/adapters.ts';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { quantize } from '../../src/diffusion/image.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { createSdxlInpaintingPipeline } from '../../src/diffusion/fixtures/sdxl-inpainting.ts';
import { createSdxlRefinerPipeline } from '../../src/diffusion/fixtures/sdxl-refiner.ts';
import { collectSse, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { noise } from '../engine/helpers.ts';
import { loadReference } from '../helpers/reference.ts';
import { writeSafetensors } from '../lora/helpers.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error warnings embeddings loras { name weight unetWeight } width height images { url infotext } } }`;
const BASE = { modelId: 'tiny-sdxl', prompt: 'a red door', steps: 3, seed: 7, previewEvery: 0 };

let api: TestServer;
let modelsDir: string;

before(async () => {
  modelsDir = mkdtempSync(join(tmpdir(), 'sdql-sdxl-models-'));
  symlinkSync(loadReference('sdxl').modelDir('tiny-sdxl'), join(modelsDir, 'tiny-sdxl'), 'dir');
  await createSdxlInpaintingPipeline(loadReference('sdxl').modelDir('tiny-sdxl'), join(modelsDir, 'tiny-sdxl-inpainting'));
  await createSdxlRefinerPipeline(loadReference('sdxl').modelDir('tiny-sdxl'), join(modelsDir, 'tiny-sdxl-refiner'));
  await createFixturePipeline(join(modelsDir, 'demo'));
  mkdirSync(join(modelsDir, 'loras'));
  await createKohyaSdxlLora(loadReference('sdxl').modelDir('tiny-sdxl'), join(modelsDir, 'loras', 'xlstyle.safetensors'), 5);
  mkdirSync(join(modelsDir, 'embeddings'));
  // Random vectors of the two widths, as an SDXL embedding file holds them.
  const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5);
  await writeSafetensors(join(modelsDir, 'embeddings', 'sdqlstyle.safetensors'), { clip_l: { shape: [1, 32], data: values(32, 1) }, clip_g: { shape: [1, 64], data: values(64, 2) } });
  api = await startTestServer({ modelsDir });
});
after(async () => {
  await api?.close();
  rmSync(modelsDir, { recursive: true, force: true });
});

const dataUrl = (bytes: Buffer) => `data:image/png;base64,${bytes.toString('base64')}`;

/** Runs a request on tiny-sdxl to the end: its first image's RGB pixels and the generation. */
async function run(input: Record<string, unknown>): Promise<{ pixels: Buffer; generation: any }> {
  const { generate } = await api.data<any>(GENERATE, { input: { ...BASE, ...input } });
  await waitForStatus(api.server.url, generate.id, ['SUCCEEDED', 'FAILED']);
  const { generation } = await api.data<any>(GENERATION, { id: generate.id });
  assert.equal(generation.status, 'SUCCEEDED', generation.error);
  const served = Buffer.from(await (await fetch(generation.images[0].url)).arrayBuffer());
  return { pixels: await sharp(served).removeAlpha().raw().toBuffer(), generation };
}

describe('SDXL models', () => {
  test('are listed as SDXL and supported, with a pixel limit of 1024 × 1024 (SD 1.x: 768 × 768)', async () => {
    const { models, system } = await api.data<any>(`{ models { name family supported error maxPixels } system { limits { maxPixels } } }`);
    assert.deepEqual(models.find((m: any) => m.name === 'tiny-sdxl'), { name: 'tiny-sdxl', family: 'SDXL', supported: true, error: null, maxPixels: 1024 * 1024 });
    assert.deepEqual(models.find((m: any) => m.name === 'tiny-sdxl-inpainting'), { name: 'tiny-sdxl-inpainting', family: 'SDXL', supported: true, error: null, maxPixels: 1024 * 1024 });
    assert.deepEqual(models.find((m: any) => m.name === 'tiny-sdxl-refiner'), { name: 'tiny-sdxl-refiner', family: 'SDXL', supported: true, error: null, maxPixels: 1024 * 1024 });
    // The fixture builder's UNet has 8 heads at full resolution, as SD 1.x.
    assert.equal(models.find((m: any) => m.name === 'demo').maxPixels, 768 * 768);
    assert.equal(system.limits.maxPixels, 1024 * 1024);
    // An inpainting model takes a mask, as on SD 1.x.
    const refused = await api.gql(GENERATE, { input: { modelId: 'tiny-sdxl-inpainting', prompt: 'a cat', steps: 2 } });
    assert.match(refused.errors?.[0].message ?? '', /model tiny-sdxl-inpainting is an inpainting model: it needs an initImage and a mask/);
  });

  test('bad SDXL fields get BAD_USER_INPUT and store nothing', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ modelId: 'demo', prompt2: 'a dog' }, /prompt2 applies only to SDXL models, and model demo is UNKNOWN/],
      [{ modelId: 'demo', originalSize: { width: 64, height: 64 }, cropTopLeft: { top: 0, left: 0 } }, /originalSize, cropTopLeft apply only to SDXL models/],
      [{ originalSize: { width: 0, height: 64 } }, /originalSize\.width must be a whole number of pixels from 1 to 4096, got 0/],
      [{ targetSize: { width: 64, height: 5000 } }, /targetSize\.height must be a whole number of pixels from 1 to 4096, got 5000/],
      [{ cropTopLeft: { top: -8, left: 0 } }, /cropTopLeft\.top must be a whole number of pixels from 0 to 4096, got -8/],
      [{ negativePrompt2: 'a\u0000b' }, /negativePrompt2 holds a NUL character/],
      [{ prompt2: 'x'.repeat(10_001) }, /prompt2 is 10001 characters; the limit is 10000/],
      [{ modelId: 'tiny-sdxl-refiner', prompt2: 'a dog' }, /prompt2 is for the second of two text encoders, and model tiny-sdxl-refiner is a refiner with text_encoder_2 alone/],
      [{ width: 1024, height: 1032 }, /1024×1032 is more than 1048576 pixels, model tiny-sdxl's limit/],
      [{ width: 512, height: 512, hires: { scale: 2.1 } }, /hires: 1072×1072 is more than 1048576 pixels, model tiny-sdxl's limit/],
      [{ modelId: 'demo', width: 1024, height: 1024 }, /1024×1024 is more than 589824 pixels, model demo's limit: one image of it needs 16\.8 GiB/],
    ];
    for (const [input, message] of cases) {
      const result = await api.gql(GENERATE, { input: { modelId: 'tiny-sdxl', prompt: 'a cat', steps: 2, ...input } });
      assert.equal(result.data?.generate ?? null, null, `accepted: ${JSON.stringify(input)}`);
      assert.equal(result.errors?.[0].extensions?.code, 'BAD_USER_INPUT', JSON.stringify(result.errors));
      assert.match(result.errors![0].message, message);
    }
    const { generations } = await api.data<any>(`{ generations(first: 1) { edges { node { id } } } }`);
    assert.equal(generations.edges.length, 0, 'a rejected request was stored');
  });
});

describe('generating on SDXL', () => {
  test('the SDXL fields run as sent and are recorded with the image; previews come on every step', async () => {
    const input = { prompt2: 'a blue window', negativePrompt2: 'blurry', originalSize: { width: 1024, height: 768 }, cropTopLeft: { top: 8, left: 0 }, targetSize: { width: 64, height: 64 } };
    const { generate } = await api.data<any>(GENERATE, { input: { modelId: 'tiny-sdxl', prompt: 'a red door', steps: 3, seed: 7, previewEvery: 1, ...input } });
    const events = await collectSse(api.server.url, `subscription($id: ID!) { generationProgress(id: $id) { status step preview { dataUrl } } }`, { id: generate.id }).done();
    const steps = events.map((e: any) => e.generationProgress).filter((p: any) => p.status === 'RUNNING' && p.step > 0);
    assert.deepEqual(steps.map((p: any) => p.step), [1, 2, 3]);
    for (const p of steps) assert.match(p.preview?.dataUrl ?? '', /^data:image\/jpeg;base64,/);

    const { generation } = await api.data<any>(GENERATION, { id: generate.id });
    assert.equal(generation.status, 'SUCCEEDED', generation.error);
    const { generation: recorded } = await api.data<any>(`query($id: ID!) { generation(id: $id) { prompt2 negativePrompt2 originalSize { width height } cropTopLeft { top left } targetSize { width height } } }`, { id: generate.id });
    assert.deepEqual(recorded, input);
    const plain = await run({});
    const sized = await run(input);
    assert.notDeepEqual(sized.pixels, plain.pixels, 'the SDXL fields change nothing');
  });

  test('img2img and inpainting: with restoreUnmasked and maskBlur 0 the pixels outside the mask are the init image\'s own', async () => {
    const [width, height] = [64, 64];
    const init = noise(width, height, 1);
    const initPng = await sharp(init, { raw: { width, height, channels: 3 } }).png().toBuffer();
    const img2img = await run({ initImage: { dataUrl: dataUrl(initPng) }, strength: 0.6 });
    assert.deepEqual([img2img.generation.width, img2img.generation.height], [width, height]);
    // A refiner's typical use: a low-strength img2img.
    const refined = await run({ modelId: 'tiny-sdxl-refiner', initImage: { dataUrl: dataUrl(initPng) }, strength: 0.3, steps: 10 });
    assert.deepEqual([refined.generation.width, refined.generation.height, refined.generation.warnings], [width, height, []]);
    assert.notDeepEqual(refined.pixels, img2img.pixels);

    const mask = Buffer.alloc(width * height);
    const inBox = (x: number, y: number) => x >= 16 && x < 48 && y >= 16 && y < 40;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (inBox(x, y)) mask[y * width + x] = 255;
    const maskPng = await sharp(mask, { raw: { width, height, channels: 1 } }).png().toBuffer();
    // A 4-channel model by latent blending, and a 9-channel SDXL inpainting UNet.
    for (const [modelId, inpaintArea] of [['tiny-sdxl', 'WHOLE_PICTURE'], ['tiny-sdxl', 'ONLY_MASKED'], ['tiny-sdxl-inpainting', 'WHOLE_PICTURE']]) {
      const { pixels } = await run({ modelId, initImage: { dataUrl: dataUrl(initPng) }, mask: { dataUrl: dataUrl(maskPng) }, maskBlur: 0, inpaintArea });
      let changedInside = 0;
      for (let i = 0; i < width * height; i++) {
        const same = [0, 1, 2].every((c) => pixels[i * 3 + c] === init[i * 3 + c]);
        if (inBox(i % width, Math.floor(i / width))) changedInside += same ? 0 : 1;
        else assert.ok(same, `${modelId} ${inpaintArea}: pixel ${i % width},${Math.floor(i / width)} outside the mask changed`);
      }
      assert.ok(changedInside > 32 * 24 * 0.9, `${modelId} ${inpaintArea}: only ${changedInside} pixels inside the mask changed`);
    }
  });

  test('an SDXL embedding applies by its trigger word', async () => {
    const withEmbedding = await run({ prompt: 'a sdqlstyle door' });
    assert.deepEqual([withEmbedding.generation.warnings, withEmbedding.generation.embeddings], [[], ['sdqlstyle']]);
    const { embeddings } = await api.data<any>(`{ embeddings { name vectors dim error } }`);
    assert.deepEqual(embeddings, [{ name: 'sdqlstyle', vectors: 1, dim: 96, error: null }]);
    const without = await run({ prompt: 'a sdqlstile door' });
    assert.notDeepEqual(withEmbedding.pixels, without.pixels);
  });

  test('a kohya SDXL LoRA applies by its <lora:> tag, is recorded as on SD 1.x, and gives the image the engine gives with it merged', async () => {
    const plain = await run({});
    const tagged = await run({ prompt: 'a red door <lora:xlstyle:0.8>' });
    assert.notDeepEqual(tagged.pixels, plain.pixels, 'the LoRA changes nothing');
    assert.deepEqual([tagged.generation.warnings, tagged.generation.loras], [[], [{ name: 'xlstyle', weight: 0.8, unetWeight: 0.8 }]]);
    const bytes = readFileSync(join(modelsDir, 'loras', 'xlstyle.safetensors'));
    // AUTOMATIC1111's LoRA hash: of the tensor data after the safetensors header.
    const hash = createHash('sha256').update(bytes.subarray(8 + Number(bytes.readBigUInt64LE(0)))).digest('hex').slice(0, 12);
    const infotext: string = tagged.generation.images[0].infotext;
    assert.equal(infotext.split('\n')[0], 'a red door <lora:xlstyle:0.8>');
    assert.ok(infotext.includes(`Lora hashes: "xlstyle: ${hash}"`), infotext);
    assert.doesNotMatch(plain.generation.images[0].infotext, /<lora:|Lora hashes/);

    // The engine, given the file and the weight directly, merges it into both text encoders and the UNet.
    const info = await inspectModelFolder(join(modelsDir, 'tiny-sdxl'));
    const engine = new Engine();
    try {
      const loras = [{ name: 'xlstyle', path: join(modelsDir, 'loras', 'xlstyle.safetensors'), weight: 0.8 }];
      const direct = await engine.run(info, await resolveRequest(info, { ...BASE, prompt: 'a red door <lora:xlstyle:0.8>', loras }));
      assert.deepEqual(Buffer.from(quantize(direct.images[0].image)), tagged.pixels);
    } finally {
      await engine.close();
    }
  });

  test("AUTOMATIC1111's prompt syntax: a weight changes the image and weight 1 does not; prompt editing switches texts mid-way", async () => {
    const [plain, weighted, unit] = [await run({}), await run({ prompt: 'a (red:1.5) door' }), await run({ prompt: 'a (red:1.0) door' })];
    assert.notDeepEqual(weighted.pixels, plain.pixels, 'the weight changes nothing');
    assert.deepEqual(unit.pixels, plain.pixels);
    // Euler, 4 steps: the edit's texts each take 2 steps, at noise levels where the prompt shows.
    const editing = { scheduler: 'EULER', steps: 4 };
    const [red, blue] = [await run(editing), await run({ ...editing, prompt: 'a blue door' })];
    const edited = await run({ ...editing, prompt: 'a [red:blue:0.5] door' });
    assert.equal(edited.generation.images[0].infotext.split('\n')[0], 'a [red:blue:0.5] door');
    assert.notDeepEqual(edited.pixels, red.pixels, 'the edit never took the second text');
    assert.notDeepEqual(edited.pixels, blue.pixels, 'the edit never took the first text');
  });
});
