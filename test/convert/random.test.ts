// Random-weight models of given architectures, and checkpoints written from them in the LDM layout:
// converting such a checkpoint must give exactly the graphs built directly from the same seed, for
// layouts the reference checkpoint does not cover (SD 2.x's OpenCLIP text encoder with its fused
// q/k/v and dropped last layer, linear projections, per-level head widths, 9-channel inpainting
// UNets, deeper transformers, fp16 storage), and the architecture read back must be the one written.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PipelineArch } from '../../src/diffusion/convert/architecture.ts';
import { inspectCheckpoint, readLdmConfig } from '../../src/diffusion/convert/checkpoint.ts';
import { convertCheckpoint } from '../../src/diffusion/convert/convert.ts';
import { buildRandomPipeline, buildRandomUNet, writeRandomCheckpoint } from '../../src/diffusion/convert/random.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';
import { loadTensorBytes } from '../../src/diffusion/onnx/external-data.ts';
import { DataType, decodeModel } from '../../src/diffusion/onnx/proto.ts';
import { checkpointRef } from '../helpers/checkpoint.ts';

const SUBMODELS = ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder'];

const tinySd2: PipelineArch = {
  family: 'SD2',
  unet: {
    inChannels: 4,
    outChannels: 4,
    blockOutChannels: [32, 64],
    layersPerBlock: 1,
    attention: [true, true],
    heads: [2, 4],
    transformerDepth: [1, 1],
    crossAttentionDim: 32,
    useLinearProjection: true,
    sampleSize: 8,
  },
  vae: { inChannels: 3, outChannels: 3, latentChannels: 4, blockOutChannels: [32, 32], layersPerBlock: 1, scalingFactor: 0.18215 },
  textEncoder: { vocabSize: 600, hiddenSize: 32, layers: 2, heads: 4, intermediateSize: 37, maxPositions: 77, activation: 'gelu', projectionDim: 512 },
  predictionType: 'v_prediction',
  betaStart: 0.00085,
  betaEnd: 0.012,
  trainTimesteps: 1000,
};
const SD2_YAML = 'model:\n  params:\n    parameterization: "v"\n    image_size: 8\n    unet_config:\n      params:\n        num_head_channels: 16\n        use_linear_in_transformer: true\n';

const tinyInpaint: PipelineArch = {
  ...tinySd2,
  family: 'SD1',
  unet: { ...tinySd2.unet, inChannels: 9, blockOutChannels: [32, 32, 64], layersPerBlock: 2, attention: [false, true, true], heads: [8, 8, 8], transformerDepth: [2, 2, 2], useLinearProjection: false },
  vae: { ...tinySd2.vae, blockOutChannels: [32, 64, 64], layersPerBlock: 2 },
  textEncoder: { ...tinySd2.textEncoder, activation: 'quick_gelu', projectionDim: 32 },
  predictionType: 'epsilon',
};

/** Asserts that two pipeline folders' graphs have the same nodes and byte-identical weights. */
function assertSameGraphs(actualDir: string, expectedDir: string): Promise<void[]> {
  return Promise.all(
    SUBMODELS.map(async (submodel) => {
      const read = (dir: string) => ({ dir: join(dir, submodel), model: decodeModel(readFileSync(join(dir, submodel, 'model.onnx'))) });
      const actual = read(actualDir);
      const expected = read(expectedDir);
      assert.deepEqual(actual.model.graph.node.map((n) => n.name), expected.model.graph.node.map((n) => n.name), submodel);
      assert.equal(actual.model.graph.initializer.length, expected.model.graph.initializer.length);
      for (const [i, t] of expected.model.graph.initializer.entries()) {
        const a = await loadTensorBytes(actual.model.graph.initializer[i], actual.dir);
        assert.ok(Buffer.from(a).equals(Buffer.from(await loadTensorBytes(t, expected.dir))), `${submodel} ${t.name}`);
      }
    }),
  );
}

describe('random-weight models and checkpoints', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'sdql-random-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('an SD 2.x checkpoint (OpenCLIP, linear projections, head width 64→16 from its yaml, v-prediction) converts to the graphs of the same weights', async () => {
    const file = join(work, 'sd2.safetensors');
    await writeRandomCheckpoint(file, tinySd2, { seed: 5 });
    writeFileSync(join(work, 'sd2.yaml'), SD2_YAML);
    const info = await convertCheckpoint(file, join(work, 'sd2.yaml'), join(work, 'sd2'), { vocabDir: checkpointRef.vocabDir });
    assert.deepEqual(info.arch, tinySd2);
    assert.equal(info.textLayout, 'open-clip');
    await buildRandomPipeline(join(work, 'sd2-direct'), tinySd2, { seed: 5 });
    await assertSameGraphs(join(work, 'sd2'), join(work, 'sd2-direct'));
    const folder = await inspectModelFolder(join(work, 'sd2'));
    assert.equal(folder.error, undefined);
    assert.equal(folder.predictionType, 'v_prediction');
    const tokenizerConfig = JSON.parse(readFileSync(join(work, 'sd2', 'tokenizer', 'tokenizer_config.json'), 'utf8'));
    assert.equal(tokenizerConfig.pad_token, '!', "SD 2.x's tokenizer pads with !");
    // The converted UNet runs.
    const unet = await OnnxModel.load(folder.paths.unet);
    try {
      const out = await unet.run({
        sample: { data: new Float32Array(2 * 4 * 8 * 8).fill(0.1), dims: [2, 4, 8, 8] },
        timestep: { data: Float32Array.of(10, 10), dims: [2] },
        encoder_hidden_states: { data: new Float32Array(2 * 77 * 32).fill(0.2), dims: [2, 77, 32] },
      });
      assert.deepEqual([...out.out_sample.dims], [2, 4, 8, 8]);
      assert.ok(out.out_sample.data.every(Number.isFinite));
    } finally {
      await unet.release();
    }
  });

  test('a 9-channel fp16 SD 1.x checkpoint without yaml: the architecture inferred from its tensors is the one written', async () => {
    const file = join(work, 'inpaint.safetensors');
    await writeRandomCheckpoint(file, tinyInpaint, { seed: 7, dtype: 'F16' });
    const info = await convertCheckpoint(file, join(work, 'none.yaml'), join(work, 'inpaint'), { vocabDir: checkpointRef.vocabDir });
    assert.deepEqual(info.arch, { ...tinyInpaint, unet: { ...tinyInpaint.unet, sampleSize: 64 } });
    assert.equal(info.storedPrecision, 'fp16');
    const folder = await inspectModelFolder(join(work, 'inpaint'));
    assert.equal(folder.unetInChannels, 9);
    assert.equal(folder.error, undefined);
  });

  const xlUnet = { ...tinySd2.unet, addition: { timeEmbedDim: 8, projectionInputDim: 16 + 6 * 8 } };
  /** The UNet's output on fixed inputs with SDXL's micro-conditioning `timeIds`. */
  const runXl = (unet: OnnxModel, timeIds: number[]) =>
    unet.run({
      sample: { data: new Float32Array(4 * 8 * 8).map((_, i) => Math.sin(i)), dims: [1, 4, 8, 8] },
      timestep: { data: Float32Array.of(10), dims: [1] },
      encoder_hidden_states: { data: new Float32Array(77 * 32).fill(0.2), dims: [1, 77, 32] },
      text_embeds: { data: new Float32Array(16).fill(0.3), dims: [1, 16] },
      time_ids: { data: Float32Array.from(timeIds), dims: [1, 6] },
    }).then((out) => out.out_sample.data);

  test("a UNet with SDXL's text_time addition embedding takes text_embeds and time_ids, and they change its output", async () => {
    const dir = join(work, 'xl-unet');
    await buildRandomUNet(dir, xlUnet, { seed: 3 });
    const unet = await OnnxModel.load(join(dir, 'model.onnx'));
    try {
      const a = await runXl(unet, [64, 64, 0, 0, 64, 64]);
      const b = await runXl(unet, [32, 32, 0, 0, 64, 64]);
      assert.ok(a.every(Number.isFinite));
      assert.ok(a.some((v, i) => v !== b[i]), 'time_ids reach the output');
    } finally {
      await unet.release();
    }
  });

  test('an fp16 UNet alone is float16 in its weights, inputs and outputs, as Optimum exports it, and computes what the fp32 one does', async () => {
    const dir = join(work, 'xl-unet-fp16');
    await buildRandomUNet(dir, xlUnet, { seed: 3, precision: 'fp16' });
    await buildRandomUNet(join(work, 'xl-unet-fp32'), xlUnet, { seed: 3 });
    const model = decodeModel(readFileSync(join(dir, 'model.onnx')));
    for (const v of [...model.graph.input, ...model.graph.output]) assert.equal(v.type?.tensorType?.elemType, DataType.FLOAT16, v.name);
    // All but the timestep projections' frequencies, which stay float32 as diffusers computes them.
    const float32 = new Set(model.graph.initializer.filter((t) => t.dataType === DataType.FLOAT).map((t) => t.name));
    const users = model.graph.node.filter((n) => n.input.some((i) => float32.has(i))).map((n) => n.name);
    assert.deepEqual(users, ['/time_proj/Mul', '/add_time_proj/Mul']);
    assert.ok(model.graph.initializer.filter((t) => t.dataType === DataType.FLOAT16).length > 50, 'the weights are float16');
    const [fp16, fp32] = [await OnnxModel.load(join(dir, 'model.onnx')), await OnnxModel.load(join(work, 'xl-unet-fp32', 'model.onnx'))];
    try {
      const timeIds = [64, 64, 0, 0, 64, 64];
      const [half, full] = [await runXl(fp16, timeIds), await runXl(fp32, timeIds)];
      const scale = Math.max(...full.map(Math.abs));
      const worst = Math.max(...full.map((v, i) => Math.abs(v - half[i])));
      // Weights rounded to 11 significant bits and float16 activations: off by a few thousandths of the output's range.
      assert.ok(worst <= 0.02 * scale, `off by ${worst} for outputs up to ${scale}`);
    } finally {
      await Promise.all([fp16.release(), fp32.release()]);
    }
  });

  test('a text encoder of no standard width needs its head count in __metadata__ or the yaml', async () => {
    const arch = { ...tinyInpaint, textEncoder: { ...tinyInpaint.textEncoder, hiddenSize: 48, heads: 6 } };
    const file = join(work, 'odd.safetensors');
    await writeRandomCheckpoint(file, arch);
    await assert.rejects(inspectCheckpoint(file), /cannot tell the text encoder's attention heads: its width 48 is not a standard CLIP width/);
    const tagged = join(work, 'tagged.safetensors');
    await writeRandomCheckpoint(tagged, arch, { metadata: { 'text_encoder.num_attention_heads': '6' } });
    assert.equal((await inspectCheckpoint(tagged)).arch.textEncoder.heads, 6);
    writeFileSync(join(work, 'odd.yaml'), 'model:\n  params:\n    cond_stage_config:\n      params:\n        num_attention_heads: 3\n');
    assert.equal((await inspectCheckpoint(file, await readLdmConfig(join(work, 'odd.yaml')))).arch.textEncoder.heads, 3);
  });
});
