// The merge, checked against direct computations: the merged weights against W + scale·(alpha/rank)·up·down
// computed plainly, and onnxruntime sessions of the merged model against the unmerged LoRA forward pass
// (diffusers' W·x + scale·up(down(x))), for a Linear (transposed MatMul weight), a 1×1 and a 3×3
// convolution, in fp32 and fp16.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Precision } from '../../src/diffusion/fixtures/net.ts';
import { mergeLoras } from '../../src/diffusion/lora/adapt.ts';
import { readLora } from '../../src/diffusion/lora/lora-file.ts';
import { LoraMerger } from '../../src/diffusion/lora/merge.ts';
import { ModelEditor } from '../../src/diffusion/lora/model-editor.ts';
import { float32ToFloat16, float16ToFloat32 } from '../../src/diffusion/onnx/float16.ts';
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';
import { moveToExternalData } from '../../src/diffusion/onnx/external-data.ts';
import { DataType, encodeModel, type ModelProto } from '../../src/diffusion/onnx/proto.ts';
import { GraphBuilder } from '../../src/diffusion/onnx/builder.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { TINY_INPUT, TINY_LAYERS, bufferTensor, mergedDirectly, nodeInput, randomLora, tensorValues, tinyModel, transpose, writeSafetensors, type TestTensor } from './helpers.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sdql-lora-merge-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const RANK = 3;
const ALPHA = 2;
const WEIGHT = 0.8;
const SCALE = WEIGHT * (ALPHA / RANK);

/** One LoRA for each layer of the tiny model, with the factors the tests compute with. */
const FACTORS = {
  conv3x3: randomLora(1, [...TINY_LAYERS.conv3x3.shape], RANK),
  conv1x1: randomLora(2, [...TINY_LAYERS.conv1x1.shape], RANK),
  linear: randomLora(3, [...TINY_LAYERS.linear.shape], RANK),
};
type Layer = keyof typeof FACTORS;
const LAYERS = Object.keys(FACTORS) as Layer[];

async function writeModel(name: string, model: ModelProto, externalData = false): Promise<string> {
  const path = join(dir, `${name}.onnx`);
  if (externalData) await writeFile(join(dir, `${name}.onnx_data`), moveToExternalData(model, `${name}.onnx_data`, 0));
  await writeFile(path, encodeModel(model));
  return path;
}

function kohyaTensors(alpha: number | undefined = ALPHA): Record<string, TestTensor> {
  const tensors: Record<string, TestTensor> = {};
  for (const layer of LAYERS) {
    const key = `lora_unet_${TINY_LAYERS[layer].module.replaceAll('.', '_')}`;
    tensors[`${key}.lora_down.weight`] = FACTORS[layer].down;
    tensors[`${key}.lora_up.weight`] = FACTORS[layer].up;
    if (alpha !== undefined) tensors[`${key}.alpha`] = { shape: [], data: Float32Array.of(alpha) };
  }
  return tensors;
}

async function merge(modelPath: string, loraPath: string, weight = WEIGHT, maxModelBytes?: number) {
  const editor = await ModelEditor.open(modelPath);
  const reports = await mergeLoras(editor, 'unet', [{ file: await readLora('test', loraPath), weight }]);
  return { editor, reports, buffer: await editor.toBuffer(maxModelBytes) };
}

// ---- the forward pass, computed directly in float64 ----

function conv2d(x: ArrayLike<number>, [c, h, w]: number[], weight: ArrayLike<number>, [o, , k]: number[], bias?: ArrayLike<number>): Float64Array {
  const pad = (k - 1) / 2;
  const out = new Float64Array(o * h * w);
  for (let oc = 0; oc < o; oc++) {
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        let sum = bias ? bias[oc] : 0;
        for (let ic = 0; ic < c; ic++) {
          for (let dy = 0; dy < k; dy++) {
            for (let dx = 0; dx < k; dx++) {
              const sy = y + dy - pad;
              const sx = xx + dx - pad;
              if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
              sum += x[(ic * h + sy) * w + sx] * weight[((oc * c + ic) * k + dy) * k + dx];
            }
          }
        }
        out[(oc * h + y) * w + xx] = sum;
      }
    }
  }
  return out;
}

/** rows × inner · inner × cols. */
function matmul(a: ArrayLike<number>, b: ArrayLike<number>, rows: number, inner: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let k = 0; k < inner; k++) for (let j = 0; j < cols; j++) out[i * cols + j] += a[i * inner + k] * b[k * cols + j];
  return out;
}

const add = (a: Float64Array, b: Float64Array, scale: number) => a.map((v, i) => v + scale * b[i]);

/** The tiny model's output with each LoRA branch added unmerged, as diffusers runs it. */
async function unmergedForward(model: ModelProto, x: Float32Array, scale: number): Promise<Float64Array> {
  const values = async (name: string) => tensorValues(model.graph.initializer.find((t) => t.name === name)!, dir);
  const { conv3x3, conv1x1 } = TINY_LAYERS;
  const conv = async (input: Float64Array | Float32Array, shape: number[], module: string, wShape: readonly number[], lora: { down: TestTensor; up: TestTensor }) => {
    const base = conv2d(input, shape, await values(`${module}.weight`), [...wShape], await values(`${module}.bias`));
    const down = conv2d(input, shape, lora.down.data, lora.down.shape);
    return add(base, conv2d(down, [RANK, shape[1], shape[2]], lora.up.data, lora.up.shape), scale);
  };
  const h1 = await conv(x, [4, 5, 5], conv3x3.module, conv3x3.shape, FACTORS.conv3x3);
  const h2 = await conv(h1, [6, 5, 5], conv1x1.module, conv1x1.shape, FACTORS.conv1x1);
  const tokens = transpose(h2, 8, 25);
  const weight = await values(nodeInput(model, '/blocks.0/attn/to_q/MatMul', 1)); // [in, out]
  const base = matmul(tokens, weight, 25, 8, 12);
  const down = matmul(tokens, transpose(FACTORS.linear.down.data, RANK, 8), 25, 8, RANK);
  return add(base, matmul(down, transpose(FACTORS.linear.up.data, 12, RANK), 25, RANK, 12), scale);
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

test('LoraMerger adds scale·up·down to row-major and to transposed weights', async () => {
  const rng = new TorchGenerator(11);
  const [out, fanIn, rank] = [5, 7, 2];
  const up = { shape: [out, rank], data: rng.randn(out * rank) };
  const down = { shape: [rank, fanIn], data: rng.randn(rank * fanIn) };
  const other = { up: rng.randn(out * 1), down: rng.randn(1 * fanIn) };
  const weight = rng.randn(out * fanIn);
  const expected = mergedDirectly(Float32Array.from(mergedDirectly(weight, up, down, 0.3)), { shape: [out, 1], data: other.up }, { shape: [1, fanIn], data: other.down }, -1.5);
  const updates = [
    { up: up.data, down: down.data, rank, scale: 0.3 },
    { up: other.up, down: other.down, rank: 1, scale: -1.5 },
  ];
  const merger = await LoraMerger.create();
  try {
    const rowMajor = await merger.merge(weight, out, fanIn, false, updates);
    assert.ok(maxAbsDiff(rowMajor, expected) < 1e-5);
    const stored = await merger.merge(Float32Array.from(transpose(weight, out, fanIn)), out, fanIn, true, updates);
    assert.ok(maxAbsDiff(stored, transpose(expected, out, fanIn)) < 1e-5);
    assert.ok(maxAbsDiff(rowMajor, weight) > 0.1, 'the update is not negligible');
  } finally {
    await merger.release();
  }
});

for (const precision of ['fp32', 'fp16'] as Precision[]) {
  describe(`a kohya LoRA merged into an ${precision} model`, () => {
    let model: ModelProto;
    let modelPath: string;
    let merged: Awaited<ReturnType<typeof merge>>;
    before(async () => {
      model = tinyModel(precision);
      modelPath = await writeModel(`tiny-${precision}`, model);
      const loraPath = await writeSafetensors(join(dir, `kohya-${precision}.safetensors`), kohyaTensors());
      merged = await merge(modelPath, loraPath);
    });

    test('every layer finds its weight, named or anonymous', () => {
      assert.deepEqual(merged.reports, [{ unmatched: [], misfit: [] }]);
    });

    for (const layer of LAYERS) {
      test(`the ${layer} weight is W + weight·(alpha/rank)·up·down`, async () => {
        const { module, shape } = TINY_LAYERS[layer];
        const name = layer === 'linear' ? nodeInput(model, '/blocks.0/attn/to_q/MatMul', 1) : `${module}.weight`;
        const original = await tensorValues(model.graph.initializer.find((t) => t.name === name)!, dir);
        const { tensor, values } = await bufferTensor(merged.buffer, name);
        assert.equal(tensor.dataType, precision === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT);
        const [out, ...fanIn]: number[] = [...shape];
        const fan = fanIn.reduce((a, b) => a * b, 1);
        // The MatMul holds the weight transposed: compare in torch's layout.
        const torchOriginal = layer === 'linear' ? Float32Array.from(transpose(original, fan, out)) : original;
        const torchMerged = layer === 'linear' ? transpose(values, fan, out) : values;
        const expected = mergedDirectly(torchOriginal, FACTORS[layer].up, FACTORS[layer].down, SCALE);
        // fp16 stores the float32 result rounded to half precision: compare with that rounding.
        const rounded = precision === 'fp16' ? float16ToFloat32(float32ToFloat16(Float32Array.from(expected))) : Float32Array.from(expected);
        const tolerance = precision === 'fp16' ? maxAbs(expected) * 2 ** -11 : 1e-5;
        assert.ok(maxAbsDiff(torchMerged, rounded) <= tolerance, `largest difference ${maxAbsDiff(torchMerged, rounded)}`);
        assert.ok(maxAbsDiff(torchMerged, torchOriginal) > 0.05, 'the LoRA changed the weight');
      });
    }

    test('a session of the merged model computes the unmerged LoRA forward pass', async () => {
      const session = await OnnxModel.fromBuffer(modelPath, merged.buffer);
      try {
        const x = new TorchGenerator(5).randn(TINY_INPUT.reduce((a, b) => a * b, 1));
        const { y } = await session.run({ x: { data: x, dims: TINY_INPUT } });
        const expected = await unmergedForward(model, precision === 'fp16' ? float16ToFloat32(float32ToFloat16(x)) : x, SCALE);
        const base = await unmergedForward(model, x, 0);
        const tolerance = precision === 'fp16' ? 2e-2 * maxAbs(expected) : 1e-4;
        assert.ok(maxAbsDiff(y.data, expected) <= tolerance, `largest difference ${maxAbsDiff(y.data, expected)} (output up to ${maxAbs(expected)})`);
        assert.ok(maxAbsDiff(expected, base) > 20 * tolerance, 'the LoRA changes the output well beyond the tolerance');
      } finally {
        await session.release();
      }
    });
  });
}

describe('LoRA file formats', () => {
  let modelPath: string;
  let kohya: Uint8Array[];
  const weights = async (buffer: Awaited<ReturnType<typeof merge>>['buffer'], model: ModelProto) => {
    const names = [`${TINY_LAYERS.conv3x3.module}.weight`, `${TINY_LAYERS.conv1x1.module}.weight`, nodeInput(model, '/blocks.0/attn/to_q/MatMul', 1)];
    return Promise.all(names.map(async (name) => new Uint8Array((await bufferTensor(buffer, name)).values.buffer)));
  };
  let model: ModelProto;
  before(async () => {
    model = tinyModel('fp32');
    modelPath = await writeModel('formats', model);
    // alpha = rank is the scale diffusers' formats imply when they carry no alpha.
    kohya = await weights((await merge(modelPath, await writeSafetensors(join(dir, 'k.safetensors'), kohyaTensors(RANK)))).buffer, model);
  });

  const formats: Record<string, (module: string, layer: Layer) => Record<string, TestTensor>> = {
    'PEFT (lora_A / lora_B)': (m, l) => ({ [`unet.${m}.lora_A.weight`]: FACTORS[l].down, [`unet.${m}.lora_B.weight`]: FACTORS[l].up }),
    'diffusers LoRACompatible (.lora.down / .lora.up)': (m, l) => ({ [`unet.${m}.lora.down.weight`]: FACTORS[l].down, [`unet.${m}.lora.up.weight`]: FACTORS[l].up }),
    'kohya without alpha': (m, l) => ({ [`lora_unet_${m.replaceAll('.', '_')}.lora_down.weight`]: FACTORS[l].down, [`lora_unet_${m.replaceAll('.', '_')}.lora_up.weight`]: FACTORS[l].up }),
    'kohya in fp16 and bf16 with alpha = rank': (m, l) => {
      const key = `lora_unet_${m.replaceAll('.', '_')}`;
      return { [`${key}.lora_down.weight`]: { ...FACTORS[l].down, dtype: 'BF16' }, [`${key}.lora_up.weight`]: { ...FACTORS[l].up, dtype: 'F16' }, [`${key}.alpha`]: { shape: [], data: Float32Array.of(RANK), dtype: 'F16' } };
    },
  };
  for (const [format, keys] of Object.entries(formats)) {
    test(`${format} merges as kohya's format does`, async () => {
      const tensors = Object.assign({}, ...LAYERS.map((l) => keys(TINY_LAYERS[l].module, l)));
      const { buffer, reports } = await merge(modelPath, await writeSafetensors(join(dir, 'f.safetensors'), tensors));
      assert.deepEqual(reports, [{ unmatched: [], misfit: [] }]);
      const got = await weights(buffer, model);
      if (format.includes('fp16')) {
        // Half-precision factors: the same update up to their rounding.
        for (let i = 0; i < got.length; i++) assert.ok(maxAbsDiff(new Float32Array(got[i].buffer), new Float32Array(kohya[i].buffer)) < 0.02);
      } else {
        assert.deepEqual(got, kohya);
      }
    });
  }

  test('the old attention-processor names reach the projections', async () => {
    const processorModel = new GraphBuilder();
    const x = processorModel.input('x', DataType.FLOAT, [1, 2, 4]);
    const w = processorModel.anonymous('MatMul', DataType.FLOAT, [4, 4], new TorchGenerator(3).randn(16));
    processorModel.op('/mid_block/attentions.0/transformer_blocks.0/attn1/to_out.0', 'MatMul', [x, w], [], 'y');
    processorModel.output('y', DataType.FLOAT, [1, 2, 4]);
    const path = await writeModel('processor', processorModel.model(14));
    const lora = randomLora(9, [4, 4], 2);
    const key = 'unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora';
    const { reports } = await merge(path, await writeSafetensors(join(dir, 'p.safetensors'), { [`${key}.down.weight`]: lora.down, [`${key}.up.weight`]: lora.up }));
    assert.deepEqual(reports, [{ unmatched: [], misfit: [] }]);
  });

  test('modules that match no layer, or a layer of another shape, are reported', async () => {
    const stray = randomLora(4, [8, 8], 2);
    const wrong = randomLora(5, [9, 8], 2);
    const tensors: Record<string, TestTensor> = {
      ...kohyaTensors(),
      'lora_unet_up_blocks_3_attentions_0_proj_in.lora_down.weight': stray.down,
      'lora_unet_up_blocks_3_attentions_0_proj_in.lora_up.weight': stray.up,
      'lora_unet_blocks_0_attn_to_q.lora_down.weight': wrong.down,
      'lora_unet_blocks_0_attn_to_q.lora_up.weight': wrong.up,
    };
    delete tensors['lora_unet_blocks_0_attn_to_q.alpha'];
    const { reports } = await merge(modelPath, await writeSafetensors(join(dir, 'stray.safetensors'), tensors));
    assert.deepEqual(reports, [{ unmatched: ['lora_unet_up_blocks_3_attentions_0_proj_in'], misfit: ['lora_unet_blocks_0_attn_to_q'] }]);
  });
});

test('a weight the exporter shares between layers is copied for the layer the LoRA adapts', async () => {
  // Two 1×1 convolutions with identical weights: the exporter keeps one initializer and feeds the
  // second layer through an Identity node.
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [1, 2, 1, 1]);
  const w = g.initializer('a.weight', DataType.FLOAT, [2, 2, 1, 1], Float32Array.of(1, 2, 3, 4));
  const a = g.op('/a', 'Conv', [x, w], [], 'ya');
  const shared = g.op('', 'Identity', [w]);
  g.op('/b', 'Conv', [a, shared], [], 'yb');
  g.output('ya', DataType.FLOAT, [1, 2, 1, 1]);
  g.output('yb', DataType.FLOAT, [1, 2, 1, 1]);
  const path = await writeModel('shared', g.model(14));
  const lora = { down: { shape: [1, 2, 1, 1], data: Float32Array.of(1, 0) }, up: { shape: [2, 1, 1, 1], data: Float32Array.of(0, 10) } };
  const loraPath = await writeSafetensors(join(dir, 'shared.safetensors'), { 'lora_unet_b.lora_down.weight': lora.down, 'lora_unet_b.lora_up.weight': lora.up });
  const { buffer } = await merge(path, loraPath, 1);
  const session = await OnnxModel.fromBuffer(path, buffer);
  try {
    const { ya, yb } = await session.run({ x: { data: Float32Array.of(1, 1), dims: [1, 2, 1, 1] } });
    assert.deepEqual([...ya.data], [3, 7]); // a: [[1, 2], [3, 4]]·[1, 1]
    assert.deepEqual([...yb.data], [3 * 1 + 7 * 2, 3 * 13 + 7 * 4]); // b: [[1, 2], [3 + 10, 4]]·ya
  } finally {
    await session.release();
  }
});

describe('a model with external data', () => {
  test('loads merged with its other weights read from disk, or with all of them in memory past the size limit', async () => {
    const model = tinyModel('fp32');
    const path = await writeModel('external', model, true);
    const loraPath = await writeSafetensors(join(dir, 'ext.safetensors'), kohyaTensors());
    const x = new TorchGenerator(6).randn(TINY_INPUT.reduce((a, b) => a * b, 1));
    const outputs: Float32Array[] = [];
    for (const maxModelBytes of [undefined, 1]) {
      const { buffer } = await merge(path, loraPath, WEIGHT, maxModelBytes);
      assert.equal(buffer.externalData.length, maxModelBytes ? 1 : 0);
      const session = await OnnxModel.fromBuffer(path, buffer);
      try {
        outputs.push((await session.run({ x: { data: x, dims: TINY_INPUT } })).y.data);
      } finally {
        await session.release();
      }
    }
    assert.deepEqual(outputs[0], outputs[1]);
    const expected = await unmergedForward(model, x, SCALE);
    assert.ok(maxAbsDiff(outputs[0], expected) < 1e-4);
  });
});
