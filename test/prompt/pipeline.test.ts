// The prompt syntax in the pipeline, on a fixture model: what the UNet is conditioned on at each step
// (chunks, emphasis, prompt edits, alternation), checked against the text encoder run directly, and
// the images that follow.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { MAX_CONDITIONING_CHUNKS, encodeConditioning } from '../../src/diffusion/pipeline.ts';
import { promptLoraTags, resolveRequest, type GenerateParams } from '../../src/diffusion/request.ts';
import { applyEmphasis } from '../../src/diffusion/prompt/emphasis.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { FixtureDir, diffusionError } from '../engine/helpers.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { writeSafetensors } from '../lora/helpers.ts';

const DIM = 32; // the fixture text encoder's width
const ROWS = 77;
// Over 75 tokens, without commas (so no chunk edge moves).
const LONG = Array.from({ length: 20 }, (_, i) => `a photo of cat ${i}`).join(' ');

let fixtures: FixtureDir;
let info: ModelFolderInfo;
let model: StableDiffusionModel;
let engine: Engine;

before(async () => {
  fixtures = await FixtureDir.create();
  info = await fixtures.model('fp32');
  model = await StableDiffusionModel.load(info, { intraOpNumThreads: 1 });
  engine = new Engine({ runtime: { intraOpNumThreads: 1 } });
});
after(async () => {
  await model.release();
  await engine.close();
  await fixtures.remove();
});

/** The text encoder's output for 77 ids, run directly. */
async function encodeIds(ids: number[], m = model): Promise<Float32Array> {
  assert.equal(ids.length, ROWS);
  return (await m.textEncoder.run({ input_ids: { data: Int32Array.from(ids), dims: [1, ROWS] } }))[m.textEncoderOutput].data;
}

/** [start, ids, end, padding] as diffusers and A1111 lay out one chunk. */
function chunk(ids: number[], m = model): number[] {
  const t = m.tokenizer;
  return [t.bosTokenId, ...ids, t.eosTokenId, ...new Array<number>(75 - ids.length).fill(t.padTokenId)];
}

const tokens = (text: string) => model.tokenizer.tokenize(text);

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((offset, p) => (out.set(p, offset), offset + p.length), 0);
  return out;
}

async function conditioning(params: Partial<GenerateParams>, planSteps?: number, guidance = true) {
  const request = await resolveRequest(info, { prompt: 'a cat', steps: 4, ...params });
  return encodeConditioning(model, request, planSteps ?? request.steps, guidance);
}

/** The prompt part of the UNet batch at call i (one image, with guidance: [negative, prompt]). */
const promptAt = (c: Awaited<ReturnType<typeof conditioning>>, i: number) => c.at(i).subarray(c.sequenceLength * c.hiddenSize);

async function image(params: Partial<GenerateParams>): Promise<Float32Array> {
  const request = await resolveRequest(info, { prompt: 'a cat', steps: 4, scheduler: 'EULER', seed: 11, ...params });
  return (await engine.run(info, request)).images[0].image.data;
}

describe('conditioning', () => {
  test("a plain prompt of at most 75 tokens is diffusers' encoding exactly, in both syntaxes", async () => {
    const prompt = 'a photo of an astronaut riding a horse, high detail';
    const expected = await encodeIds([...model.tokenizer.encodePadded(prompt)]);
    const negative = await encodeIds([...model.tokenizer.encodePadded('blurry')]);
    for (const promptSyntax of ['A1111', 'PLAIN'] as const) {
      const c = await conditioning({ prompt, negativePrompt: 'blurry', promptSyntax });
      assert.equal(c.sequenceLength, ROWS);
      assert.deepEqual(c.positive, [expected]);
      assert.deepEqual(c.negative, [negative]);
      assert.deepEqual(c.at(3), concat([negative, expected]));
    }
  });

  test('A1111: a long prompt is 75-token chunks encoded one by one; the negative prompt is padded with empty chunks', async () => {
    const ids = tokens(LONG);
    assert.ok(ids.length > 75 && ids.length <= 150, `${ids.length} tokens`);
    const c = await conditioning({ prompt: LONG, negativePrompt: 'blurry' });
    assert.equal(c.sequenceLength, 2 * ROWS);
    assert.deepEqual(c.positive, [concat([await encodeIds(chunk(ids.slice(0, 75))), await encodeIds(chunk(ids.slice(75)))])]);
    assert.deepEqual(c.negative, [concat([await encodeIds(chunk(tokens('blurry'))), await encodeIds(chunk([]))])]);

    const plain = await conditioning({ prompt: LONG, promptSyntax: 'PLAIN' });
    assert.equal(plain.sequenceLength, ROWS);
    assert.deepEqual(plain.positive, [await encodeIds(chunk(ids.slice(0, 75)))]);
  });

  test('BREAK starts a chunk; LoRA tags are left out of the text under A1111 and kept under PLAIN', async () => {
    const broken = await conditioning({ prompt: 'a cat BREAK a dog' });
    assert.deepEqual(broken.positive, [concat([await encodeIds(chunk(tokens('a cat'))), await encodeIds(chunk(tokens('a dog')))])]);

    const tagged = await conditioning({ prompt: 'a cat <lora:style:0.5>' });
    assert.deepEqual(tagged.positive, (await conditioning({ prompt: 'a cat' })).positive);
    const plain = await conditioning({ prompt: 'a cat <lora:style:0.5>', promptSyntax: 'PLAIN' });
    assert.deepEqual(plain.positive, [await encodeIds(chunk(tokens('a cat <lora:style:0.5>')))]);
    assert.deepEqual(promptLoraTags('a <lora:style:0.5> <lora:other:1:0.2>', 'A1111'), [
      { name: 'style', weight: 0.5, unetWeight: 0.5 },
      { name: 'other', weight: 1, unetWeight: 0.2 },
    ]);
    assert.deepEqual(promptLoraTags('a <lora:style:0.5>', 'PLAIN'), []);
    await assert.rejects(resolveRequest(info, { prompt: 'a <lora:style:heavy>' }), diffusionError('BAD_USER_INPUT', /invalid LoRA tag <lora:style:heavy>/));
    await assert.rejects(resolveRequest(info, { prompt: 'a', promptSyntax: 'COMFY' }), diffusionError('BAD_USER_INPUT', /unknown prompt syntax "COMFY": A1111 or PLAIN/));
  });

  test('emphasis: weighted tokens scaled, then the mean restored (A1111 "Original")', async () => {
    const c = await conditioning({ prompt: 'a (cat:1.5) [photo]' });
    const [a, cat, photo] = [tokens('a '), tokens('cat'), tokens(' photo')];
    const ids = chunk([...a, ...cat, ...photo]);
    const weights = [1, ...a.map(() => 1), ...cat.map(() => 1.5), ...photo.map(() => 1 / 1.1), ...new Array(ROWS - 1 - a.length - cat.length - photo.length).fill(1)];
    const raw = await encodeIds(ids);
    assert.deepEqual(c.positive, [applyEmphasis(raw, weights, DIM)]);
    assert.ok(maxAbsDiff(c.positive[0], raw) > 1e-3);
  });

  test('prompt editing and alternation pick the text per UNet call, each text encoded once', async () => {
    const cat = await encodeIds(chunk(tokens('a cat')));
    const dog = await encodeIds(chunk(tokens('a dog')));
    const runs: number[][] = [];
    const run = model.textEncoder.run.bind(model.textEncoder);
    model.textEncoder.run = (feeds) => {
      runs.push([...(feeds.input_ids.data as Int32Array)]);
      return run(feeds);
    };
    try {
      // [from:to:when] over 4 steps at 0.5: A1111 keeps `from` through step index 2.
      const edit = await conditioning({ prompt: 'a [cat:dog:0.5]' });
      assert.deepEqual(edit.positive, [cat, dog]);
      assert.deepEqual([0, 1, 2, 3].map((i) => maxAbsDiff(promptAt(edit, i), cat) === 0), [true, true, true, false]);
      assert.deepEqual(promptAt(edit, 3), dog);
      // The prompt's two texts and the empty negative prompt: three encodings.
      assert.equal(runs.length, 3);

      // A1111's sampler takes alternation's first option twice (schedule.ts).
      const alternate = await conditioning({ prompt: 'a [cat|dog]' });
      assert.deepEqual([0, 1, 2, 3].map((i) => (maxAbsDiff(promptAt(alternate, i), cat) === 0 ? 'cat' : 'dog')), ['cat', 'cat', 'dog', 'cat']);
      assert.deepEqual(promptAt(alternate, 2), dog);
      // A second-order sampler's calls count as steps: the edit falls at call 4 of 8.
      const heun = await conditioning({ prompt: 'a [cat:dog:0.5]' }, 8);
      assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((i) => (maxAbsDiff(promptAt(heun, i), cat) === 0 ? 'cat' : 'dog')), ['cat', 'cat', 'cat', 'cat', 'cat', 'dog', 'dog']);
    } finally {
      model.textEncoder.run = run;
    }
  });

  test('without guidance the negative prompt is not encoded and does not lengthen the prompt', async () => {
    const c = await conditioning({ prompt: 'a cat', negativePrompt: LONG, guidanceScale: 1 }, undefined, false);
    assert.equal(c.sequenceLength, ROWS);
    assert.deepEqual(c.negative, []);
    assert.deepEqual(c.at(0), c.positive[0]);
  });

  test('refuses prompts whose edits need more chunks than the limit', async () => {
    // 101 texts of 8 chunks or more.
    const edits = Array.from({ length: 100 }, (_, i) => `[a ${i}::${i + 1}]`).join(' ');
    const prompt = `${LONG} ${LONG} ${LONG} ${LONG} ${edits}`;
    await assert.rejects(conditioning({ prompt, steps: 100 }), diffusionError('BAD_USER_INPUT', new RegExp(`encoded chunks .* the limit is ${MAX_CONDITIONING_CHUNKS}`)));
  });

  test('a multi-vector embedding stays in one chunk', async () => {
    const path = await writeSafetensors(join(fixtures.root, 'sdqltriple.safetensors'), { emb_params: { shape: [3, DIM], data: new TorchGenerator(3).randn(3 * DIM) } });
    const adapted = await StableDiffusionModel.load(info, { intraOpNumThreads: 1 }, { loras: [], embeddings: [{ token: 'sdqltriple', path }] });
    try {
      // 74 tokens, then the 3 vectors: they go to the next chunk together.
      const words = Array.from({ length: 74 }, () => 'a').join(' ');
      const request = await resolveRequest(info, { prompt: `${words} sdqltriple`, steps: 2, embeddings: [{ token: 'sdqltriple', path }] });
      const c = await encodeConditioning(adapted, request, 2, false);
      const ids = adapted.tokenizer.tokenize(adapted.expandEmbeddingTokens('sdqltriple'));
      assert.equal(ids.length, 3);
      assert.equal(c.sequenceLength, 2 * ROWS);
      assert.deepEqual(c.positive, [concat([await encodeIds(chunk(tokens(words)), adapted), await encodeIds(chunk(ids, adapted), adapted)])]);
    } finally {
      await adapted.release();
    }
  });
});

describe('images', () => {
  test('A1111 on a plain short prompt is PLAIN; on a long prompt they differ', async () => {
    assert.deepEqual(await image({ prompt: 'a photo of a cat', promptSyntax: 'A1111' }), await image({ prompt: 'a photo of a cat', promptSyntax: 'PLAIN' }));
    assert.ok(maxAbsDiff(await image({ prompt: LONG, promptSyntax: 'A1111' }), await image({ prompt: LONG, promptSyntax: 'PLAIN' })) > 1e-3);
  });

  test('weights and prompt edits change the image', async () => {
    const plain = await image({ prompt: 'a cat photo' });
    assert.ok(maxAbsDiff(await image({ prompt: 'a (cat:1.6) photo' }), plain) > 1e-3);
    const edited = await image({ prompt: '[a cat:a dog:0.5]' });
    assert.ok(maxAbsDiff(edited, await image({ prompt: 'a cat' })) > 1e-3);
    assert.ok(maxAbsDiff(edited, await image({ prompt: 'a dog' })) > 1e-3);
  });

  test('a second-order sampler runs prompt edits', async () => {
    const heun = await image({ prompt: '[a cat:a dog:0.5]', scheduler: 'HEUN' });
    assert.ok(maxAbsDiff(heun, await image({ prompt: 'a cat', scheduler: 'HEUN' })) > 1e-3);
  });
});
