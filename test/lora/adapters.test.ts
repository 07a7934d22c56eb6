// Resolving a request's LoRAs and embeddings from real files in their folders, as `sdql generate` and
// the server do before the engine runs, and checking them against the model.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { folderAdapterSource, prepareRequest, resolveAdapters, type AdapterSource } from '../../src/diffusion/adapters.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { DEFAULTS } from '../../src/diffusion/request.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { FixtureDir, diffusionError } from '../engine/helpers.ts';
import { randomLora, writeSafetensors } from './helpers.ts';

const DIM = 32; // the fixture text encoder's width

let fixtures: FixtureDir;
let model: ModelFolderInfo;
let lorasDir: string;
let embeddingsDir: string;
let source: AdapterSource;
const lora = (id: string) => join(lorasDir, `${id}.safetensors`);
const embedding = (name: string) => join(embeddingsDir, `${name}.safetensors`);

before(async () => {
  fixtures = await FixtureDir.create();
  model = await fixtures.model('demo');
  lorasDir = join(fixtures.root, 'loras');
  embeddingsDir = join(fixtures.root, 'embeddings');
  await mkdir(lorasDir);
  await mkdir(embeddingsDir);
  const { down, up } = randomLora(1, [DIM, DIM], 2);
  const tensors = { 'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': down, 'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': up };
  await writeSafetensors(lora('v1'), tensors, { ss_base_model_version: 'sd_v1' });
  await writeSafetensors(lora('v2'), tensors, { ss_base_model_version: 'sd_v2-v' });
  await writeSafetensors(lora('any'), tensors);
  await writeFile(lora('bad'), 'truncated');
  const vectors = (n: number) => ({ shape: [n, DIM], data: new TorchGenerator(n).randn(n * DIM) });
  await writeSafetensors(embedding('style'), { emb_params: vectors(2) });
  await writeSafetensors(embedding('broken'), { a: vectors(1), b: vectors(1) });
  await writeSafetensors(embedding('unused'), { emb_params: vectors(1) });
  source = await folderAdapterSource(lorasDir, embeddingsDir);
});
after(() => fixtures.remove());

describe('resolving LoRAs and embeddings from their folders', () => {
  test('merges `loras` with the prompt tags, finds the embeddings of both prompts, and refuses what cannot apply', async () => {
    const sd2: ModelFolderInfo = { ...model, id: 'sd21', family: 'SD2' };
    const resolved = await resolveAdapters(source, sd2, {
      prompt: 'style <lora:any:0.5:0.25> <lora:v2:1>',
      negativePrompt: 'broken',
      promptSyntax: 'A1111',
      loras: [{ id: 'v2', weight: 0.7 }],
    });
    assert.deepEqual(resolved, {
      loras: [
        { name: 'v2', path: lora('v2'), weight: 0.7 },
        { name: 'any', path: lora('any'), weight: 0.5, unetWeight: 0.25 },
        { name: 'v2', path: lora('v2'), weight: 1, unetWeight: 1 },
      ],
      embeddings: [{ token: 'style', path: embedding('style') }],
      warnings: [`embedding "broken" cannot be used: it holds no embedding tensor (2 tensors: a, b)`],
    });
    // Under PLAIN a tag is text: it applies nothing, and the words in it can call up embeddings.
    const plain = await resolveAdapters(source, sd2, { prompt: '<lora:unused:1>', promptSyntax: 'PLAIN' });
    assert.deepEqual([plain.loras, plain.embeddings.map((e) => e.token)], [[], ['unused']]);

    const refusals: [Parameters<typeof resolveAdapters>[2], RegExp][] = [
      [{ prompt: 'a', promptSyntax: 'A1111', loras: [{ id: 'v1', weight: 1 }] }, /LoRA "v1" was trained for SD1 \(ss_base_model_version sd_v1\); model sd21 is SD2/],
      [{ prompt: 'a <lora:bad:1>', promptSyntax: 'A1111' }, /LoRA "bad" cannot be used: not a valid safetensors file/],
      [{ prompt: 'a <lora:gone:1>', promptSyntax: 'A1111' }, /no LoRA is named "gone"/],
      [{ prompt: 'a', promptSyntax: 'A1111', loras: [{ id: 'any', weight: Infinity }] }, /LoRA "any": its weight must be a finite number/],
    ];
    for (const [request, message] of refusals) await assert.rejects(resolveAdapters(source, sd2, request), diffusionError('BAD_USER_INPUT', message));
    // A model of unknown family refuses no family.
    assert.equal(model.family, 'UNKNOWN');
    assert.equal((await resolveAdapters(source, model, { prompt: '<lora:v1:1>', promptSyntax: 'A1111' })).loras.length, 1);
  });

  test('a folder that does not exist holds nothing', async () => {
    const empty = await folderAdapterSource(join(fixtures.root, 'absent'), join(fixtures.root, 'absent'));
    assert.equal(empty.lora('v1'), undefined);
    assert.deepEqual(await empty.embeddings(), []);
    await assert.rejects(resolveAdapters(empty, model, { prompt: '<lora:v1:1>', promptSyntax: 'A1111' }), diffusionError('BAD_USER_INPUT', /no LoRA is named "v1"/));
  });
});

describe('preparing a request', () => {
  test('checks it against the model, fills in its defaults and adds the files its LoRAs and embeddings name', async () => {
    const { request, adapters } = await prepareRequest(model, { prompt: 'a style cat <lora:v1:0.5>', loras: [{ id: 'any', weight: 1 }] }, source);
    assert.deepEqual(
      [request.prompt, request.steps, request.scheduler, request.width, request.height, request.promptSyntax],
      ['a style cat <lora:v1:0.5>', DEFAULTS.steps, DEFAULTS.scheduler, model.nativeWidth, model.nativeHeight, 'A1111'],
    );
    assert.deepEqual(request.loras, [
      { name: 'any', path: lora('any'), weight: 1 },
      { name: 'v1', path: lora('v1'), weight: 0.5, unetWeight: 0.5 },
    ]);
    assert.deepEqual(request.embeddings, [{ token: 'style', path: embedding('style') }]);
    assert.deepEqual([adapters.loras, adapters.embeddings], [request.loras, request.embeddings]);

    const bare = await prepareRequest(model, { prompt: 'a dog', steps: 3 }, source);
    assert.deepEqual([bare.request.steps, 'loras' in bare.request, 'embeddings' in bare.request], [3, false, false]);
  });

  test('refuses a model that cannot run, bad parameters and malformed tags before looking up any file', async () => {
    const refusals: [ModelFolderInfo, Parameters<typeof prepareRequest>[1], RegExp][] = [
      [{ ...model, error: 'unet/model.onnx is missing' }, { prompt: 'a' }, /model demo cannot be used: unet\/model\.onnx is missing/],
      [{ ...model, supported: false, family: 'SDXL' }, { prompt: 'a' }, /model demo is SDXL, which sdql does not run yet/],
      [model, { prompt: 'a', steps: 0, loras: [{ id: 'gone', weight: 1 }] }, /steps must be an integer/],
      [model, { prompt: 'a <lora:gone:abc>' }, /invalid LoRA tag <lora:gone:abc>/],
    ];
    for (const [info, params, message] of refusals) await assert.rejects(prepareRequest(info, params, source), diffusionError('BAD_USER_INPUT', message));
  });
});
