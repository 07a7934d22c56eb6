// Reading LoRA files: the key formats, pickles refused unread, files that are no LoRA, and the base
// model family check.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { checkLoraFamily, readLora } from '../../src/diffusion/lora/lora-file.ts';
import { diffusionError } from '../engine/helpers.ts';
import { randomLora, writeSafetensors } from './helpers.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sdql-lora-file-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const pair = randomLora(1, [4, 4], 2);

test('groups kohya keys by component and module, with their alpha', async () => {
  const path = await writeSafetensors(join(dir, 'kohya.safetensors'), {
    'lora_unet_mid_block_attentions_0_proj_in.lora_down.weight': pair.down,
    'lora_unet_mid_block_attentions_0_proj_in.lora_up.weight': pair.up,
    'lora_unet_mid_block_attentions_0_proj_in.alpha': { shape: [], data: Float32Array.of(1) },
    'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': pair.down,
    'lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': pair.up,
    'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight': pair.down,
    'lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight': pair.up,
    'lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a': pair.down,
    'lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_b': pair.up,
  });
  const lora = await readLora('kohya', path);
  const modules = lora.modules.map(({ component, module, flat, alpha }) => ({ component, module, flat, alpha }));
  assert.deepEqual(
    modules.sort((a, b) => (a.module + a.component < b.module + b.component ? -1 : 1)),
    [
      { component: 'unet', module: 'mid_block_attentions_0_proj_in', flat: true, alpha: 1 },
      { component: 'text_encoder', module: 'text_model_encoder_layers_0_mlp_fc1', flat: true, alpha: undefined },
      { component: 'text_encoder_2', module: 'text_model_encoder_layers_0_mlp_fc1', flat: true, alpha: undefined },
    ],
  );
  assert.deepEqual(lora.unsupported, ['lora_unet_down_blocks_0_resnets_0_conv1']);
  assert.equal(lora.family, undefined);
});

test('reads diffusers and PEFT keys, with or without the unet. prefix', async () => {
  const path = await writeSafetensors(join(dir, 'peft.safetensors'), {
    'unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight': pair.down,
    'unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight': pair.up,
    'text_encoder.text_model.encoder.layers.1.self_attn.out_proj.lora_linear_layer.down.weight': pair.down,
    'text_encoder.text_model.encoder.layers.1.self_attn.out_proj.lora_linear_layer.up.weight': pair.up,
    'text_encoder.text_model.encoder.layers.2.self_attn.to_q_lora.down.weight': pair.down,
    'text_encoder.text_model.encoder.layers.2.self_attn.to_q_lora.up.weight': pair.up,
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight': pair.down,
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight': pair.up,
  });
  const lora = await readLora('peft', path);
  assert.deepEqual(lora.modules.map((m) => `${m.component}:${m.module}`).sort(), [
    'text_encoder:text_model.encoder.layers.1.self_attn.out_proj',
    'text_encoder:text_model.encoder.layers.2.self_attn.q_proj',
    'unet:down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0',
    'unet:up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k',
  ]);
  assert.ok(lora.modules.every((m) => !m.flat && m.alpha === undefined));
});

test('refuses pickles without reading them, and files that hold no LoRA', async () => {
  // A pickle would run this if unpickled; it must not even be opened.
  const pickle = join(dir, 'evil.ckpt');
  await writeFile(pickle, 'cos\nsystem\n(S"echo pwned"\ntR.');
  await assert.rejects(readLora('evil', pickle), diffusionError('BAD_USER_INPUT', /only \.safetensors.*\.ckpt files are Python pickles/));
  await assert.rejects(readLora('evil', join(dir, 'missing.pt')), diffusionError('BAD_USER_INPUT', /\.pt files are Python pickles/));
  const renamed = join(dir, 'renamed.safetensors');
  await writeFile(renamed, 'cos\nsystem\n(S"echo pwned"\ntR.');
  await assert.rejects(readLora('renamed', renamed), diffusionError('BAD_USER_INPUT', /LoRA "renamed" could not be read/));
  const model = await writeSafetensors(join(dir, 'model.safetensors'), { 'model.diffusion_model.out.2.weight': pair.down });
  await assert.rejects(readLora('model', model), diffusionError('BAD_USER_INPUT', /holds no LoRA weights/));
  const broken = await writeSafetensors(join(dir, 'broken.safetensors'), { 'lora_unet_a.lora_down.weight': pair.down, 'lora_unet_a.lora_up.weight': pair.down });
  await assert.rejects(readLora('broken', broken), diffusionError('BAD_USER_INPUT', /do not multiply/));
});

test('refuses a LoRA whose ss_base_model_version contradicts a known model family, and nothing for an unknown family', async () => {
  const tensors = { 'lora_unet_a.lora_down.weight': pair.down, 'lora_unet_a.lora_up.weight': pair.up };
  const sd1 = await readLora('sd1', await writeSafetensors(join(dir, 'sd1.safetensors'), tensors, { ss_base_model_version: 'sd_v1' }));
  const sd2v = await readLora('sd2', await writeSafetensors(join(dir, 'sd2.safetensors'), tensors, { ss_base_model_version: 'sd_v2_v' }));
  const xl = await readLora('xl', await writeSafetensors(join(dir, 'xl.safetensors'), tensors, { ss_base_model_version: 'sdxl_base_v1-0' }));
  const other = await readLora('other', await writeSafetensors(join(dir, 'other.safetensors'), tensors, { ss_base_model_version: 'flux1' }));
  assert.deepEqual([sd1.family, sd2v.family, xl.family, other.family], ['SD1', 'SD2', 'SDXL', undefined]);
  assert.throws(() => checkLoraFamily(sd1.name, sd1.baseModelVersion, { id: 'sd21', family: 'SD2' }), diffusionError('BAD_USER_INPUT', /LoRA "sd1" was trained for SD1 \(ss_base_model_version sd_v1\); model sd21 is SD2/));
  assert.throws(() => checkLoraFamily(xl.name, xl.baseModelVersion, { id: 'sd15', family: 'SD1' }), diffusionError('BAD_USER_INPUT', /SDXL/));
  checkLoraFamily(sd1.name, sd1.baseModelVersion, { id: 'sd15', family: 'SD1' });
  checkLoraFamily(sd1.name, sd1.baseModelVersion, { id: 'tiny', family: 'UNKNOWN' });
  checkLoraFamily(other.name, other.baseModelVersion, { id: 'sd15', family: 'SD1' });
});
