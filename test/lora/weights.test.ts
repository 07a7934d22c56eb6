// Finding module weights in exported graphs: by parameter name, and for the anonymous transposed MatMul
// weights through node names, including exports that leave a module level out of the node names.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { WeightIndex } from '../../src/diffusion/lora/weights.ts';
import { GraphBuilder } from '../../src/diffusion/onnx/builder.ts';
import { DataType, decodeModel } from '../../src/diffusion/onnx/proto.ts';
import { readSafetensorsHeader } from '../../src/diffusion/safetensors.ts';
import { referenceDir } from '../helpers/reference.ts';

const f32 = (n: number) => new Float32Array(n);

test('maps node scopes to modules through named parameters, even where the exporter left a level out', () => {
  // As torch.onnx exports CLIPTextModel: nodes under /text_model/layers.0/…, parameters under
  // text_model.encoder.layers.0.….
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [1, 2, 4]);
  const linear = (scope: string, input: string, bias?: string) => {
    const y = g.op(scope, 'MatMul', [input, g.anonymous('MatMul', DataType.FLOAT, [4, 4], f32(16))]);
    return bias ? g.op(scope, 'Add', [g.initializer(bias, DataType.FLOAT, [4], f32(4)), y]) : y;
  };
  let h = g.op('/text_model/layers.0/layer_norm1', 'Mul', [x, g.initializer('text_model.encoder.layers.0.layer_norm1.weight', DataType.FLOAT, [4], f32(4))]);
  h = linear('/text_model/layers.0/self_attn/q_proj', h, 'text_model.encoder.layers.0.self_attn.q_proj.bias');
  h = linear('/text_model/layers.0/self_attn/k_proj', h);
  h = linear('/text_model/layers.0/mlp/fc1', h);
  h = linear('/text_model/final_layer_norm', h, 'text_model.final_layer_norm.bias');
  // Two weighted MatMuls in one scope: neither can be told to be the module's.
  h = linear('/text_model/layers.0/mlp/fc2', h);
  g.op('/text_model/layers.0/mlp/fc2', 'Identity', [linear('/text_model/layers.0/mlp/fc2', h)], [], 'y');
  g.output('y', DataType.FLOAT, [1, 2, 4]);

  const index = new WeightIndex(g.model(14));
  const anonymous = (module: string) => {
    const slot = index.get(module);
    assert.ok(slot, `${module} not found`);
    assert.match(slot.initializer.name, /^onnx::MatMul_/);
    assert.equal(slot.transposed, true);
    assert.equal(slot.shared, false);
    return slot.node.name;
  };
  assert.equal(anonymous('text_model.encoder.layers.0.self_attn.q_proj'), '/text_model/layers.0/self_attn/q_proj/MatMul');
  assert.equal(anonymous('text_model.encoder.layers.0.self_attn.k_proj'), '/text_model/layers.0/self_attn/k_proj/MatMul');
  assert.equal(anonymous('text_model.encoder.layers.0.mlp.fc1'), '/text_model/layers.0/mlp/fc1/MatMul');
  assert.equal(anonymous('text_model.final_layer_norm'), '/text_model/final_layer_norm/MatMul');
  assert.equal(index.getFlat('text_model_encoder_layers_0_mlp_fc1')?.node.name, '/text_model/layers.0/mlp/fc1/MatMul');
  assert.equal(index.get('text_model.encoder.layers.0.mlp.fc2'), undefined);
  assert.equal(index.get('text_model.layers.0.self_attn.q_proj'), undefined);
});

test('Gemm weights are found by name, stored as torch holds them unless transB is 0', () => {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [1, 4]);
  const w = g.initializer('time_embedding.linear_1.weight', DataType.FLOAT, [8, 4], f32(32));
  const h = g.op('/time_embedding/linear_1', 'Gemm', [x, w], [{ name: 'transB', type: 2, i: 1n, floats: [], ints: [], strings: [] }]);
  const w2 = g.initializer('time_embedding.linear_2.weight', DataType.FLOAT, [8, 8], f32(64));
  g.op('/time_embedding/linear_2', 'Gemm', [h, w2], [], 'y');
  g.output('y', DataType.FLOAT, [1, 8]);
  const index = new WeightIndex(g.model(14));
  assert.equal(index.get('time_embedding.linear_1')?.transposed, false);
  assert.equal(index.get('time_embedding.linear_2')?.transposed, true);
});

test('finds every layer the reference LoRA adapts, and every text encoder projection, in the reference exports', async () => {
  const models = join(referenceDir, 'models', 'tiny-sd');
  const unet = new WeightIndex(decodeModel(readFileSync(join(models, 'unet', 'model.onnx'))));
  const header = await readSafetensorsHeader(join(referenceDir, 'loras', 'tiny-style.safetensors'));
  const modules = new Set(Object.keys(header.tensors).map((k) => k.slice('lora_unet_'.length, k.indexOf('.'))));
  assert.equal(modules.size, 72);
  for (const module of modules) assert.ok(unet.getFlat(module), `${module} not found`);
  assert.equal(unet.get('down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k')?.node.name, '/down_blocks.1/attentions.0/transformer_blocks.0/attn2/to_k/MatMul');
  assert.equal(unet.get('down_blocks.0.resnets.0.conv1')?.initializer.name, 'down_blocks.0.resnets.0.conv1.weight');

  const textEncoder = new WeightIndex(decodeModel(readFileSync(join(models, 'text_encoder', 'model.onnx'))));
  for (let layer = 0; layer < 5; layer++) {
    for (const proj of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1', 'mlp.fc2']) {
      const slot = textEncoder.get(`text_model.encoder.layers.${layer}.${proj}`);
      assert.equal(slot?.node.name, `/text_model/layers.${layer}/${proj.replace('.', '/')}/MatMul`);
    }
  }
  assert.equal(textEncoder.get('text_model.embeddings.token_embedding')?.node.opType, 'Gather');
});

test("kohya's flattened names find a wrapped export's modules by their one matching ending, never a guess between two", () => {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [1, 4, 2, 2]);
  let h = x;
  for (const name of ['te.text_model.encoder.layers.0.mlp.fc1', 'a.blocks.0.conv', 'b.blocks.0.conv']) {
    h = g.op(`/${name.replaceAll('.', '/')}`, 'Conv', [h, g.initializer(`${name}.weight`, DataType.FLOAT, [4, 4, 1, 1], f32(16))]);
  }
  g.op('', 'Identity', [h], [], 'y');
  g.output('y', DataType.FLOAT, [1, 4, 2, 2]);
  const index = new WeightIndex(g.model(14));
  assert.equal(index.getFlat('text_model_encoder_layers_0_mlp_fc1')?.module, 'te.text_model.encoder.layers.0.mlp.fc1');
  assert.equal(index.getFlat('te_text_model_encoder_layers_0_mlp_fc1')?.module, 'te.text_model.encoder.layers.0.mlp.fc1');
  assert.equal(index.getFlat('blocks_0_conv'), undefined, 'two modules end so');
  assert.equal(index.getFlat('a_blocks_0_conv')?.module, 'a.blocks.0.conv');
  assert.equal(index.getFlat('encoder_layers_0_mlp_fc2'), undefined);
});
