// The reference checkpoint (LDM single-file layout) converted to ONNX in TypeScript: each submodel,
// run through our onnxruntime adapter, against the outputs PyTorch gave for the same inputs
// (tiny-sd15.vectors.json), within 1e-4 (the text encoder's padding positions as in
// test/diffusion/submodels.test.ts). Also the fp16 copy and the copy with EMA weights and schedule
// buffers, which tooling here builds from the reference file.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { convertCheckpoint } from '../../src/diffusion/convert/convert.ts';
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';
import { float16ToFloat32, float32ToFloat16 } from '../../src/diffusion/onnx/float16.ts';
import { DataType, bytesToFloat32, decodeModel, inlineTensorBytes } from '../../src/diffusion/onnx/proto.ts';
import { checkpointRef, emaCopy, fp16Copy } from '../helpers/checkpoint.ts';

type Vectors = Record<string, Record<string, { shape: number[]; values: number[] }>>;

const vectors: Vectors = JSON.parse(readFileSync(checkpointRef.vectors, 'utf8'));

/** Runs each converted submodel of `dir` on the reference inputs and checks its outputs within `tolerance`. */
async function compare(dir: string, tolerance: number): Promise<void> {
  for (const [submodel, tensors] of Object.entries(vectors)) {
    const model = await OnnxModel.load(join(dir, submodel, 'model.onnx'));
    try {
      assert.deepEqual([...model.inputNames].sort(), Object.keys(tensors).filter((n) => !model.outputNames.includes(n)).sort(), `${submodel} inputs`);
      const feeds = Object.fromEntries(
        model.inputNames.map((name) => {
          const { shape, values } = tensors[name];
          return [name, { data: name === 'input_ids' ? Int32Array.from(values) : Float32Array.from(values), dims: shape }];
        }),
      );
      const outputs = await model.run(feeds);
      for (const name of model.outputNames) {
        const expected = tensors[name];
        assert.ok(expected, `no reference vector for ${submodel}.${name}`);
        assert.deepEqual([...outputs[name].dims], expected.shape);
        const paddingFrom = name === 'last_hidden_state' ? (tensors.input_ids.values.indexOf(49407) + 1) * expected.shape[2] : Infinity;
        outputs[name].data.forEach((v, i) => {
          const allowed = i < paddingFrom ? tolerance : 5e-3;
          assert.ok(Math.abs(v - expected.values[i]) <= allowed, `${submodel}.${name}[${i}]: ${v} vs ${expected.values[i]}`);
        });
      }
    } finally {
      await model.release();
    }
  }
}

describe('converted reference checkpoint', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'sdql-convert-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('with its yaml, each submodel matches PyTorch within 1e-4', async () => {
    const out = join(work, 'yaml');
    const info = await convertCheckpoint(checkpointRef.file, checkpointRef.yaml, out, { vocabDir: checkpointRef.vocabDir });
    assert.equal(info.archSource, 'yaml');
    await compare(out, 1e-4);
  });

  test('without a yaml, the architecture inferred from the tensors gives the same outputs', async () => {
    const out = join(work, 'inferred');
    const info = await convertCheckpoint(checkpointRef.file, join(work, 'absent.yaml'), out, { vocabDir: checkpointRef.vocabDir });
    assert.equal(info.archSource, 'tensors');
    assert.equal(info.arch.family, 'SD1');
    assert.deepEqual(info.arch.unet.heads, [8, 8, 8, 8]);
    assert.equal(info.arch.textEncoder.heads, 4);
    await compare(out, 1e-4);
  });

  test('EMA weights and schedule buffers beside the model are left aside, as diffusers does by default', async () => {
    const file = join(work, 'ema.safetensors');
    await emaCopy(checkpointRef.file, file);
    const out = join(work, 'ema');
    const info = await convertCheckpoint(file, checkpointRef.yaml, out, { vocabDir: checkpointRef.vocabDir });
    assert.equal(info.hasEma, true);
    await compare(out, 1e-4);
  });

  test('an fp16 copy is computed in float32, with its weights widened exactly', async () => {
    const file = join(work, 'fp16.safetensors');
    await fp16Copy(checkpointRef.file, file);
    const out = join(work, 'fp16');
    const info = await convertCheckpoint(file, checkpointRef.yaml, out, { vocabDir: checkpointRef.vocabDir });
    assert.equal(info.storedPrecision, 'fp16');
    await convertCheckpoint(checkpointRef.file, checkpointRef.yaml, join(work, 'fp32'), { vocabDir: checkpointRef.vocabDir });
    // Its graphs are those of the fp32 checkpoint with every weight rounded to float16 and back
    // (the images: test/api/checkpoint.test.ts).
    for (const submodel of Object.keys(vectors)) {
      const fp32 = decodeModel(readFileSync(join(work, 'fp32', submodel, 'model.onnx')));
      const fp16 = decodeModel(readFileSync(join(out, submodel, 'model.onnx')));
      assert.equal(fp16.graph.output[0].type?.tensorType?.elemType, DataType.FLOAT);
      assert.equal(fp16.graph.initializer.length, fp32.graph.initializer.length);
      // The timestep frequencies are constants of the graph, not weights.
      const constants = new Set(fp32.graph.node.filter((n) => n.name?.startsWith('/time_proj/')).flatMap((n) => n.input));
      fp32.graph.initializer.forEach((t, i) => {
        if (t.dataType !== DataType.FLOAT || constants.has(t.name)) return;
        const widened = float16ToFloat32(float32ToFloat16(bytesToFloat32(t.dataType, inlineTensorBytes(t))));
        assert.deepEqual(bytesToFloat32(DataType.FLOAT, inlineTensorBytes(fp16.graph.initializer[i])), widened, `${submodel} ${t.name}`);
      });
    }
  });
});
