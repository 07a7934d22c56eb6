// CLIP skip on ONNX text encoders that output only last_hidden_state: the hidden states exposed from
// the graph, against PyTorch's own (tiny-sd-hs, the same weights exported with hidden_states
// outputs) and the prompt embeddings diffusers was given for the clip-skip reference case.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exposeHiddenStates, layerNorm } from '../../src/diffusion/clip-skip.ts';
import { Engine } from '../../src/diffusion/engine.ts';
import { DiffusionError } from '../../src/diffusion/errors.ts';
import { ModelEditor } from '../../src/diffusion/lora/model-editor.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { FixtureDir } from './helpers.ts';
import { loadReference, readNpy, referenceDir } from '../helpers/reference.ts';

const clipSkipSet = loadReference('clip-skip');
type Tensor = { shape: number[]; values: number[] };
const vectors = JSON.parse(readFileSync(join(clipSkipSet.dir, 'models', 'tiny-sd-hs.vectors.json'), 'utf8')).text_encoder as Record<string, Tensor>;
const finalNorm = JSON.parse(readFileSync(clipSkipSet.file('reference.json'), 'utf8')).models['tiny-sd-hs'].final_layer_norm as { weight: number[]; bias: number[]; eps: number };

/** The largest difference relative to the largest expected magnitude (the final LayerNorm scales by 3 here). */
function maxDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let max = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    max = Math.max(max, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return max / scale;
}

describe('clip skip', () => {
  let model: StableDiffusionModel;
  before(async () => {
    model = await StableDiffusionModel.load(await inspectModelFolder(join(referenceDir, 'models', 'tiny-sd')));
  });
  after(() => model?.release());

  test("tiny-sd's text encoder, which outputs no hidden states, gives PyTorch's hidden_states[-N] through the final LayerNorm, N = 1 … 6", async () => {
    assert.deepEqual(model.textEncoder.outputNames, ['last_hidden_state', 'pooler_output']);
    const ids = Int32Array.from(vectors.input_ids.values);
    const norm = { weight: Float32Array.from(finalNorm.weight), bias: Float32Array.from(finalNorm.bias), eps: finalNorm.eps };
    for (let n = 1; n <= 6; n++) {
      const { data, dims } = await model.encodeTokens(ids, n);
      assert.deepEqual(dims, vectors.last_hidden_state.shape);
      const expected = n === 1 ? Float32Array.from(vectors.last_hidden_state.values) : layerNorm(Float32Array.from(vectors[`hidden_states.${6 - n}`].values), norm);
      const diff = maxDiff(data, expected);
      assert.ok(diff < 5e-4, `clip skip ${n}: off by ${diff} of the largest value`);
    }
    // The graph now has them as outputs, with last_hidden_state kept.
    assert.ok(model.textEncoder.outputNames.includes('last_hidden_state') && model.textEncoder.outputNames.length === 2 + 6);
  });

  test('clip skip 2 gives the prompt embeddings of the reference case', async () => {
    const c = clipSkipSet.cases.find((k) => k.case.name === 'clipskip2-ddim')!;
    const { data } = await model.encodeTokens(Int32Array.from(c.prompt_ids), 2);
    const expected = readNpy(clipSkipSet.file('clipskip2-ddim_prompt_embeds.npy'));
    assert.deepEqual(expected.shape, [77, 32]);
    const diff = maxDiff(data, expected.data);
    assert.ok(diff < 5e-4, `off by ${diff} of the largest value`);
  });

  test('more layers skipped than the text encoder has is BAD_USER_INPUT, naming clipSkip', async () => {
    await assert.rejects(model.encodeTokens(Int32Array.from(vectors.input_ids.values), 7), (error: unknown) => {
      assert.ok(error instanceof DiffusionError && error.code === 'BAD_USER_INPUT');
      assert.match(error.message, /clipSkip 7 .* 5 layers, so at most 6/);
      return true;
    });
  });

  test("a text encoder exported with hidden_states outputs (tiny-sd-hs) is read through them, and its final LayerNorm from the graph's initializers", async () => {
    const editor = await ModelEditor.open(join(clipSkipSet.dir, 'models', 'tiny-sd-hs', 'text_encoder', 'model.onnx'));
    const outputsBefore = editor.model.graph.output.length;
    const states = await exposeHiddenStates(editor);
    assert.deepEqual(states.outputs, ['hidden_states.0', 'hidden_states.1', 'hidden_states.2', 'hidden_states.3', 'hidden_states.4', 'hidden_states.5']);
    assert.equal(editor.model.graph.output.length, outputsBefore);
    assert.deepEqual([...states.finalLayerNorm.weight], finalNorm.weight);
    assert.deepEqual([...states.finalLayerNorm.bias], finalNorm.bias);
    assert.equal(states.finalLayerNorm.eps, finalNorm.eps);
  });
});

test('SD 2.x models ignore clip skip, as AUTOMATIC1111 does, and say so in the warnings', async () => {
  const fixtures = await FixtureDir.create();
  const engine = new Engine({ runtime: { intraOpNumThreads: 1 } });
  try {
    // The same weights in two folders (the engine keeps a loaded model per folder), one read as SD 2.x.
    const sd2 = { ...(await fixtures.model('sd2')), family: 'SD2' as const };
    const other = await fixtures.model('other');
    const run = async (model: typeof other, clipSkip: number) => engine.run(model, await resolveRequest(model, { prompt: 'a cat', steps: 2, seed: 1, clipSkip }));
    const [sd2Skip, sd2Plain, otherSkip] = [await run(sd2, 2), await run(sd2, 1), await run(other, 2)];
    assert.equal(maxAbsDiff(sd2Skip.images[0].image.data, sd2Plain.images[0].image.data), 0);
    assert.deepEqual(sd2Skip.warnings, ['clipSkip 2 was ignored: SD 2.x models take their prompt from the penultimate layer already, and AUTOMATIC1111 ignores Clip skip for them']);
    assert.deepEqual(sd2Plain.warnings, []);
    const d = maxAbsDiff(otherSkip.images[0].image.data, sd2Plain.images[0].image.data);
    assert.ok(d > 1e-3, String(d));
  } finally {
    await engine.close();
    await fixtures.remove();
  }
});
