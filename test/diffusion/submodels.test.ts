// Each ONNX submodel of the reference pipeline, run through our onnxruntime adapter, against the
// outputs PyTorch gave for the same inputs (tiny-sd.vectors.json), within 1e-4. One exception:
// the text encoder's states at padding positions after the end token, where this random tiny
// CLIP amplifies rounding (onnxruntime 1.30 with any optimisation level and thread count differs
// from PyTorch by up to 4e-3 there); the whole-pipeline parity tests show it does not reach images.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';
import { referenceDir } from '../helpers/reference.ts';

type Vectors = Record<string, Record<string, { shape: number[]; values: number[] }>>;

describe('reference submodels match PyTorch', () => {
  const vectors: Vectors = JSON.parse(readFileSync(join(referenceDir, 'models/tiny-sd.vectors.json'), 'utf8'));
  for (const [submodel, tensors] of Object.entries(vectors)) {
    test(submodel, async () => {
      const model = await OnnxModel.load(join(referenceDir, 'models/tiny-sd', submodel, 'model.onnx'));
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
          const paddingFrom = name === 'last_hidden_state' ? paddingStart(tensors.input_ids.values) * expected.shape[2] : Infinity;
          outputs[name].data.forEach((v, i) => {
            const tolerance = i < paddingFrom ? 1e-4 : 5e-3;
            assert.ok(Math.abs(v - expected.values[i]) <= tolerance, `${submodel}.${name}[${i}]: ${v} vs ${expected.values[i]}`);
          });
        }
      } finally {
        await model.release();
      }
    });
  }
});

/** Index of the first token after the first end-of-text token (49407). */
function paddingStart(ids: number[]): number {
  return ids.indexOf(49407) + 1;
}
