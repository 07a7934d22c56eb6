// LoRAs through the engine on fixture pipelines: images change, warnings come back with the result,
// bad requests are refused, and each LoRA set is merged once and cached.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import { normalizeAdapters } from '../../src/diffusion/lora/adapt.ts';
import { WeightIndex } from '../../src/diffusion/lora/weights.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { decodeModel } from '../../src/diffusion/onnx/proto.ts';
import { type GenerateResult } from '../../src/diffusion/pipeline.ts';
import { resolveRequest, type GenerateParams } from '../../src/diffusion/request.ts';
import { SessionPool } from '../../src/diffusion/session-pool.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { FixtureDir, assertImage, diffusionError } from '../engine/helpers.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { randomLora, writeSafetensors, type TestTensor } from './helpers.ts';

const UNET_MODULES = [
  'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k',
  'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj',
  'down_blocks.0.attentions.0.proj_in',
  'down_blocks.0.resnets.0.conv1',
  'up_blocks.1.resnets.0.time_emb_proj',
];
const TEXT_MODULES = ['text_model.encoder.layers.0.self_attn.q_proj', 'text_model.encoder.layers.1.mlp.fc2'];

/** A kohya LoRA for modules of a fixture model, shaped from the model's own weights. */
async function kohyaLora(path: string, model: ModelFolderInfo, modules: { unet?: string[]; text?: string[] }, seed: number, metadata?: Record<string, string>): Promise<string> {
  const tensors: Record<string, TestTensor> = {};
  for (const [prefix, file, list] of [
    ['lora_unet', model.paths.unet, modules.unet ?? []],
    ['lora_te', model.paths.textEncoder, modules.text ?? []],
  ] as const) {
    if (!list.length) continue;
    const index = new WeightIndex(decodeModel(new Uint8Array(await readFile(file))));
    list.forEach((module, i) => {
      const slot = index.get(module);
      assert.ok(slot, `${module} is not in the fixture`);
      const dims = slot.initializer.dims;
      const { down, up } = randomLora(seed * 100 + i, slot.transposed ? [dims[1], dims[0]] : dims, 4, 0.3);
      const key = `${prefix}_${module.replaceAll('.', '_')}`;
      Object.assign(tensors, { [`${key}.lora_down.weight`]: down, [`${key}.lora_up.weight`]: up, [`${key}.alpha`]: { shape: [], data: Float32Array.of(2) } });
    });
  }
  return writeSafetensors(path, tensors, metadata);
}

const PARAMS: GenerateParams = { prompt: 'a photo of a cat', steps: 2, scheduler: 'EULER', seed: 3 };

describe('LoRAs in the engine', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;
  let engine: Engine;
  let unetLora: string;
  let textLora: string;
  let base: GenerateResult;
  const run = async (params: Partial<GenerateParams>, info = model) => engine.run(info, await resolveRequest(info, { ...PARAMS, ...params }));

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('fp32');
    engine = new Engine({ runtime: { intraOpNumThreads: 1 } });
    unetLora = await kohyaLora(join(fixtures.root, 'unet-style.safetensors'), model, { unet: UNET_MODULES }, 1);
    textLora = await kohyaLora(join(fixtures.root, 'text-style.safetensors'), model, { text: TEXT_MODULES }, 2, { ss_base_model_version: 'sd_v1' });
    base = await run({});
  });
  after(async () => {
    await engine.close();
    await fixtures.remove();
  });

  test('a UNet LoRA and a text encoder LoRA each change the image, with no warning', async () => {
    for (const path of [unetLora, textLora]) {
      const result = await run({ loras: [{ name: 'style', path, weight: 1 }] });
      assertImage(result.images[0].image, 64, 64);
      assert.ok(maxAbsDiff(result.images[0].image.data, base.images[0].image.data) > 0.01);
      assert.deepEqual(result.warnings, []);
      assert.deepEqual(result.request.loras, [{ name: 'style', path, weight: 1 }]);
    }
    assert.deepEqual(base.warnings, []);
  });

  test('clip skip on a text encoder a LoRA changed in memory: its hidden states, not the file\'s', async () => {
    const plain = await StableDiffusionModel.load(model);
    const adapted = await StableDiffusionModel.load(model, {}, { loras: [{ name: 'style', path: textLora, weight: 1, unetWeight: 1 }], embeddings: [] });
    try {
      const ids = Int32Array.from([804, 12, 300, 805]);
      const encode = async (m: StableDiffusionModel, clipSkip: number) => (await m.encodeTokens(ids, clipSkip)).data;
      // The LoRA changes layer 0: clip skip 2 (layer 0's output of the fixture's 2 layers) sees it…
      assert.ok(maxAbsDiff(await encode(adapted, 2), await encode(plain, 2)) > 1e-3);
      // …clip skip 3 (the embeddings, before any layer) does not.
      assert.ok(maxAbsDiff(await encode(adapted, 3), await encode(plain, 3)) < 1e-6);
      assert.ok(maxAbsDiff(await encode(adapted, 1), await encode(plain, 1)) > 1e-3);
    } finally {
      await plain.release();
      await adapted.release();
    }
  });

  test('a weight of 0 leaves the model as it is', async () => {
    const result = await run({ loras: [{ name: 'style', path: unetLora, weight: 0 }] });
    assert.deepEqual(result.images[0].image.data, base.images[0].image.data);
  });

  test('modules that match nothing in the model come back as a warning', async () => {
    const path = join(fixtures.root, 'stray.safetensors');
    const { down, up } = randomLora(5, [64, 64, 1, 1], 2);
    await writeSafetensors(path, {
      'lora_unet_mid_block_attentions_0_proj_in.lora_down.weight': down,
      'lora_unet_mid_block_attentions_0_proj_in.lora_up.weight': up,
      'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': down,
      'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': up,
    });
    const result = await run({ loras: [{ name: 'sdxl-ish', path, weight: 1 }] });
    assert.deepEqual(result.warnings, [
      `LoRA "sdxl-ish": 2 of 2 modules match no layer of model ${model.id} (lora_unet_mid_block_attentions_0_proj_in, lora_te2_text_model_encoder_layers_0_mlp_fc1)`,
    ]);
    assert.deepEqual(result.images[0].image.data, base.images[0].image.data);
  });

  test('refuses pickles and a LoRA made for another family than the model', async () => {
    await assert.rejects(resolveRequest(model, { ...PARAMS, loras: [{ name: 'old', path: join(fixtures.root, 'old.ckpt'), weight: 1 }] }), diffusionError('BAD_USER_INPUT', /LoRA "old": only \.safetensors files are loaded; \.ckpt files are Python pickles/));
    await assert.rejects(run({ loras: [{ name: 'gone', path: join(fixtures.root, 'gone.safetensors'), weight: 1 }] }), diffusionError('BAD_USER_INPUT', /LoRA "gone": file .* not found/));
    const sd2: ModelFolderInfo = { ...model, family: 'SD2' };
    await assert.rejects(run({ loras: [{ name: 'text', path: textLora, weight: 1 }] }, sd2), diffusionError('BAD_USER_INPUT', /LoRA "text" was trained for SD1 .*; model fp32 is SD2/));
  });

  test('merges each LoRA set once: switching back uses the cached sessions', async () => {
    const load = StableDiffusionModel.load;
    const loads: string[] = [];
    StableDiffusionModel.load = (info, runtime, adapters, pool) => {
      loads.push(adapters ? adapters.loras.map((l) => `${l.name}@${l.weight}`).join('+') : 'bare');
      return load.call(StableDiffusionModel, info, runtime, adapters, pool);
    };
    try {
      const a = { loras: [{ name: 'unet', path: unetLora, weight: 0.7 }] };
      const b = { loras: [{ name: 'text', path: textLora, weight: 1 }, { name: 'unet', path: unetLora, weight: 0.5 }] };
      const first = await run(a);
      await run(b);
      const again = await run(a);
      // The same set given in another order is the same entry.
      await run({ loras: [...b.loras].reverse() });
      await run({});
      assert.deepEqual(loads, ['unet@0.7', 'text@1+unet@0.5']);
      assert.deepEqual(again.images[0].image.data, first.images[0].image.data);
    } finally {
      StableDiffusionModel.load = load;
    }
  });

  test('LoRA sets share the sessions their merge leaves unchanged', async () => {
    const load = StableDiffusionModel.load;
    const loaded = new Map<string, StableDiffusionModel>();
    StableDiffusionModel.load = async (info, runtime, adapters, pool) => {
      const result = await load.call(StableDiffusionModel, info, runtime, adapters, pool);
      loaded.set(adapters ? adapters.loras.map((l) => l.name).join('+') : 'bare', result);
      return result;
    };
    const own = new Engine({ runtime: { intraOpNumThreads: 1 } });
    try {
      for (const loras of [[], [{ name: 'unet', path: unetLora, weight: 1 }], [{ name: 'text', path: textLora, weight: 1 }]]) {
        await own.run(model, await resolveRequest(model, { ...PARAMS, loras }));
      }
    } finally {
      StableDiffusionModel.load = load;
      await own.close();
    }
    const [bare, unet, text] = ['bare', 'unet', 'text'].map((k) => loaded.get(k)!);
    assert.equal(unet.vaeDecoder, bare.vaeDecoder);
    assert.equal(unet.vaeEncoder, bare.vaeEncoder);
    assert.equal(unet.textEncoder, bare.textEncoder);
    assert.notEqual(unet.unet, bare.unet);
    assert.equal(text.vaeDecoder, bare.vaeDecoder);
    assert.equal(text.unet, bare.unet);
    assert.notEqual(text.textEncoder, bare.textEncoder);
  });

  test('a shared session is released with the last model that holds it', async () => {
    const pool = new SessionPool();
    const bare = await StableDiffusionModel.load(model, {}, undefined, pool);
    const adapted = await StableDiffusionModel.load(model, {}, normalizeAdapters([{ name: 'unet', path: unetLora, weight: 1 }]), pool);
    assert.equal(adapted.vaeDecoder, bare.vaeDecoder);
    const latents = { latent_sample: { data: new Float32Array(4 * 8 * 8), dims: [1, 4, 8, 8] } };
    await bare.release();
    await adapted.vaeDecoder.run(latents);
    await adapted.release();
    await assert.rejects(adapted.vaeDecoder.run(latents));
  });

  test('an fp16 model with external data takes LoRAs too', async () => {
    const fp16 = await fixtures.model('fp16', { precision: 'fp16', externalData: 'model.onnx_data' });
    const path = await kohyaLora(join(fixtures.root, 'fp16.safetensors'), fp16, { unet: UNET_MODULES, text: TEXT_MODULES }, 3);
    const plain = await run({}, fp16);
    const adapted = await run({ loras: [{ name: 'style', path, weight: 1 }] }, fp16);
    assertImage(adapted.images[0].image, 64, 64);
    assert.ok(maxAbsDiff(adapted.images[0].image.data, plain.images[0].image.data) > 0.01);
    assert.deepEqual(adapted.warnings, []);
  });
});
