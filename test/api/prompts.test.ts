// Prompt syntax, LoRAs and embeddings through the public API on a listening server: generate with
// them and compare the served images, the errors for LoRAs that cannot be applied, and the
// `embeddings`, `tokenize` and `promptTokens` queries. The reference LoRA case runs when
// ../shared/reference is present.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { WeightIndex } from '../../src/diffusion/lora/weights.ts';
import { decodeModel } from '../../src/diffusion/onnx/proto.ts';
import { readPngText } from '../../src/diffusion/png-text.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { ClipTokenizer } from '../../src/diffusion/tokenizer.ts';
import { startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { compareImages, loadReference, referenceDir } from '../helpers/reference.ts';
import { randomLora, writeSafetensors, type TestTensor } from '../lora/helpers.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id promptSyntax } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error warnings promptSyntax loras { name weight unetWeight } embeddings images { url } } }`;
const DIM = 32; // the fixture text encoder's width
// Over 77 tokens with the fixture tokenizer.
const LONG = Array.from({ length: 20 }, (_, i) => `a photo of cat ${i}`).join(' ');

type Generation = { status: string; error: string | null; warnings: string[]; promptSyntax: string; loras: { name: string; weight: number; unetWeight: number }[]; embeddings: string[]; images: { url: string }[] };

/** Submits a request, waits for it to end, and returns it with the pixels and infotext of its first image. */
async function run(api: TestServer, input: Record<string, unknown>): Promise<Generation & { pixels: Buffer; parameters: string }> {
  const { generate } = await api.data<{ generate: { id: string } }>(GENERATE, { input });
  await waitForStatus(api.server.url, generate.id, ['SUCCEEDED']);
  const { generation } = await api.data<{ generation: Generation }>(GENERATION, { id: generate.id });
  const png = Buffer.from(await (await fetch(generation.images[0].url)).arrayBuffer());
  return { ...generation, pixels: await sharp(png).removeAlpha().raw().toBuffer(), parameters: readPngText(png).parameters };
}

/** Submits a request that must be refused: its error code and message, and no generation stored. */
async function refused(api: TestServer, input: Record<string, unknown>): Promise<{ code?: string; message: string }> {
  const count = async () => (await api.data<{ generations: { edges: unknown[] } }>(`{ generations(first: 100) { edges { cursor } } }`)).generations.edges.length;
  const before = await count();
  const { errors } = await api.gql(GENERATE, { input });
  assert.equal(errors?.length, 1, 'the request was accepted');
  assert.equal(await count(), before);
  return { code: errors![0].extensions?.code, message: errors![0].message };
}

const differ = (a: Buffer, b: Buffer) => compareImages(a, b).maxDiff > 0;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
/** AUTOMATIC1111's LoRA hash, from the bytes: the tensor data after the safetensors header. */
const loraHash = (path: string) => {
  const bytes = readFileSync(path);
  return sha256(bytes.subarray(8 + Number(bytes.readBigUInt64LE(0)))).slice(0, 12);
};

describe('on fixture models', () => {
  let api: TestServer;
  let dirs: string;
  let embeddingsDir: string;
  const base = { modelId: 'demo', prompt: 'a cat', steps: 3, scheduler: 'EULER', seed: 21 };
  const embedding = (seed: number): Record<string, TestTensor> => ({ emb_params: { shape: [2, DIM], data: new TorchGenerator(seed).randn(2 * DIM) } });

  before(async () => {
    dirs = mkdtempSync(join(tmpdir(), 'sdql-prompts-'));
    const lorasDir = join(dirs, 'loras');
    embeddingsDir = join(dirs, 'embeddings');
    mkdirSync(lorasDir);
    mkdirSync(embeddingsDir);
    api = await startTestServer({ models: { demo: {} }, env: { SDQL_LORAS_DIR: lorasDir, SDQL_EMBEDDINGS_DIR: embeddingsDir } });

    // A kohya LoRA for two of the fixture UNet's layers, shaped from its weights.
    const unet = new WeightIndex(decodeModel(new Uint8Array(await readFile(join(api.config.modelsDir, 'demo', 'unet', 'model.onnx')))));
    const tensors: Record<string, TestTensor> = {};
    ['down_blocks.0.attentions.0.proj_in', 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k'].forEach((module, i) => {
      const slot = unet.get(module);
      assert.ok(slot, `${module} is not in the fixture`);
      const dims = slot.initializer.dims;
      const { down, up } = randomLora(40 + i, slot.transposed ? [dims[1], dims[0]] : [...dims], 4, 0.4);
      const key = `lora_unet_${module.replaceAll('.', '_')}`;
      Object.assign(tensors, { [`${key}.lora_down.weight`]: down, [`${key}.lora_up.weight`]: up, [`${key}.alpha`]: { shape: [], data: Float32Array.of(4) } });
    });
    await writeSafetensors(join(lorasDir, 'style.safetensors'), tensors, { ss_base_model_version: 'sd_v1' });
    writeFileSync(join(lorasDir, 'broken.safetensors'), 'not a safetensors file');
    await writeSafetensors(join(embeddingsDir, 'sdqlstyle.safetensors'), embedding(1));
    writeFileSync(join(embeddingsDir, 'badembed.safetensors'), 'nope');
    await api.data(`mutation { rescanModels { scannedAt } }`);
  });
  after(async () => {
    await api.close();
    rmSync(dirs, { recursive: true, force: true });
  });

  test('a LoRA applies through `loras` and through a <lora:> tag alike, and changes the image', async () => {
    const plain = await run(api, base);
    const listed = await run(api, { ...base, loras: [{ id: 'style', weight: 0.8 }] });
    const tagged = await run(api, { ...base, prompt: 'a cat <lora:style:0.8>' });
    assert.ok(differ(listed.pixels, plain.pixels));
    assert.deepEqual(tagged.pixels, listed.pixels);
    assert.deepEqual(listed.loras, [{ name: 'style', weight: 0.8, unetWeight: 0.8 }]);
    assert.deepEqual(tagged.loras, [{ name: 'style', weight: 0.8, unetWeight: 0.8 }]);
    assert.deepEqual([plain.loras, listed.warnings, tagged.warnings], [[], [], []]);
    // Both ways at once add up, as two applications of the file would.
    const both = await run(api, { ...base, prompt: 'a cat <lora:style:0.4>', loras: [{ id: 'style', weight: 0.4 }] });
    assert.deepEqual(both.pixels, listed.pixels);
    // Each image tells AUTOMATIC1111 every LoRA it applied, as a tag, with the file's hash.
    const hashes = `Lora hashes: "style: ${loraHash(join(dirs, 'loras', 'style.safetensors'))}"`;
    assert.equal(listed.parameters.split('\n')[0], 'a cat <lora:style:0.8>');
    assert.equal(tagged.parameters.split('\n')[0], 'a cat <lora:style:0.8>');
    assert.equal(both.parameters.split('\n')[0], 'a cat <lora:style:0.4> <lora:style:0.4>');
    for (const { parameters } of [listed, tagged, both]) assert.ok(parameters.includes(hashes), parameters);
    assert.doesNotMatch(plain.parameters, /<lora:|Lora hashes/);
  });

  test('unknown and unusable LoRAs are BAD_USER_INPUT naming them, and nothing is stored', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...base, loras: [{ id: 'nope', weight: 1 }] }, /no LoRA is named "nope"/],
      [{ ...base, prompt: 'a cat <lora:ghost:0.5>' }, /no LoRA is named "ghost"/],
      [{ ...base, loras: [{ id: 'broken' }] }, /LoRA "broken" cannot be used: not a valid safetensors file/],
      [{ ...base, prompt: 'a cat <lora:style:strong>' }, /invalid LoRA tag <lora:style:strong>/],
      [{ ...base, promptSyntax: 'COMFY' }, /PromptSyntax/],
    ];
    for (const [input, message] of cases) {
      const { code, message: text } = await refused(api, input);
      assert.equal(code, 'BAD_USER_INPUT', text);
      assert.match(text, message);
    }
    // Under PLAIN a tag is text, naming nothing.
    const plain = await run(api, { ...base, prompt: 'a cat <lora:ghost:0.5>', promptSyntax: 'PLAIN' });
    assert.equal(plain.promptSyntax, 'PLAIN');
    assert.deepEqual(plain.loras, []);
    assert.match(plain.parameters, /^a cat <lora:ghost:0\.5>\nSteps: 3, .*, Emphasis: None$/);
    assert.doesNotMatch(plain.parameters, /Lora hashes/);
  });

  test('A1111 reads weights, long prompts and prompt edits; on a plain short prompt it is PLAIN', async () => {
    const a1111 = await run(api, { ...base, prompt: 'a cat photo' });
    assert.equal(a1111.promptSyntax, 'A1111');
    assert.deepEqual((await run(api, { ...base, prompt: 'a cat photo', promptSyntax: 'PLAIN' })).pixels, a1111.pixels);
    assert.ok(differ((await run(api, { ...base, prompt: 'a (cat:1.5) photo' })).pixels, a1111.pixels));

    const long = await run(api, { ...base, prompt: LONG });
    assert.ok(differ(long.pixels, (await run(api, { ...base, prompt: LONG, promptSyntax: 'PLAIN' })).pixels));

    const edited = await run(api, { ...base, prompt: '[a cat:a dog:0.5]' });
    assert.ok(differ(edited.pixels, (await run(api, { ...base, prompt: 'a cat' })).pixels));
    assert.ok(differ(edited.pixels, (await run(api, { ...base, prompt: 'a dog' })).pixels));
  });

  test('an embedding named in the prompt is listed, applied (its vectors change the image) and recorded', async () => {
    const { embeddings } = await api.data<{ embeddings: { name: string; error: string | null }[] }>(`{ embeddings { name vectors dim error } }`);
    const [bad, good] = embeddings;
    assert.equal(embeddings.length, 2);
    assert.deepEqual(good, { name: 'sdqlstyle', vectors: 2, dim: DIM, error: null });
    assert.equal(bad.name, 'badembed');
    assert.match(bad.error ?? '', /.+/);

    const file = join(embeddingsDir, 'sdqlstyle.safetensors');
    const tiHashes = () => `TI hashes: "sdqlstyle: ${sha256(readFileSync(file)).slice(0, 12)}"`;
    const first = await run(api, { ...base, prompt: 'a sdqlstyle cat' });
    assert.deepEqual(first.embeddings, ['sdqlstyle']);
    assert.deepEqual(first.warnings, []);
    assert.ok(first.parameters.includes(tiHashes()), first.parameters);
    // The same file name with other vectors: the same request gives another image, and another hash.
    await writeSafetensors(file, embedding(2));
    const second = await run(api, { ...base, prompt: 'a sdqlstyle cat' });
    assert.ok(differ(first.pixels, second.pixels));
    assert.ok(second.parameters.includes(tiHashes()), second.parameters);

    const broken = await run(api, { ...base, prompt: 'a cat', negativePrompt: 'badembed' });
    assert.deepEqual(broken.embeddings, []);
    assert.equal(broken.warnings.length, 1);
    assert.match(broken.warnings[0], /^embedding "badembed" cannot be used: /);
  });

  test('promptTokens counts tokens, chunks, weights, LoRA tags and embeddings; tokenize gives plain CLIP ids', async () => {
    const tokenizer = await ClipTokenizer.fromFolder(join(api.config.modelsDir, 'demo', 'tokenizer'));
    const { tokenize } = await api.data<{ tokenize: number[] }>(`query($text: String!) { tokenize(modelId: "demo", text: $text) }`, { text: 'a (cat) <lora:x:1>' });
    assert.deepEqual(tokenize, tokenizer.encode('a (cat) <lora:x:1>'));

    const QUERY = `query($prompt: String!, $steps: Int) { promptTokens(modelId: "demo", prompt: $prompt, steps: $steps) {
      tokenCount maxLength chunkCount segments { text weight isBreak } loras { name weight unetWeight found } embeddings } }`;
    const count = (text: string) => tokenizer.tokenize(text).length;
    const short = (await api.data<{ promptTokens: any }>(QUERY, { prompt: 'a (cat:1.5) photo <lora:style:0.5> <lora:ghost:1:0.2> sdqlstyle' })).promptTokens;
    assert.deepEqual(short, {
      tokenCount: count('a cat photo') + 2,
      maxLength: 75,
      chunkCount: 1,
      segments: [
        { text: 'a ', weight: 1, isBreak: false },
        { text: 'cat', weight: 1.5, isBreak: false },
        { text: ' photo   sdqlstyle', weight: 1, isBreak: false },
      ],
      loras: [
        { name: 'style', weight: 0.5, unetWeight: 0.5, found: true },
        { name: 'ghost', weight: 1, unetWeight: 0.2, found: false },
      ],
      embeddings: ['sdqlstyle'],
    });

    const long = (await api.data<{ promptTokens: any }>(QUERY, { prompt: `${LONG} BREAK a cat` })).promptTokens;
    assert.deepEqual([long.tokenCount, long.maxLength, long.chunkCount], [150 + count('a cat'), 225, 3]);
    assert.deepEqual(long.segments[1], { text: 'BREAK', weight: 1, isBreak: true });
    // With prompt editing the counter shows the longest text of the schedule.
    const edited = (await api.data<{ promptTokens: any }>(QUERY, { prompt: '[a:a photo of a cat:3]', steps: 10 })).promptTokens;
    assert.equal(edited.tokenCount, count('a photo of a cat'));

    const unknown = await api.gql(`{ tokenize(modelId: "nope", text: "a") }`);
    assert.equal(unknown.errors?.[0].extensions?.code, 'NOT_FOUND');
    const badSteps = await api.gql(QUERY, { prompt: 'a', steps: 0 });
    assert.equal(badSteps.errors?.[0].extensions?.code, 'BAD_USER_INPUT');
  });
});

describe('the reference LoRA case through generate', () => {
  let api: TestServer;
  const reference = loadReference();
  const loraCase = reference.cases.find((c) => c.case.name === 'txt2img-lora-kohya');

  before(async () => {
    api = await startTestServer({ modelsDir: join(referenceDir, 'models'), env: { SDQL_LORAS_DIR: join(referenceDir, 'loras') } });
  });
  after(() => api?.close());

  for (const how of ['loras', 'prompt tag'] as const) {
    test(`txt2img-lora-kohya with the LoRA in ${how} matches diffusers`, async () => {
      assert.ok(loraCase?.case.lora, 'reference.json has the case txt2img-lora-kohya');
      const { lora, ...c } = loraCase.case;
      const input = {
        modelId: c.model,
        prompt: how === 'loras' ? c.prompt : `${c.prompt} <lora:${lora.name}:${lora.weight}>`,
        loras: how === 'loras' ? [{ id: lora.name, weight: lora.weight }] : undefined,
        width: c.width,
        height: c.height,
        steps: c.steps,
        guidanceScale: c.guidance_scale,
        scheduler: c.scheduler,
        seed: c.seed,
      };
      const generation = await run(api, input);
      assert.deepEqual(generation.loras, [{ name: lora.name, weight: lora.weight, unetWeight: lora.weight }]);
      const expected = await sharp(readFileSync(join(referenceDir, loraCase.images[0].png))).removeAlpha().raw().toBuffer();
      const { within1, maxDiff } = compareImages(generation.pixels, expected);
      assert.ok(within1 >= 0.99 && maxDiff <= 4, `${(within1 * 100).toFixed(2)}% within 1 level, max ${maxDiff}`);
    });
  }

  test('tokenize gives the reference token ids', async () => {
    for (const { text, ids } of reference.tokens) {
      const { tokenize } = await api.data<{ tokenize: number[] }>(`query($text: String!) { tokenize(modelId: "tiny-sd", text: $text) }`, { text });
      assert.deepEqual(tokenize, ids, text);
    }
  });
});
