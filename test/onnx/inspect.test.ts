import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { GraphBuilder } from '../../src/diffusion/onnx/builder.ts';
import { inspectOnnx, type OnnxValueInfo } from '../../src/diffusion/onnx/inspect.ts';
import { DataType, encodeModel, makeValueInfo } from '../../src/diffusion/onnx/proto.ts';
import { referenceDir } from '../helpers/reference.ts';

async function ortMetadata(path: string): Promise<{ inputs: OnnxValueInfo[]; outputs: OnnxValueInfo[] }> {
  const session = await ort.InferenceSession.create(path);
  const convert = (m: readonly ort.InferenceSession.ValueMetadata[]) =>
    m.map((v) => {
      assert.ok(v.isTensor);
      return { name: v.name, elemType: v.type, shape: [...v.shape] };
    });
  const result = { inputs: convert(session.inputMetadata), outputs: convert(session.outputMetadata) };
  await session.release();
  return result;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sdql-inspect-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('inspectOnnx', () => {
  test('agrees with onnxruntime on the reference models', async () => {
    for (const name of ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']) {
      const path = join(referenceDir, 'models/tiny-sd', name, 'model.onnx');
      const summary = await inspectOnnx(path);
      assert.deepEqual({ inputs: summary.inputs, outputs: summary.outputs }, await ortMetadata(path), name);
      assert.equal(summary.opsetVersion, 14);
      assert.deepEqual(summary.externalDataFiles, []);
      assert.ok(summary.initializerBytes > 1e6);
    }
  });

  for (const file of ['model.onnx_data', 'weights.pb', 'model.onnx.data'] as const) {
    test(`names the external data file ${file} and agrees with onnxruntime`, async () => {
      const pipeline = join(dir, file);
      await createFixturePipeline(pipeline, { externalData: file, timestep: 'int64', precision: 'fp16' });
      const path = join(pipeline, 'unet', 'model.onnx');
      const summary = await inspectOnnx(path);
      assert.deepEqual(summary.externalDataFiles, [file]);
      assert.deepEqual({ inputs: summary.inputs, outputs: summary.outputs }, await ortMetadata(path));
      assert.deepEqual(summary.inputs.map((i) => i.elemType), ['float16', 'int64', 'float16']);
    });
  }

  test('counts initializer bytes wherever they are stored', async () => {
    const inline = join(dir, 'inline');
    const external = join(dir, 'external');
    await createFixturePipeline(inline);
    await createFixturePipeline(external, { externalData: 'model.onnx_data' });
    const a = await inspectOnnx(join(inline, 'unet', 'model.onnx'));
    const b = await inspectOnnx(join(external, 'unet', 'model.onnx'));
    assert.equal(a.initializerBytes, b.initializerBytes);
    // The default UNet's parameters, 4 bytes each, are most of it.
    assert.ok(a.initializerBytes > 1_500_000 && a.initializerBytes < 2_500_000, String(a.initializerBytes));
  });

  test('leaves out initializers that old exports also list as inputs, and reports scalars and unnamed dims', async () => {
    const g = new GraphBuilder();
    g.input('x', DataType.FLOAT, []);
    g.graph.input.push(makeValueInfo('w', DataType.FLOAT, [2]));
    g.graph.input.push({ name: 'n', type: { tensorType: { elemType: DataType.INT64, shape: { dim: [{}] } } } });
    g.initializer('w', DataType.FLOAT, [2], Float32Array.of(1, 2));
    g.op('', 'Mul', ['x', 'w'], [], 'y');
    g.output('y', DataType.FLOAT, [2]);
    const path = join(dir, 'old.onnx');
    await writeFile(path, encodeModel(g.model(9)));
    const summary = await inspectOnnx(path);
    assert.deepEqual(summary.inputs, [
      { name: 'x', elemType: 'float32', shape: [] },
      { name: 'n', elemType: 'int64', shape: [''] },
    ]);
    assert.equal(summary.opsetVersion, 9);
    assert.equal(summary.initializerBytes, 8);
  });

  test('rejects files that are not ONNX models with a typed error', async () => {
    const path = join(dir, 'garbage.onnx');
    await writeFile(path, 'this is not a protobuf message at all');
    await assert.rejects(inspectOnnx(path), { code: 'MODEL_INVALID' });
    await writeFile(path, new Uint8Array(0));
    await assert.rejects(inspectOnnx(path), /no graph/);
    await assert.rejects(inspectOnnx(join(dir, 'missing.onnx')), { code: 'MODEL_INVALID' });
  });
});
