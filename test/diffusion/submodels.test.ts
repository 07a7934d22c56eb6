// Each ONNX submodel of the reference pipeline, run through our onnxruntime adapter, against the
// outputs PyTorch gave for the same inputs (tiny-sd.vectors.json).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';
import { referenceDir, skipWithoutReference } from '../helpers/reference.ts';

type Vectors = Record<string, Record<string, { shape: number[]; values: number[] }>>;

describe('reference submodels match PyTorch', { skip: skipWithoutReference }, () => {
  const vectors: Vectors = referenceDir ? JSON.parse(readFileSync(join(referenceDir, 'models/tiny-sd.vectors.json'), 'utf8')) : {};
  for (const [submodel, tensors] of Object.entries(vectors)) {
    test(submodel, async () => {
      const model = await OnnxModel.load(join(referenceDir!, 'models/tiny-sd', submodel, 'model.onnx'));
      try {
        const feeds = Object.fromEntries(
          model.inputNames.map((name) => {
            const { shape, values } = tensors[name];
            const data = name === 'input_ids' ? Int32Array.from(values) : Float32Array.from(values);
            return [name, { data, dims: shape }];
          }),
        );
        const outputs = await model.run(feeds);
        for (const name of model.outputNames) {
          const expected = tensors[name];
          assert.ok(expected, `no reference vector for ${submodel}.${name}`);
          assert.deepEqual([...outputs[name].dims], expected.shape);
          let maxErr = 0;
          outputs[name].data.forEach((v, i) => (maxErr = Math.max(maxErr, Math.abs(v - expected.values[i]))));
          assert.ok(maxErr <= 1e-4, `${submodel}.${name}: largest difference ${maxErr}`);
        }
      } finally {
        await model.release();
      }
    });
  }
});
