import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../src/diffusion/onnx/builder.ts';
import { float16ToFloat32, fromFloat16Bits, toFloat16Bits } from '../../src/diffusion/onnx/float16.ts';
import {
  DataType,
  attr,
  bytesToFloat32,
  decodeModel,
  decodeTensor,
  encodeModel,
  inlineTensorBytes,
  makeTensor,
  setTensorFloat32,
  type ModelProto,
} from '../../src/diffusion/onnx/proto.ts';
import { Reader, Writer } from '../../src/diffusion/onnx/wire.ts';
import { referenceDir } from '../helpers/reference.ts';

/** y = x · W + b over x [batch, 3], with W an anonymous initializer as the exporter writes it. */
function linearModel(): ModelProto {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, ['batch', 3]);
  const w = g.anonymous('MatMul', DataType.FLOAT, [3, 2], Float32Array.of(1, 2, 3, 4, 5, 6));
  const b = g.initializer('fc.bias', DataType.FLOAT, [2], Float32Array.of(0.5, -0.5));
  const y = g.op('/fc', 'MatMul', [x, w]);
  g.op('/fc', 'Add', [y, b], [], 'y');
  g.output('y', DataType.FLOAT, ['batch', 2]);
  return g.model(14);
}

async function run(model: Uint8Array, x: number[], options: ort.InferenceSession.SessionOptions = {}): Promise<number[]> {
  const session = await ort.InferenceSession.create(model, options);
  const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(x), [x.length / 3, 3]) });
  await session.release();
  return Array.from(out.y.data as Float32Array);
}

function field(num: number, payload: string): Uint8Array {
  const w = new Writer();
  w.string(num, payload);
  return w.finish();
}

describe('protobuf wire format', () => {
  test('negative int32 and int64 values use ten-byte varints and decode back', () => {
    const w = new Writer();
    w.int32(1, -1);
    w.int64(2, -9223372036854775808n);
    w.int64(3, 9223372036854775807n);
    w.int64(4, 2n ** 40n + 5n);
    const bytes = w.finish();
    assert.equal(bytes.length, 1 + 10 + 1 + 10 + 1 + 9 + 1 + 6);
    const r = new Reader(bytes);
    r.uint();
    assert.equal(r.int32(), -1);
    r.uint();
    assert.equal(r.int64(), -9223372036854775808n);
    r.uint();
    assert.equal(r.int64(), 9223372036854775807n);
    r.uint();
    assert.equal(r.uint(), 2 ** 40 + 5);
    assert.ok(r.done);
  });

  test('repeated scalars decode the same packed and unpacked', () => {
    const unpacked = new Writer();
    for (const d of [2, 300, 7]) unpacked.int64(1, BigInt(d));
    const packed = new Writer();
    packed.packedInt64(1, [2n, 300n, 7n]);
    assert.deepEqual(decodeTensor(new Reader(unpacked.finish())).dims, [2, 300, 7]);
    assert.deepEqual(decodeTensor(new Reader(packed.finish())).dims, [2, 300, 7]);
  });

  test('truncated input is reported as an invalid model', () => {
    const bytes = encodeModel(linearModel());
    assert.throws(() => decodeModel(bytes.subarray(0, bytes.length - 3)), { code: 'MODEL_INVALID' });
  });
});

describe('ONNX models', () => {
  test('a built model runs in onnxruntime and decodes to what was built', async () => {
    const model = linearModel();
    const bytes = encodeModel(model);
    assert.deepEqual(await run(bytes, [1, 0, 0, 0, 1, 1]), [1.5, 1.5, 8.5, 9.5]);
    const decoded = decodeModel(bytes);
    assert.equal(decoded.irVersion, 7);
    assert.deepEqual(decoded.opsetImport.map((o) => [o.domain, o.version]), [['', 14]]);
    assert.deepEqual(decoded.graph.node.map((n) => [n.name, n.opType, n.input, n.output]), [
      ['/fc/MatMul', 'MatMul', ['x', 'onnx::MatMul_1000'], ['/fc/MatMul_output_0']],
      ['/fc/Add', 'Add', ['/fc/MatMul_output_0', 'fc.bias'], ['y']],
    ]);
    assert.deepEqual(decoded.graph.input[0].type?.tensorType?.shape?.dim, [{ dimParam: 'batch' }, { dimValue: 3 }]);
    assert.deepEqual(Array.from(bytesToFloat32(DataType.FLOAT, inlineTensorBytes(decoded.graph.initializer[0]))), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(encodeModel(decoded), bytes);
  });

  test('attributes of every kind survive a round trip, negative ints included', () => {
    const g = new GraphBuilder();
    g.input('x', DataType.FLOAT, [1]);
    g.op('', 'Custom', ['x'], [
      attr.int('axis', -1),
      attr.float('epsilon', 1e-5),
      attr.string('mode', 'nearest'),
      attr.ints('perm', [0, -2, 1]),
      attr.floats('scales', [1, 2.5]),
      attr.tensor('value', makeTensor('', DataType.INT64, [1], BigInt64Array.of(-7n))),
    ], 'y');
    const a = decodeModel(encodeModel(g.model(14))).graph.node[0].attribute;
    assert.equal(a[0].i, -1n);
    assert.equal(a[1].f, Math.fround(1e-5));
    assert.equal(new TextDecoder().decode(a[2].s), 'nearest');
    assert.deepEqual(a[3].ints, [0n, -2n, 1n]);
    assert.deepEqual(a[4].floats, [1, 2.5]);
    assert.deepEqual(Array.from(new BigInt64Array(inlineTensorBytes(a[5].t!).slice().buffer)), [-7n]);
    assert.deepEqual(a.map((x) => x.type), [2, 1, 3, 7, 6, 4]);
  });

  test('fields this code does not model are kept, in field-number order, at every level', async () => {
    const model = linearModel();
    model.unknown = [{ field: 6, bytes: field(6, 'model doc') }, { field: 14, bytes: field(14, '') }];
    model.graph.node[0].unknown = [{ field: 6, bytes: field(6, 'node doc') }];
    model.graph.initializer[1].unknown = [{ field: 12, bytes: field(12, 'tensor doc') }];
    const bytes = encodeModel(model);
    // doc_string (6) precedes graph (7): re-encoding writes fields in number order.
    const text = Buffer.from(bytes).toString('latin1');
    assert.ok(text.indexOf('model doc') < text.indexOf('/fc/MatMul'));
    const decoded = decodeModel(bytes);
    assert.deepEqual(decoded.unknown?.map((u) => u.field), [6, 14]);
    assert.deepEqual(decoded.graph.node[0].unknown?.[0].bytes, field(6, 'node doc'));
    assert.deepEqual(decoded.graph.initializer[1].unknown?.[0].bytes, field(12, 'tensor doc'));
    assert.deepEqual(encodeModel(decoded), bytes);
    assert.deepEqual(await run(bytes, [1, 1, 1]), [9.5, 11.5]);
  });

  test('tensors holding typed data fields instead of raw_data decode, re-encode and run', async () => {
    const model = linearModel();
    const [weight, bias] = model.graph.initializer;
    delete weight.rawData;
    weight.floatData = [1, 2, 3, 4, 5, 6];
    const bytes = encodeModel(model);
    assert.deepEqual(await run(bytes, [1, 1, 1]), [9.5, 11.5]);
    const decoded = decodeModel(bytes).graph.initializer[0];
    assert.deepEqual(decoded.floatData, [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(Array.from(bytesToFloat32(DataType.FLOAT, inlineTensorBytes(decoded))), [1, 2, 3, 4, 5, 6]);

    const half = { ...bias, dataType: DataType.FLOAT16, rawData: undefined, int32Data: [0x3c00, 0xc000] };
    assert.deepEqual(Array.from(bytesToFloat32(DataType.FLOAT16, inlineTensorBytes(half))), [1, -2]);
    const ints = { ...bias, dataType: DataType.INT64, rawData: undefined, int64Data: [-1n, 5n] };
    const roundTripped = decodeModel(encodeModel({ ...model, graph: { ...model.graph, initializer: [ints] } })).graph.initializer[0];
    assert.deepEqual(Array.from(new BigInt64Array(inlineTensorBytes(roundTripped).slice().buffer)), [-1n, 5n]);
  });

  test('edited initializers change what onnxruntime computes', async () => {
    const model = decodeModel(encodeModel(linearModel()));
    setTensorFloat32(model.graph.initializer[0], Float32Array.of(0, 0, 0, 0, 0, 1));
    assert.deepEqual(await run(encodeModel(model), [0, 0, 2]), [0.5, 1.5]);
    assert.throws(() => setTensorFloat32(model.graph.initializer[0], new Float32Array(5)), /5 values for shape \[3, 2\]/);
  });
});

describe('float16', () => {
  test('known values, including subnormals, overflow and ties to even', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00], // halfway to the next (non-existent) step: rounds to even, i.e. Inf
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -26, 0x0400], // rounds up out of the subnormals
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units: even is 2
      [1 + 2 ** -11, 0x3c00], // tie: stays even
      [1 + 3 * 2 ** -11, 0x3c02], // tie: rounds up to even
      [-0, 0x8000],
      [Infinity, 0x7c00],
      [-1e10, 0xfc00],
    ];
    for (const [x, bits] of cases) assert.equal(toFloat16Bits(x), bits, `${x}`);
    assert.ok(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN))));
  });

  test('every half survives float32 and back, and midpoints round to the even neighbour', () => {
    const all = Uint16Array.from({ length: 0x7c00 }, (_, i) => i);
    const asFloat = float16ToFloat32(all);
    for (let h = 0; h < 0x7c00; h++) {
      assert.equal(asFloat[h], fromFloat16Bits(h));
      if (toFloat16Bits(asFloat[h]) !== h || toFloat16Bits(-asFloat[h]) !== (h | 0x8000)) assert.fail(`round trip of ${h}`);
      if (h === 0x7bff) continue;
      const mid = (asFloat[h] + asFloat[h + 1]) / 2;
      const even = h % 2 === 0 ? h : h + 1;
      const above = new Float32Array([mid]);
      new Uint32Array(above.buffer)[0] += 1;
      const below = new Float32Array([mid]);
      new Uint32Array(below.buffer)[0] -= 1;
      if (toFloat16Bits(mid) !== even || toFloat16Bits(above[0]) !== h + 1 || (mid > 0 && toFloat16Bits(below[0]) !== h)) {
        assert.fail(`rounding between ${h} and ${h + 1}`);
      }
    }
  });

  test('float16 tensors store rounded values and read back as float32', () => {
    const t = makeTensor('h', DataType.FLOAT16, [3], new Uint16Array(3));
    setTensorFloat32(t, Float32Array.of(0.1, 1e-7, 70000));
    assert.deepEqual(Array.from(bytesToFloat32(DataType.FLOAT16, inlineTensorBytes(t))), [fromFloat16Bits(0x2e66), 2 ** -23, Infinity]);
  });
});

describe('reference models', () => {
  const names = ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder'];

  test('decode + encode reproduces every exported file byte for byte', async () => {
    for (const name of names) {
      const bytes = await readFile(join(referenceDir, 'models/tiny-sd', name, 'model.onnx'));
      assert.ok(Buffer.from(encodeModel(decodeModel(bytes))).equals(bytes), name);
    }
  });

  test('the re-encoded UNet computes exactly what the original does, and an edit is visible', async () => {
    const path = join(referenceDir, 'models/tiny-sd/unet/model.onnx');
    const model = decodeModel(await readFile(path));
    const feeds = {
      sample: new ort.Tensor('float32', Float32Array.from({ length: 2 * 4 * 8 * 8 }, (_, i) => Math.sin(i)), [2, 4, 8, 8]),
      timestep: new ort.Tensor('float32', Float32Array.of(500, 500), [2]),
      encoder_hidden_states: new ort.Tensor('float32', Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.cos(i)), [2, 77, 32]),
    };
    const outputOf = async (source: string | Uint8Array) => {
      const session = typeof source === 'string' ? await ort.InferenceSession.create(source) : await ort.InferenceSession.create(source);
      const out = (await session.run(feeds)).out_sample.data as Float32Array;
      await session.release();
      return out;
    };
    const original = await outputOf(path);
    assert.deepEqual(await outputOf(encodeModel(model)), original);

    const toK = model.graph.node.find((n) => n.name.endsWith('/attn2/to_k/MatMul'))!;
    const weight = model.graph.initializer.find((t) => t.name === toK.input[1])!;
    assert.match(weight.name, /^onnx::MatMul_\d+$/);
    setTensorFloat32(weight, bytesToFloat32(weight.dataType, inlineTensorBytes(weight)).map((v) => 2 * v));
    const edited = await outputOf(encodeModel(model));
    assert.ok(edited.some((v, i) => Math.abs(v - original[i]) > 1e-4));
  });
});
