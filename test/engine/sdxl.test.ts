// SDXL on the reference tiny-sdxl (../shared/reference/sdxl): what the UNet is conditioned on —
// both text encoders' penultimate states joined per token, the pooled embedding, the time ids —
// checked against the submodels run directly, with AUTOMATIC1111's prompt syntax on both encoders,
// the second prompt, SDXL embeddings (clip_l/clip_g) and the size conditioning; a refiner made from it
// (text_encoder_2 alone, 5 time ids with the aesthetic score) as diffusers runs one.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import { encodeImage } from '../../src/diffusion/image.ts';
import { ModelEditor } from '../../src/diffusion/lora/model-editor.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { encodeConditioning, type Conditioning } from '../../src/diffusion/pipeline.ts';
import { latentsToRgb } from '../../src/diffusion/preview.ts';
import { applyEmphasis } from '../../src/diffusion/prompt/emphasis.ts';
import { defaultSize, maxPixels } from '../../src/diffusion/limits.ts';
import { resolveRequest, type GenerateParams } from '../../src/diffusion/request.ts';
import { sdxlUnetInputs, timeIds } from '../../src/diffusion/sdxl.ts';
import { createSdxlRefinerPipeline } from '../../src/diffusion/fixtures/sdxl-refiner.ts';
import { createKohyaSdxlLora } from '../../src/diffusion/fixtures/adapters.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { diffusionError } from './helpers.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { loadReference } from '../helpers/reference.ts';
import { writeSafetensors } from '../lora/helpers.ts';

const set = loadReference('sdxl');
const ROWS = 77;
// Over 75 tokens, without commas (so no chunk edge moves).
const LONG = Array.from({ length: 20 }, (_, i) => `a photo of cat ${i}`).join(' ');

let scratch: string;
let info: ModelFolderInfo;
let model: StableDiffusionModel;
let engine: Engine;

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'sdql-sdxl-'));
  const dir = join(scratch, 'tiny-sdxl');
  symlinkSync(set.modelDir('tiny-sdxl'), dir, 'dir');
  info = await inspectModelFolder(dir);
  model = await StableDiffusionModel.load(info, { intraOpNumThreads: 1 });
  engine = new Engine({ runtime: { intraOpNumThreads: 1 } });
});
after(async () => {
  await model.release();
  await engine.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** Text encoder `e`'s hidden_states[-2] and (for the second) text_embeds for 77 ids, run directly. */
async function encodeIds(e: 0 | 1, ids: number[], m = model): Promise<{ hidden: Float32Array; pooled?: Float32Array }> {
  assert.equal(ids.length, ROWS);
  const session = e === 0 ? m.textEncoder : m.second!.textEncoder;
  const out = await session.run({ input_ids: { data: Int32Array.from(ids), dims: [1, ROWS] } });
  return { hidden: out['hidden_states.1'].data, pooled: out.text_embeds?.data };
}

/** [start, ids, end, padding] with encoder `e`'s tokenizer: tokenizer_2 pads with "!" (id 0). */
function chunk(e: 0 | 1, ids: number[], m = model): number[] {
  const t = e === 0 ? m.tokenizer : m.second!.tokenizer;
  return [t.bosTokenId, ...ids, t.eosTokenId, ...new Array<number>(75 - ids.length).fill(t.padTokenId)];
}

const tokens = (text: string) => model.tokenizer.tokenize(text);
const WIDTHS = [32, 64] as const;

/** The two encoders' states joined per token: [rows × (32 + 64)]. */
function join2(first: Float32Array, second: Float32Array): Float32Array {
  const rows = first.length / WIDTHS[0];
  const out = new Float32Array(rows * (WIDTHS[0] + WIDTHS[1]));
  for (let r = 0; r < rows; r++) {
    out.set(first.subarray(r * WIDTHS[0], (r + 1) * WIDTHS[0]), r * 96);
    out.set(second.subarray(r * WIDTHS[1], (r + 1) * WIDTHS[1]), r * 96 + WIDTHS[0]);
  }
  return out;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((offset, p) => (out.set(p, offset), offset + p.length), 0);
  return out;
}

/** Row `id` of a text encoder's token-embedding table. */
async function tokenRow(path: string, id: number, dim: number): Promise<Float32Array> {
  const editor = await ModelEditor.open(path);
  // The reference export names its modules under the wrapper's `te.`.
  return (await editor.read(editor.weights.get('te.text_model.embeddings.token_embedding')!)).slice(id * dim, (id + 1) * dim);
}

/** An SDXL embedding `sdqlsteed` in `dir`: `clipL` as its clip_l, the row of "horse" of text_encoder_2 as its clip_g. */
async function writeSteed(dir: string, clipL: Float32Array): Promise<string> {
  mkdirSync(dir);
  const file = join(dir, 'sdqlsteed.safetensors');
  await writeSafetensors(file, {
    clip_l: { shape: [1, WIDTHS[0]], data: clipL },
    clip_g: { shape: [1, WIDTHS[1]], data: await tokenRow(info.paths.textEncoder2!, tokens('horse')[0], WIDTHS[1]) },
  });
  return file;
}

async function conditioning(params: Partial<GenerateParams>, m = model, i = m.info): Promise<Conditioning> {
  const request = await resolveRequest(i, { prompt: 'a cat', steps: 4, ...params });
  return encodeConditioning(m, request, request.steps, true);
}

describe('the model folder', () => {
  test('tiny-sdxl is SDXL and supported, with its SDXL settings; without text_encoder_2 it is not', async () => {
    assert.deepEqual([info.family, info.supported, info.error], ['SDXL', true, undefined]);
    assert.deepEqual(info.sdxl, { forceZerosForEmptyPrompt: true, timeIds: 6 });
    assert.equal(info.vaeScalingFactor, 0.13025);
    const broken = join(scratch, 'no-te2');
    cpSync(set.modelDir('tiny-sdxl'), broken, { recursive: true });
    rmSync(join(broken, 'text_encoder_2'), { recursive: true });
    const missing = await inspectModelFolder(broken);
    assert.deepEqual([missing.family, missing.supported], ['SDXL', false]);
    assert.match(missing.error!, /missing text_encoder_2\/model\.onnx/);
  });

  test("its attention starts at the second level (down_block_types), so its pixel limit is the cap, 1024×1024, SD 1.x's is 768×768", async () => {
    assert.deepEqual(info.attentionLevels, [{ level: 1, heads: 4 }, { level: 2, heads: 8 }]);
    assert.equal(maxPixels(info), 1024 * 1024);
    // Sizes are checked when the request is resolved; nothing is generated here.
    const big = await resolveRequest(info, { prompt: 'a cat', width: 1024, height: 1024 });
    assert.deepEqual([big.width, big.height], [1024, 1024]);
    const hires = await resolveRequest(info, { prompt: 'a cat', width: 512, height: 512, hires: { scale: 2 } });
    assert.deepEqual([hires.hires?.width, hires.hires?.height], [1024, 1024]);
    assert.deepEqual(defaultSize({ ...info, nativeWidth: 1024, nativeHeight: 1024 }), { width: 1024, height: 1024 });
    await assert.rejects(resolveRequest(info, { prompt: 'a cat', width: 1032, height: 1024 }), diffusionError('BAD_USER_INPUT', /1032×1024 is more than 1048576 pixels, model tiny-sdxl's limit: no model goes beyond 1048576 pixels/));
    const sd = { ...info, id: 'sd15', family: 'SD1' as const, sdxl: undefined, attentionLevels: [{ level: 0, heads: 8 }] };
    await assert.rejects(resolveRequest(sd, { prompt: 'a cat', width: 1024, height: 1024 }), diffusionError('BAD_USER_INPUT', /1024×1024 is more than 589824 pixels, model sd15's limit: one image of it needs 16\.8 GiB for the UNet's attention/));
  });
});

describe('conditioning', () => {
  test("a plain prompt is diffusers' encode_prompt: penultimate states of both encoders joined, text_encoder_2's pooled output, zeros for an empty negative prompt", async () => {
    const c0 = set.cases[0];
    for (const promptSyntax of ['A1111', 'PLAIN'] as const) {
      const c = await conditioning({ prompt: c0.case.prompt, promptSyntax });
      const first = await encodeIds(0, c0.prompt_ids);
      const second = await encodeIds(1, c0.prompt_ids_2!);
      assert.deepEqual(chunk(1, tokens(c0.case.prompt)), c0.prompt_ids_2);
      assert.deepEqual([c.sequenceLength, c.hiddenSize], [ROWS, 96]);
      assert.deepEqual(c.positive, [join2(first.hidden, second.hidden)]);
      assert.deepEqual(c.negative, [new Float32Array(ROWS * 96)]);
      // [negative, prompt] for one image.
      assert.deepEqual(c.pooledAt!(0), { data: concat([new Float32Array(32), second.pooled!]), size: 32 });
    }
    // A negative prompt is encoded as the prompt is (with its own pooled embedding).
    const negative = await conditioning({ prompt: 'a cat', negativePrompt: 'blurry' });
    const [n1, n2] = [await encodeIds(0, chunk(0, tokens('blurry'))), await encodeIds(1, chunk(1, tokens('blurry')))];
    assert.deepEqual(negative.negative, [join2(n1.hidden, n2.hidden)]);
    assert.deepEqual(negative.pooledAt!(0).data.subarray(0, 32), n2.pooled);
  });

  test('prompt2 and negativePrompt2 go to the second encoder only', async () => {
    const c = await conditioning({ prompt: 'a cat', prompt2: 'a dog', negativePrompt: 'blurry', negativePrompt2: 'dark' });
    const [p1, p2] = [await encodeIds(0, chunk(0, tokens('a cat'))), await encodeIds(1, chunk(1, tokens('a dog')))];
    const [n1, n2] = [await encodeIds(0, chunk(0, tokens('blurry'))), await encodeIds(1, chunk(1, tokens('dark')))];
    assert.deepEqual(c.positive, [join2(p1.hidden, p2.hidden)]);
    assert.deepEqual(c.negative, [join2(n1.hidden, n2.hidden)]);
    assert.deepEqual(c.pooledAt!(0).data, concat([n2.pooled!, p2.pooled!]));
  });

  test('A1111 weights reach both encoders, each with its own emphasis mean', async () => {
    const c = await conditioning({ prompt: 'a (cat:1.5) [photo]' });
    const [a, cat, photo] = [tokens('a '), tokens('cat'), tokens(' photo')];
    const ids = [...a, ...cat, ...photo];
    const weights = [1, ...a.map(() => 1), ...cat.map(() => 1.5), ...photo.map(() => 1 / 1.1), ...new Array(ROWS - 1 - ids.length).fill(1)];
    const [raw1, raw2] = [await encodeIds(0, chunk(0, ids)), await encodeIds(1, chunk(1, ids))];
    assert.deepEqual(c.positive, [join2(applyEmphasis(raw1.hidden, weights, WIDTHS[0]), applyEmphasis(raw2.hidden, weights, WIDTHS[1]))]);
    assert.ok(maxAbsDiff(c.positive[0], join2(raw1.hidden, raw2.hidden)) > 1e-3, 'the weights change the states');
    // The pooled embedding is the model's own, unweighted (A1111 keeps it from the encoder's output).
    assert.deepEqual(c.pooledAt!(0).data.subarray(32), raw2.pooled);
  });

  test('A1111 chunks a long prompt on both encoders; the pooled embedding is the first chunk\'s; a shorter prompt2 is padded with empty chunks', async () => {
    const ids = tokens(LONG);
    assert.ok(ids.length > 75 && ids.length <= 150, `${ids.length} tokens`);
    const c = await conditioning({ prompt: LONG, prompt2: 'a dog', negativePrompt: 'blurry' });
    assert.equal(c.sequenceLength, 2 * ROWS);
    const first = [await encodeIds(0, chunk(0, ids.slice(0, 75))), await encodeIds(0, chunk(0, ids.slice(75)))];
    const second = [await encodeIds(1, chunk(1, tokens('a dog'))), await encodeIds(1, chunk(1, []))];
    assert.deepEqual(c.positive, [join2(concat(first.map((e) => e.hidden)), concat(second.map((e) => e.hidden)))]);
    assert.deepEqual(c.pooledAt!(0).data.subarray(32), second[0].pooled);

    const long2 = await conditioning({ prompt: LONG });
    const both = [await encodeIds(1, chunk(1, ids.slice(0, 75))), await encodeIds(1, chunk(1, ids.slice(75)))];
    assert.deepEqual(long2.positive, [join2(concat(first.map((e) => e.hidden)), concat(both.map((e) => e.hidden)))]);
    assert.deepEqual(long2.pooledAt!(0).data.subarray(32), both[0].pooled);
  });

  test('prompt editing: each step takes the texts of both encoders for that step', async () => {
    const c = await conditioning({ prompt: '[a cat:a dog:2]', steps: 4 });
    const at = (text: string) => Promise.all([encodeIds(0, chunk(0, tokens(text))), encodeIds(1, chunk(1, tokens(text)))]);
    const [cat, dog] = [await at('a cat'), await at('a dog')];
    const promptAt = (i: number) => c.at(i).subarray(ROWS * 96);
    assert.deepEqual(promptAt(0), join2(cat[0].hidden, cat[1].hidden));
    assert.deepEqual(promptAt(3), join2(dog[0].hidden, dog[1].hidden));
    assert.deepEqual(c.pooledAt!(3).data.subarray(32), dog[1].pooled);
  });
});

describe('an SDXL embedding', () => {
  test('its clip_l vectors go to the first encoder and its clip_g vectors to the second: rows of "horse" make its trigger word read as "horse"', async () => {
    const dir = join(scratch, 'embeddings');
    const file = await writeSteed(dir, await tokenRow(info.paths.textEncoder, tokens('horse')[0], WIDTHS[0]));
    const embeddings = [{ token: 'sdqlsteed', path: file }];
    const adapted = await StableDiffusionModel.load(info, { intraOpNumThreads: 1 }, { loras: [], embeddings });
    try {
      assert.deepEqual(adapted.warnings, []);
      const withEmbedding = await conditioning({ prompt: 'a photo of sdqlsteed', embeddings }, adapted);
      const withWord = await conditioning({ prompt: 'a photo of horse' });
      const diff = maxAbsDiff(withEmbedding.positive[0], withWord.positive[0]);
      assert.ok(diff < 1e-5, `the states differ by ${diff}`);
      // Not the pooled embedding: CLIP pools at the largest token id (argmax, meant to find the end
      // token), and the embedding's id is larger — as in diffusers with textual inversion.
      const pooled = withEmbedding.pooledAt!(0).data.subarray(32);
      assert.deepEqual(pooled, (await adapted.encodeTokensXL(1, Int32Array.from(chunk(1, adapted.second!.tokenizer.tokenize('a photo of sdqlsteed'), adapted)))).pooled);
    } finally {
      await adapted.release();
    }
    // An SD 1.x embedding (one tensor) is left out on SDXL, with a warning.
    const sd1 = join(dir, 'sd1.safetensors');
    await writeSafetensors(sd1, { emb_params: { shape: [1, WIDTHS[0]], data: new Float32Array(WIDTHS[0]) } });
    const other = await StableDiffusionModel.load(info, { intraOpNumThreads: 1 }, { loras: [], embeddings: [{ token: 'sd1', path: sd1 }] });
    await other.release();
    assert.deepEqual(other.warnings, ['embedding "sd1" is not an SDXL embedding (clip_l and clip_g), and the model is SDXL: not applied']);
  });
});

describe('size conditioning', () => {
  test("time ids: diffusers' defaults are the image's size and no crop; refiner-style UNets take an aesthetic score", () => {
    const request = { width: 64, height: 96 };
    assert.deepEqual(timeIds({ forceZerosForEmptyPrompt: true, timeIds: 6 }, request, false), [96, 64, 0, 0, 96, 64]);
    const given = { ...request, originalSize: { width: 1024, height: 768 }, cropTopLeft: { top: 8, left: 16 }, targetSize: { width: 512, height: 512 } };
    assert.deepEqual(timeIds({ forceZerosForEmptyPrompt: true, timeIds: 6 }, given, true), [768, 1024, 8, 16, 512, 512]);
    assert.deepEqual(timeIds({ forceZerosForEmptyPrompt: true, timeIds: 5 }, given, false), [768, 1024, 8, 16, 6]);
    assert.deepEqual(timeIds({ forceZerosForEmptyPrompt: true, timeIds: 5 }, given, true), [768, 1024, 8, 16, 2.5]);
  });

  test('the sizes given change the image; the defaults given explicitly do not', async () => {
    const image = async (params: Partial<GenerateParams>) => {
      const request = await resolveRequest(info, { prompt: 'a cat', steps: 3, scheduler: 'EULER', seed: 3, width: 64, height: 64, ...params });
      return (await engine.run(info, request)).images[0].image.data;
    };
    const plain = await image({});
    assert.deepEqual(await image({ originalSize: { width: 64, height: 64 }, cropTopLeft: { top: 0, left: 0 }, targetSize: { width: 64, height: 64 } }), plain);
    assert.deepEqual(await image({ prompt2: 'a cat' }), plain);
    for (const params of [{ originalSize: { width: 1024, height: 1024 } }, { cropTopLeft: { top: 256, left: 0 } }, { targetSize: { width: 32, height: 64 } }, { prompt2: 'a dog' }]) {
      assert.ok(maxAbsDiff(await image(params), plain) > 1e-3, JSON.stringify(params));
    }
  });

  test('the SDXL fields are refused on other models and out of range', async () => {
    const sd = { ...info, id: 'sd15', family: 'SD1' as const, sdxl: undefined };
    await assert.rejects(resolveRequest(sd, { prompt: 'a', prompt2: 'b', targetSize: { width: 64, height: 64 } }), diffusionError('BAD_USER_INPUT', /prompt2, targetSize apply only to SDXL models, and model sd15 is SD1/));
    for (const [params, message] of [
      [{ originalSize: { width: 0, height: 64 } }, /originalSize\.width must be a whole number of pixels from 1 to 4096, got 0/],
      [{ targetSize: { width: 64, height: 4097 } }, /targetSize\.height must be a whole number of pixels from 1 to 4096/],
      [{ cropTopLeft: { top: -1, left: 0 } }, /cropTopLeft\.top must be a whole number of pixels from 0 to 4096, got -1/],
      [{ cropTopLeft: { top: 0, left: 1.5 } }, /cropTopLeft\.left must be a whole number/],
      [{ prompt2: 'a\u0000b' }, /prompt2 holds a NUL character/],
    ] as const) {
      await assert.rejects(resolveRequest(info, { prompt: 'a', ...params }), diffusionError('BAD_USER_INPUT', message));
    }
  });
});

test("previews map SDXL's latents with SDXL's factors (ComfyUI's), not SD 1.x's", () => {
  // One latent pixel, channel 1 only: its row of each family's factors, through (v + 1) / 2.
  const latents = Float32Array.of(0, 1, 0, 0);
  const rgb = (row: number[]) => Uint8Array.from(row, (v) => Math.round(((v + 1) / 2) * 255));
  assert.deepEqual(latentsToRgb(latents, [1, 4, 1, 1], 0, 'SDXL'), rgb([-0.2634, -0.0196, 0.0653]));
  assert.deepEqual(latentsToRgb(latents, [1, 4, 1, 1], 0), rgb([0.325, 0.4974, 0.235]));
});

describe('the hires fix and variation seeds on SDXL', () => {
  const image = async (params: Partial<GenerateParams>) => {
    const request = await resolveRequest(info, { prompt: 'a cat', steps: 2, scheduler: 'EULER', seed: 3, width: 64, height: 64, ...params });
    return (await engine.run(info, request)).images[0].image;
  };

  test("the hires pass is an img2img at the hires size, conditioned on that size by default (lanczos: exactly a txt2img then an img2img of its image)", async () => {
    const hires = await image({ hires: { scale: 2, upscaler: 'lanczos', steps: 2, strength: 0.5 } });
    assert.deepEqual([hires.width, hires.height], [128, 128]);
    const first = await encodeImage(await image({}), 'png');
    const img2img = await image({ initImage: first, width: 128, height: 128, strength: 0.5 });
    assert.deepEqual(hires.data, img2img.data);
  });

  test("variation strength 1 gives the variation seed's image", async () => {
    const varied = await image({ seed: 3, variationSeed: 5, variationStrength: 1 });
    const diff = maxAbsDiff(varied.data, (await image({ seed: 5 })).data);
    assert.ok(diff < 1e-4, `off by ${diff}`);
    const half = maxAbsDiff((await image({ seed: 3, variationSeed: 5, variationStrength: 0.5 })).data, varied.data);
    assert.ok(half > 1e-3, `strength 0.5 is the same image (${half})`);
  });
});

describe('a refiner: text_encoder_2 alone, as stable-diffusion-xl-refiner-1.0', () => {
  let refiner: StableDiffusionModel;
  before(async () => {
    await createSdxlRefinerPipeline(set.modelDir('tiny-sdxl'), join(scratch, 'tiny-refiner'));
    refiner = await StableDiffusionModel.load(await inspectModelFolder(join(scratch, 'tiny-refiner')), { intraOpNumThreads: 1 });
  });
  after(() => refiner?.release());

  test('is SDXL and supported, its one text encoder text_encoder_2; an SDXL base without text_encoder is not', async () => {
    const { info: r } = refiner;
    assert.deepEqual([r.family, r.supported, r.error, r.crossAttentionDim], ['SDXL', true, undefined, WIDTHS[1]]);
    assert.deepEqual(r.sdxl, { forceZerosForEmptyPrompt: false, timeIds: 5, textEncoder2Only: true });
    assert.deepEqual([r.paths.textEncoder, r.paths.tokenizer, r.paths.textEncoder2], [join(r.dir, 'text_encoder_2', 'model.onnx'), join(r.dir, 'tokenizer_2'), undefined]);
    const broken = join(scratch, 'no-te1');
    cpSync(set.modelDir('tiny-sdxl'), broken, { recursive: true });
    rmSync(join(broken, 'text_encoder'), { recursive: true });
    const missing = await inspectModelFolder(broken);
    assert.deepEqual([missing.family, missing.supported, missing.error], ['SDXL', false, 'missing text_encoder/model.onnx']);
  });

  test("the conditioning is diffusers' with text_encoder=None: text_encoder_2's penultimate states and pooled output, the empty negative prompt encoded, aesthetic scores 6 and 2.5 in the time ids", async () => {
    const c0 = set.cases[0];
    const request = await resolveRequest(refiner.info, { prompt: c0.case.prompt, steps: 4, width: 64, height: 96 });
    const c = await encodeConditioning(refiner, request, request.steps, true);
    // The base model's text_encoder_2 is the same file: run directly, it gives the expected values.
    const [prompt, empty] = [await encodeIds(1, c0.prompt_ids_2!), await encodeIds(1, chunk(1, []))];
    assert.deepEqual([c.sequenceLength, c.hiddenSize], [ROWS, WIDTHS[1]]);
    assert.deepEqual(c.positive, [prompt.hidden]);
    assert.deepEqual(c.negative, [empty.hidden]);
    const unet = sdxlUnetInputs(refiner.info.sdxl!, request, c.pooledAt!(0), 1, true);
    assert.deepEqual(unet.text_embeds, { data: concat([empty.pooled!, prompt.pooled!]), dims: [2, 32] });
    assert.deepEqual(unet.time_ids, { data: Float32Array.of(96, 64, 0, 0, 2.5, 96, 64, 0, 0, 6), dims: [2, 5] });
  });

  test('A1111 weights and prompt editing act on its one encoder; prompt2 is refused', async () => {
    const c = await conditioning({ prompt: 'a (cat:1.5) [photo]' }, refiner);
    const [a, cat, photo] = [tokens('a '), tokens('cat'), tokens(' photo')];
    const ids = [...a, ...cat, ...photo];
    const weights = [1, ...a.map(() => 1), ...cat.map(() => 1.5), ...photo.map(() => 1 / 1.1), ...new Array(ROWS - 1 - ids.length).fill(1)];
    const raw = await encodeIds(1, chunk(1, ids));
    assert.deepEqual(c.positive, [applyEmphasis(raw.hidden, weights, WIDTHS[1])]);
    assert.ok(maxAbsDiff(c.positive[0], raw.hidden) > 1e-3, 'the weights change the states');
    assert.deepEqual(c.pooledAt!(0).data.subarray(32), raw.pooled);

    const edited = await conditioning({ prompt: '[a cat:a dog:2]', steps: 4 }, refiner);
    const [catStates, dog] = [await encodeIds(1, chunk(1, tokens('a cat'))), await encodeIds(1, chunk(1, tokens('a dog')))];
    assert.deepEqual([edited.at(0).subarray(ROWS * WIDTHS[1]), edited.at(3).subarray(ROWS * WIDTHS[1])], [catStates.hidden, dog.hidden]);
    assert.deepEqual(edited.pooledAt!(3).data.subarray(32), dog.pooled);

    await assert.rejects(
      resolveRequest(refiner.info, { prompt: 'a', prompt2: 'b', negativePrompt2: 'c' }),
      diffusionError('BAD_USER_INPUT', /prompt2, negativePrompt2 are for the second of two text encoders, and model tiny-refiner is a refiner with text_encoder_2 alone, which reads the prompt and negativePrompt: leave them out/),
    );
  });

  test('txt2img and img2img run through the engine', async () => {
    const { info: r } = refiner;
    const image = async (params: Partial<GenerateParams>) => {
      const request = await resolveRequest(r, { prompt: 'a cat', steps: 4, scheduler: 'EULER', seed: 3, width: 64, height: 64, ...params });
      return (await engine.run(r, request)).images[0].image;
    };
    const txt2img = await image({});
    assert.deepEqual([txt2img.width, txt2img.height], [64, 64]);
    // Its typical use: a low-strength img2img of a base model's image.
    const base = await encodeImage((await engine.run(info, await resolveRequest(info, { prompt: 'a cat', steps: 2, scheduler: 'EULER', seed: 3, width: 64, height: 64 }))).images[0].image, 'png');
    const refined = await image({ initImage: base, strength: 0.3 });
    assert.deepEqual([refined.width, refined.height], [64, 64]);
    assert.ok(maxAbsDiff(refined.data, txt2img.data) > 1e-2, 'img2img gave the txt2img image');
    assert.ok(maxAbsDiff((await image({ initImage: base, strength: 0.3, prompt: 'a dog' })).data, refined.data) > 1e-3, 'the prompt changes nothing');
  });

  test("an SDXL embedding's clip_g applies (its clip_l has no encoder); an SD 1.x embedding is left out with a warning", async () => {
    const dir = join(scratch, 'refiner-embeddings');
    const file = await writeSteed(dir, new Float32Array(WIDTHS[0]).fill(3));
    const embeddings = [{ token: 'sdqlsteed', path: file }];
    const adapted = await StableDiffusionModel.load(refiner.info, { intraOpNumThreads: 1 }, { loras: [], embeddings });
    try {
      assert.deepEqual(adapted.warnings, []);
      const withEmbedding = await conditioning({ prompt: 'a photo of sdqlsteed', embeddings }, adapted);
      const withWord = await conditioning({ prompt: 'a photo of horse' }, refiner);
      const diff = maxAbsDiff(withEmbedding.positive[0], withWord.positive[0]);
      assert.ok(diff < 1e-5, `the states differ by ${diff}`);
    } finally {
      await adapted.release();
    }
    const sd1 = join(dir, 'sd1.safetensors');
    await writeSafetensors(sd1, { emb_params: { shape: [1, WIDTHS[1]], data: new Float32Array(WIDTHS[1]) } });
    const other = await StableDiffusionModel.load(refiner.info, { intraOpNumThreads: 1 }, { loras: [], embeddings: [{ token: 'sd1', path: sd1 }] });
    await other.release();
    assert.deepEqual(other.warnings, ['embedding "sd1" is not an SDXL embedding (clip_l and clip_g), and the model is SDXL: not applied']);
  });

  test("a kohya SDXL LoRA: its lora_te2_ modules merge into text_encoder_2, its lora_te1_ modules and the UNet's that do not fit are reported", async () => {
    const file = join(scratch, 'kohya-sdxl.safetensors');
    const modules = await createKohyaSdxlLora(set.modelDir('tiny-sdxl'), file, 3);
    const adapted = await StableDiffusionModel.load(refiner.info, { intraOpNumThreads: 1 }, { loras: [{ name: 'xl', path: file, weight: 1 }], embeddings: [] });
    try {
      const te1 = modules.filter((m) => m.component === 'text_encoder').length;
      assert.deepEqual(adapted.warnings.map((w) => w.replace(/ \(.*\)$/, '')), [
        `LoRA "xl": ${te1} of ${modules.length} modules match no layer of model tiny-refiner`,
        `LoRA "xl": 1 of ${modules.length} modules have other shapes than model tiny-refiner's layers`,
      ]);
      assert.match(adapted.warnings[0], /\(lora_te1_/);
      assert.match(adapted.warnings[1], /\(lora_unet_input_blocks_8_1_transformer_blocks_1_attn2_to_k\)/);
      const ids = Int32Array.from(chunk(1, tokens('a cat')));
      const [before, after] = [await refiner.encodeTokensXL(0, ids), await adapted.encodeTokensXL(0, ids)];
      assert.ok(maxAbsDiff(before.hidden.data, after.hidden.data) > 1e-3, 'the LoRA leaves text_encoder_2 as it was');
    } finally {
      await adapted.release();
    }
  });
});
