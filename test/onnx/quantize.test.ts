// The int8 quantiser of bench/int8.ts (bench/lib/quantize.ts), on a fixture UNet run by onnxruntime:
// both forms rewrite the graph into integer operators and their outputs stay close to float32's, so
// the bench's verdict rests on a quantiser that works.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { activationRanges, convActivations, quantizeGraph, quantizeModelFile, quantizePerChannel } from '../../bench/lib/quantize.ts';
import { buildUNet } from '../../src/diffusion/fixtures/unet.ts';
import { moveToExternalData } from '../../src/diffusion/onnx/external-data.ts';
import { encodeModel, type ModelProto } from '../../src/diffusion/onnx/proto.ts';
import { OnnxModel, type TensorData } from '../../src/diffusion/onnx-model.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';

const SPEC = { inChannels: 4, blockOutChannels: [32, 64] as [number, number], crossAttentionDim: 64, heads: 8, timestep: 'float32' as const };
const fixture = () => buildUNet(5, 'fp32', SPEC);

function feeds(seed: number, timestep: number): Record<string, TensorData> {
  const random = new TorchGenerator(seed);
  return {
    sample: { data: random.randn(2 * 4 * 16 * 16), dims: [2, 4, 16, 16] },
    timestep: { data: Float32Array.of(timestep, timestep), dims: [2] },
    encoder_hidden_states: { data: random.randn(2 * 77 * 64), dims: [2, 77, 64] },
  };
}

async function run(model: ModelProto, feed: Record<string, TensorData>, dir: string): Promise<Float32Array> {
  const session = await OnnxModel.fromBuffer(join(dir, 'model.onnx'), { bytes: encodeModel(model), dir, externalData: [] });
  try {
    return (await session.run(feed)).out_sample.data;
  } finally {
    await session.release();
  }
}

/** ‖a − b‖ / ‖b‖. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const opCount = (model: ModelProto, op: string) => model.graph.node.filter((n) => n.opType === op).length;

describe('int8 quantiser (bench)', () => {
  let dir: string;
  let expected: Float32Array;
  const feed = feeds(1, 600);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sdql-quantize-'));
    expected = await run(fixture(), feed, dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('per channel: each channel reaches ±127 and every value is within half a step', () => {
    // Two columns of a [3, 2] MatMul weight, scales 2/127 and 0.5/127.
    const w = Float32Array.of(2, 0.5, -1, -0.25, 0.3, 0.1);
    const { q, scales } = quantizePerChannel(w, 2, 1);
    assert.deepEqual([...scales].map((s) => s * 127), [2, 0.5].map((v) => Math.fround(v / 127) * 127));
    assert.equal(q[0], 127);
    assert.equal(q[1], 127);
    w.forEach((v, i) => assert.ok(Math.abs(q[i] * scales[i % 2] - v) <= scales[i % 2] / 2 + 1e-7, `element ${i}`));
  });

  test('dynamic: MatMuls and Convs become MatMulInteger/ConvInteger, and the output stays near float32', async () => {
    const model = fixture();
    const floats = opCount(model, 'Conv');
    const report = await quantizeGraph(model, dir);
    assert.ok(report.matMuls > 0 && report.convs > 0, JSON.stringify(report));
    assert.equal(opCount(model, 'MatMulInteger'), report.matMuls);
    assert.equal(opCount(model, 'ConvInteger'), report.convs);
    // conv_in and conv_out stay float (too few channels to be worth it).
    assert.equal(opCount(model, 'Conv'), floats - report.convs);
    assert.equal(report.int8Bytes * 4, report.floatBytes);
    const error = relativeError(await run(model, feed, dir), expected);
    assert.ok(error < 0.05, `relative error ${error}`);
  });

  test('qdq: Convs are wrapped in QuantizeLinear/DequantizeLinear at calibrated ranges, and the output stays near float32', async () => {
    const model = fixture();
    const names = convActivations(model);
    const ranges = await activationRanges(model, dir, names, [feeds(2, 900), feeds(3, 300)]);
    assert.equal(ranges.size, names.length);
    const report = await quantizeGraph(model, dir, { convFormat: 'qdq', ranges });
    assert.equal(opCount(model, 'ConvInteger'), 0);
    assert.ok(opCount(model, 'QuantizeLinear') >= report.convs, 'each Conv output is quantised');
    const error = relativeError(await run(model, feed, dir), expected);
    assert.ok(error < 0.08, `relative error ${error}`);
  });

  test('qdq without a calibrated range is refused', async () => {
    await assert.rejects(quantizeGraph(fixture(), dir, { convFormat: 'qdq', ranges: new Map() }), /no calibrated range/);
  });

  test('a model file with external data is quantised into its own folder and loads from there', async () => {
    const source = fixture();
    const data = moveToExternalData(source, 'model.onnx_data');
    await writeFile(join(dir, 'model.onnx'), encodeModel(source));
    await writeFile(join(dir, 'model.onnx_data'), data);
    const target = join(dir, 'int8', 'model.onnx');
    await quantizeModelFile(join(dir, 'model.onnx'), target);
    const session = await OnnxModel.load(target);
    try {
      const error = relativeError((await session.run(feed)).out_sample.data, expected);
      assert.ok(error < 0.05, `relative error ${error}`);
    } finally {
      await session.release();
    }
  });
});
