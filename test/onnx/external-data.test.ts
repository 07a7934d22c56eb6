// Initializers stored outside the model file: moved out into one data file, read back by range,
// loaded by onnxruntime from the model's folder, and kept inside that folder.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../src/diffusion/onnx/builder.ts';
import { externalDataPath, externalDataRef, inlineExternalData, loadTensorBytes, moveToExternalData } from '../../src/diffusion/onnx/external-data.ts';
import { DataType, bytesToFloat32, decodeModel, encodeModel, inlineTensorBytes, makeTensor, type ModelProto } from '../../src/diffusion/onnx/proto.ts';

/** y = x + big, with a small initializer beside it that stays inline. */
function addModel(big: Float32Array): ModelProto {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [big.length]);
  g.initializer('small', DataType.FLOAT, [2], Float32Array.of(1, 2));
  const b = g.initializer('big', DataType.FLOAT, [big.length], big);
  g.op('', 'Add', [x, b], [], 'y');
  g.output('y', DataType.FLOAT, [big.length]);
  return g.model(14);
}

describe('external data', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sdql-onnx-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('moves large initializers out, records location/offset/length, and loads them back', async () => {
    const values = Float32Array.from({ length: 300 }, (_, i) => i);
    const model = addModel(values);
    const [small, big] = model.graph.initializer;
    const data = moveToExternalData(model, 'weights.pb', 1024);
    assert.equal(data.length, 1200);
    assert.deepEqual(externalDataRef(big), { location: 'weights.pb', offset: 0, length: 1200 });
    assert.equal(externalDataRef(small), null, 'small tensors stay inline');
    await writeFile(join(dir, 'weights.pb'), data);
    assert.deepEqual(bytesToFloat32(DataType.FLOAT, await loadTensorBytes(big, dir)), values);
    assert.throws(() => inlineTensorBytes(big), /stored externally/);

    await writeFile(join(dir, 'm.onnx'), encodeModel(model));
    const session = await ort.InferenceSession.create(join(dir, 'm.onnx'));
    const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array(300).fill(0.5), [300]) });
    await session.release();
    assert.deepEqual(y.data, values.map((v) => v + 0.5), 'onnxruntime reads the data file beside the model');

    const reread = decodeModel(await readFile(join(dir, 'm.onnx')));
    await inlineExternalData(reread, dir);
    assert.equal(externalDataRef(reread.graph.initializer[1]), null);
    assert.deepEqual(bytesToFloat32(DataType.FLOAT, inlineTensorBytes(reread.graph.initializer[1])), values);
  });

  test('reads a tensor from its offset and checks its length against its shape', async () => {
    const t = makeTensor('t', DataType.FLOAT16, [2], Uint16Array.of(0x3c00, 0xc000));
    t.rawData = undefined;
    t.dataLocation = 1;
    t.externalData = [
      { key: 'location', value: 'data.bin' },
      { key: 'offset', value: '3' },
      { key: 'length', value: '4' },
    ];
    await writeFile(join(dir, 'data.bin'), Uint8Array.of(9, 9, 9, 0x00, 0x3c, 0x00, 0xc0, 9));
    assert.deepEqual(Array.from(bytesToFloat32(DataType.FLOAT16, await loadTensorBytes(t, dir))), [1, -2]);
    t.externalData[2].value = '6';
    await assert.rejects(loadTensorBytes(t, dir), /does not match its shape/);
    t.externalData[0].value = 'missing.bin';
    await assert.rejects(loadTensorBytes(t, dir), { code: 'MODEL_INVALID' });
  });

  test('refuses locations outside the model folder', () => {
    assert.throws(() => externalDataPath('/models/unet', '../../etc/passwd'), { code: 'MODEL_INVALID' });
    assert.throws(() => externalDataPath('/models/unet', '/etc/passwd'), { code: 'MODEL_INVALID' });
    assert.equal(externalDataPath('/models/unet', './weights.pb'), '/models/unet/weights.pb');
  });
});
