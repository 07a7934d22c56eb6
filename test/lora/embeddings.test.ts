// Textual-inversion embeddings: their file formats, the folder listing, and their effect on the text
// encoder (real sessions), which must change only where their trigger word appears.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addEmbeddings, embeddingsUsedIn, listEmbeddings, readEmbedding, type Embedding } from '../../src/diffusion/embeddings.ts';
import { Engine } from '../../src/diffusion/engine.ts';
import { ModelEditor } from '../../src/diffusion/lora/model-editor.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { float16ToFloat32, float32ToFloat16 } from '../../src/diffusion/onnx/float16.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { ClipTokenizer } from '../../src/diffusion/tokenizer.ts';
import { FixtureDir, diffusionError } from '../engine/helpers.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { bufferTensor, writeSafetensors } from './helpers.ts';

const DIM = 32; // the fixture text encoder's width

let fixtures: FixtureDir;
let dir: string;
before(async () => {
  fixtures = await FixtureDir.create();
  dir = join(fixtures.root, 'embeddings');
  await mkdir(dir);
});
after(() => fixtures.remove());

const vectors = (n: number, seed: number) => new TorchGenerator(seed).randn(n * DIM);

describe('embedding files', () => {
  test('reads AUTOMATIC1111 and diffusers embeddings, one or several vectors', async () => {
    const two = vectors(2, 1);
    await writeSafetensors(join(dir, 'a1111.safetensors'), { emb_params: { shape: [2, DIM], data: two } }, { name: 'a1111' });
    await writeSafetensors(join(dir, 'converted.safetensors'), { 'string_to_param.*': { shape: [1, DIM], data: vectors(1, 2) }, step: { shape: [], data: Float32Array.of(0) } });
    await writeSafetensors(join(dir, 'diffusers.safetensors'), { '<cat-toy>': { shape: [DIM], data: vectors(1, 3), dtype: 'F16' } });
    const [clipL, clipG] = [new TorchGenerator(4).randn(2 * 768), new TorchGenerator(5).randn(2 * 1280)];
    await writeSafetensors(join(dir, 'sdxl.safetensors'), { clip_l: { shape: [2, 768], data: clipL }, clip_g: { shape: [2, 1280], data: clipG } });
    await writeSafetensors(join(dir, 'half-sdxl.safetensors'), { clip_g: { shape: [1, 1280], data: new Float32Array(1280) } });
    await writeFile(join(dir, 'old.pt'), 'pickle');
    await writeFile(join(dir, 'notes.txt'), 'not an embedding');

    const a1111 = await readEmbedding({ token: 'a1111', path: join(dir, 'a1111.safetensors') });
    assert.deepEqual([a1111.count, a1111.dim], [2, DIM]);
    assert.deepEqual(a1111.vectors, two);
    const diffusers = await readEmbedding({ token: 'toy', path: join(dir, 'diffusers.safetensors') });
    assert.deepEqual([diffusers.count, diffusers.dim], [1, DIM]);
    assert.deepEqual(diffusers.vectors, float16ToFloat32(float32ToFloat16(vectors(1, 3))));
    // SDXL's: clip_l for the first text encoder, clip_g for the second.
    const sdxl = await readEmbedding({ token: 'sdxl', path: join(dir, 'sdxl.safetensors') });
    assert.deepEqual([sdxl.count, sdxl.dim, sdxl.second?.dim], [2, 768, 1280]);
    assert.deepEqual([sdxl.vectors, sdxl.second?.vectors], [clipL, clipG]);
    await assert.rejects(readEmbedding({ token: 'half', path: join(dir, 'half-sdxl.safetensors') }), diffusionError('BAD_USER_INPUT', /embedding "half" cannot be used: it is an SDXL embedding with only one of clip_l and clip_g/));
    await assert.rejects(readEmbedding({ token: 'old', path: join(dir, 'old.pt') }), diffusionError('BAD_USER_INPUT', /\.pt files are Python pickles/));

    assert.deepEqual(await listEmbeddings(dir), [
      { name: 'a1111', path: join(dir, 'a1111.safetensors'), vectors: 2, dim: DIM },
      { name: 'converted', path: join(dir, 'converted.safetensors'), vectors: 1, dim: DIM },
      { name: 'diffusers', path: join(dir, 'diffusers.safetensors'), vectors: 1, dim: DIM },
      { name: 'half-sdxl', path: join(dir, 'half-sdxl.safetensors'), error: 'it is an SDXL embedding with only one of clip_l and clip_g' },
      { name: 'old', path: join(dir, 'old.pt'), error: 'embedding "old": only .safetensors files are loaded; .pt files are Python pickles, which can run code when loaded' },
      { name: 'sdxl', path: join(dir, 'sdxl.safetensors'), vectors: 2, dim: 768 + 1280 },
    ]);
    assert.deepEqual(await listEmbeddings(join(dir, 'absent')), []);
    const used = embeddingsUsedIn(['a diffusers photo', 'old, converted'], await listEmbeddings(dir));
    assert.deepEqual(used, [
      { token: 'converted', path: join(dir, 'converted.safetensors') },
      { token: 'diffusers', path: join(dir, 'diffusers.safetensors') },
    ]);
    // An SDXL embedding is found as any other; one with half its tensors is not.
    const xl = embeddingsUsedIn(['a half-sdxl photo'], await listEmbeddings(dir));
    assert.deepEqual(xl, [{ token: 'sdxl', path: join(dir, 'sdxl.safetensors') }]);
  });

  test('appends the vectors to an fp16 token table, rounded to half precision', async () => {
    const model = await fixtures.model('fp16', { precision: 'fp16' });
    const editor = await ModelEditor.open(model.paths.textEncoder);
    const tokenizer = await ClipTokenizer.fromFolder(model.paths.tokenizer);
    const slot = editor.weights.get('text_model.embeddings.token_embedding')!;
    const [rows] = slot.initializer.dims;
    const original = await editor.read(slot);
    const embedding: Embedding = { token: 'sdqlstyle', vectors: vectors(3, 4), count: 3, dim: DIM };
    const { expansions, warnings } = await addEmbeddings(editor, tokenizer, [embedding, { token: 'wide', vectors: new Float32Array(768), count: 1, dim: 768 }]);
    assert.deepEqual(expansions, new Map([['sdqlstyle', ['sdqlstyle', 'sdqlstyle_1', 'sdqlstyle_2']]]));
    assert.deepEqual(warnings, ['embedding "wide" has 768-wide vectors but this model\'s text encoder takes 32: not applied']);
    const { tensor, values } = await bufferTensor(await editor.toBuffer(), slot.initializer.name);
    assert.deepEqual(tensor.dims, [rows + 3, DIM]);
    assert.deepEqual(values.subarray(0, rows * DIM), original);
    assert.deepEqual(values.subarray(rows * DIM), float16ToFloat32(float32ToFloat16(embedding.vectors)));
    assert.deepEqual(tokenizer.tokenize('sdqlstyle_2 sdqlstyle'), [rows + 2, rows]);
  });

  test('refuses a trigger word that is already a token of the vocabulary', async () => {
    const model = await fixtures.model('fp32');
    const editor = await ModelEditor.open(model.paths.textEncoder);
    const tokenizer = await ClipTokenizer.fromFolder(model.paths.tokenizer);
    await assert.rejects(addEmbeddings(editor, tokenizer, [{ token: 'cat</w>', vectors: vectors(1, 5), count: 1, dim: DIM }]), diffusionError('BAD_USER_INPUT', /"cat<\/w>" is already a token/));
  });
});

describe('an embedding in the text encoder', () => {
  let model: ModelFolderInfo;
  let plain: StableDiffusionModel;
  let adapted: StableDiffusionModel;
  let path: string;
  const encode = async (m: StableDiffusionModel, text: string) => {
    const ids = m.tokenizer.encodePadded(m.expandEmbeddingTokens(text));
    return { ids, hidden: (await m.textEncoder.run({ input_ids: { data: ids, dims: [1, ids.length] } })).last_hidden_state.data };
  };

  before(async () => {
    model = await fixtures.model('fp32');
    path = await writeSafetensors(join(dir, 'sdqlstyle.safetensors'), { emb_params: { shape: [2, DIM], data: vectors(2, 6) } });
    plain = await StableDiffusionModel.load(model);
    adapted = await StableDiffusionModel.load(model, {}, { loras: [], embeddings: [{ token: 'sdqlstyle', path }] });
  });
  after(async () => {
    await plain.release();
    await adapted.release();
  });

  test('expands its trigger word to all its tokens', async () => {
    const { ids } = await encode(adapted, 'a sdqlstyle photo');
    const [a, photo] = plain.tokenizer.tokenize('a photo');
    const table = (await ModelEditor.open(model.paths.textEncoder)).weights.get('text_model.embeddings.token_embedding')!.initializer.dims[0];
    assert.deepEqual([...ids.subarray(0, 6)], [plain.tokenizer.bosTokenId, a, table, table + 1, photo, plain.tokenizer.eosTokenId]);
  });

  test('changes the output only where its token appears', async () => {
    const without = await encode(plain, 'a photo');
    assert.deepEqual((await encode(adapted, 'a photo')).hidden, without.hidden);
    const withToken = (await encode(adapted, 'a sdqlstyle photo')).hidden;
    // CLIP's attention is causal: the positions before the token (start, "a") cannot see it.
    assert.deepEqual(withToken.subarray(0, 2 * DIM), without.hidden.subarray(0, 2 * DIM));
    assert.ok(maxAbsDiff(withToken.subarray(2 * DIM, 3 * DIM), without.hidden.subarray(2 * DIM, 3 * DIM)) > 0.01);
  });

  test('through the engine: images change with the trigger word in the prompt, and only then', async () => {
    const engine = new Engine({ runtime: { intraOpNumThreads: 1 } });
    try {
      const run = async (prompt: string, embeddings = [{ token: 'sdqlstyle', path }]) =>
        (await engine.run(model, await resolveRequest(model, { prompt, steps: 2, scheduler: 'EULER', seed: 1, embeddings }))).images[0].image.data;
      const plainImage = await run('a photo', []);
      assert.deepEqual(await run('a photo'), plainImage);
      assert.ok(maxAbsDiff(await run('a sdqlstyle photo'), plainImage) > 0.01);
    } finally {
      await engine.close();
    }
  });
});
