// The token counter's analysis of a prompt at the engine level: the model's tokenizer, read once per
// model description, embeddings and LoRAs looked up in their folders, and the errors for a model or
// an argument that cannot be used.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { folderAdapterSource, type AdapterSource } from '../../src/diffusion/adapters.ts';
import { LIMITS } from '../../src/diffusion/limits.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { analyzePrompt, tokenizeText } from '../../src/diffusion/prompt/analyze.ts';
import { ClipTokenizer } from '../../src/diffusion/tokenizer.ts';
import { FixtureDir, diffusionError } from '../engine/helpers.ts';
import { writeSafetensors } from '../lora/helpers.ts';

const DIM = 32; // the fixture text encoder's width

let fixtures: FixtureDir;
let model: ModelFolderInfo;
let tokenizer: ClipTokenizer;
let adapters: AdapterSource;

before(async () => {
  fixtures = await FixtureDir.create();
  model = await fixtures.model('demo');
  tokenizer = await ClipTokenizer.fromFolder(model.paths.tokenizer);
  const lorasDir = join(fixtures.root, 'loras');
  const embeddingsDir = join(fixtures.root, 'embeddings');
  await mkdir(lorasDir);
  await mkdir(embeddingsDir);
  await writeSafetensors(join(lorasDir, 'style.safetensors'), { 'lora_unet_a.lora_down.weight': { shape: [1, 2], data: new Float32Array(2) } });
  await writeFile(join(lorasDir, 'broken.safetensors'), 'truncated');
  await writeSafetensors(join(embeddingsDir, 'sdqlstyle.safetensors'), { emb_params: { shape: [3, DIM], data: new Float32Array(3 * DIM) } });
  adapters = await folderAdapterSource(lorasDir, embeddingsDir);
});
after(() => fixtures.remove());

test('counts an embedding as its vectors and says which LoRA tags name a usable file', async () => {
  const analysis = await analyzePrompt(model, 'a cat sdqlstyle <lora:style:0.5> <lora:broken:1> <lora:ghost:1>', { adapters });
  assert.equal(analysis.tokenCount, tokenizer.tokenize('a cat').length + 3);
  assert.deepEqual([analysis.maxLength, analysis.chunkCount, analysis.embeddings], [75, 1, ['sdqlstyle']]);
  assert.deepEqual(
    analysis.loras.map((l) => [l.name, l.found]),
    [['style', true], ['broken', false], ['ghost', false]],
  );
  // Prompt edits are counted at the steps given: the longest text of the schedule.
  const edited = await analyzePrompt(model, '[a:a photo of a cat:3]', { steps: 10, adapters });
  assert.equal(edited.tokenCount, tokenizer.tokenize('a photo of a cat').length);
  assert.deepEqual(await tokenizeText(model, 'a (cat)'), tokenizer.encode('a (cat)'));
});

test('refuses steps and texts beyond the limits', async () => {
  await assert.rejects(analyzePrompt(model, 'a', { steps: 0, adapters }), diffusionError('BAD_USER_INPUT', /steps must be an integer from 1/));
  await assert.rejects(analyzePrompt(model, 'x'.repeat(LIMITS.maxPromptChars + 1), { adapters }), diffusionError('BAD_USER_INPUT', /prompt is \d+ characters/));
  await assert.rejects(tokenizeText(model, 'x'.repeat(LIMITS.maxPromptChars + 1)), diffusionError('BAD_USER_INPUT', /text is \d+ characters/));
});

test('reads a model description’s tokenizer once, and an unreadable one anew on the next call', async () => {
  const vocab = join(model.paths.tokenizer, 'vocab.json');
  const good = await readFile(vocab);
  await tokenizeText(model, 'a');
  await writeFile(vocab, 'not json');
  try {
    // The description already read its tokenizer; a new description (a rescan) reads the broken file.
    assert.deepEqual(await tokenizeText(model, 'a cat'), tokenizer.encode('a cat'));
    const rescanned = await inspectModelFolder(model.dir);
    await assert.rejects(tokenizeText(rescanned, 'a'), diffusionError('MODEL_INVALID', /model demo: its tokenizer cannot be read/));
    await writeFile(vocab, good);
    assert.deepEqual(await tokenizeText(rescanned, 'a cat'), tokenizer.encode('a cat'));
  } finally {
    await writeFile(vocab, good);
  }
  await assert.rejects(tokenizeText({ ...model, error: 'unet/model.onnx is missing' }, 'a'), diffusionError('MODEL_INVALID', /model demo cannot be used: unet\/model\.onnx is missing/));
});
