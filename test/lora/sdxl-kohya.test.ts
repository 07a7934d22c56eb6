// kohya SDXL LoRAs (lora_unet_ with the LDM UNet's block names, lora_te1_, lora_te2_) merged into
// the reference tiny-sdxl's Optimum export: each submodel run with the merged weights against the
// same submodel with W + scale·up·down written into the layers the fixture's table names, computed
// here in float64 without the key translation under test.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKohyaSdxlLora, KOHYA_SDXL_UNET_LAYERS, type KohyaLoraModule } from '../../src/diffusion/fixtures/adapters.ts';
import { mergeLoras } from '../../src/diffusion/lora/adapt.ts';
import { readLora, type LoraComponent, type LoraFile } from '../../src/diffusion/lora/lora-file.ts';
import { ModelEditor } from '../../src/diffusion/lora/model-editor.ts';
import { diffusersUnetName, unetLayout } from '../../src/diffusion/lora/sgm-unet.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { OnnxModel, type TensorData } from '../../src/diffusion/onnx-model.ts';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { referenceDir } from '../helpers/reference.ts';
import { maxAbsDiff } from '../helpers/numeric.ts';
import { mergedDirectly, transpose } from './helpers.ts';

const MODEL = join(referenceDir, 'sdxl', 'models', 'tiny-sdxl');
/** The request's LoRA weight; the file's alpha / rank is 2 / 4. */
const WEIGHT = 0.8;

const randn = (seed: number, n: number) => new TorchGenerator(seed).randn(n);
const ids = Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? 0 : i < 9 ? 300 + 17 * i : 2));
const FEEDS: Record<LoraComponent, Record<string, TensorData>> = {
  unet: {
    sample: { data: randn(1, 4 * 8 * 8), dims: [1, 4, 8, 8] },
    timestep: { data: Float32Array.of(601), dims: [1] },
    encoder_hidden_states: { data: randn(2, 77 * 96), dims: [1, 77, 96] },
    text_embeds: { data: randn(3, 32), dims: [1, 32] },
    time_ids: { data: Float32Array.of(64, 64, 0, 0, 64, 64), dims: [1, 6] },
  },
  text_encoder: { input_ids: { data: ids, dims: [1, 77] } },
  text_encoder_2: { input_ids: { data: ids, dims: [1, 77] } },
};

async function outputs(path: string, model: Awaited<ReturnType<ModelEditor['toBuffer']>> | undefined, feeds: Record<string, TensorData>) {
  const session = model ? await OnnxModel.fromBuffer(path, model) : await OnnxModel.load(path);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

describe('kohya SDXL LoRA on tiny-sdxl', () => {
  let dir: string;
  let modules: KohyaLoraModule[];
  let file: LoraFile;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sdql-sdxl-lora-'));
    const path = join(dir, 'kohya-sdxl.safetensors');
    modules = await createKohyaSdxlLora(MODEL, path, 3);
    file = await readLora('kohya-sdxl', path);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the file reads as SDXL with its modules under unet, text_encoder and text_encoder_2', () => {
    assert.equal(file.family, 'SDXL');
    assert.deepEqual(file.unsupported, []);
    const count = (c: LoraComponent) => file.modules.filter((m) => m.component === c).length;
    assert.deepEqual([count('unet'), count('text_encoder'), count('text_encoder_2')], [KOHYA_SDXL_UNET_LAYERS.length, 4, 4]);
  });

  test('LDM block names translate to diffusers\' by the layout the UNet\'s layers show', async () => {
    const editor = await ModelEditor.open(join(MODEL, 'unet', 'model.onnx'));
    const layout = unetLayout(editor.weights.modules);
    assert.deepEqual(layout, { layersPerBlock: 2, upAttentions: [true, true, false] });
    for (const [ldm, module] of KOHYA_SDXL_UNET_LAYERS) assert.equal(diffusersUnetName(ldm, layout!), module.replaceAll('.', '_'), ldm);
    // Without attentions an up block's upsampler is its second child; blocks the layout lacks are not guessed.
    const plain = { layersPerBlock: 2, upAttentions: [false, false] };
    assert.equal(diffusersUnetName('output_blocks_2_1_conv', plain), 'up_blocks_0_upsamplers_0_conv');
    assert.equal(diffusersUnetName('output_blocks_2_2_conv', layout!), 'up_blocks_0_upsamplers_0_conv');
    assert.equal(diffusersUnetName('output_blocks_9_0_in_layers_2', layout!), undefined);
    assert.equal(diffusersUnetName('input_blocks_3_1_proj_in', layout!), undefined, 'a downsampler has no attention');
    assert.equal(diffusersUnetName('down_blocks_0_resnets_0_conv1', layout!), undefined, 'diffusers names are left as they are');
  });

  for (const component of ['unet', 'text_encoder', 'text_encoder_2'] as const) {
    test(`${component}: the merged session's outputs equal those of the base weights plus the LoRA delta`, async () => {
      const path = join(MODEL, component, 'model.onnx');
      const merged = await ModelEditor.open(path);
      const [report] = await mergeLoras(merged, component, [{ file, weight: WEIGHT }]);
      assert.deepEqual(report, { unmatched: [], misfit: [] });

      const expected = await ModelEditor.open(path);
      for (const m of modules.filter((x) => x.component === component)) {
        const slot = expected.weights.get(m.module)!;
        const base = await expected.read(slot);
        const [out, fanIn] = [m.up.shape[0], base.length / m.up.shape[0]];
        const torchOrder = slot.transposed ? transpose(base, fanIn, out) : base;
        const sum = mergedDirectly(Float32Array.from(torchOrder), m.up, m.down, (WEIGHT * m.alpha) / m.down.shape[0]);
        expected.write(slot, Float32Array.from(slot.transposed ? transpose(sum, out, fanIn) : sum));
      }

      const feeds = FEEDS[component];
      const [got, want, original] = await Promise.all([
        outputs(path, await merged.toBuffer(), feeds),
        outputs(path, await expected.toBuffer(), feeds),
        outputs(path, undefined, feeds),
      ]);
      const names = Object.keys(want).filter((name) => name !== 'hidden_states.0');
      assert.ok(names.length > 0);
      for (const name of names) {
        const scale = Math.max(...Array.from(want[name].data, Math.abs));
        assert.ok(maxAbsDiff(got[name].data, want[name].data) < 1e-4 * scale, `${name}: merged vs base + delta`);
        assert.ok(maxAbsDiff(original[name].data, want[name].data) > 1e-2 * scale, `${name}: the LoRA changes the output`);
      }
    });
  }

  test('a model loaded with the LoRA merges it into both text encoders and the UNet, and reports nothing left out', async () => {
    const info = await inspectModelFolder(MODEL);
    const base = await StableDiffusionModel.load(info);
    const adapted = await StableDiffusionModel.load(info, {}, { loras: [{ name: 'kohya-sdxl', path: join(dir, 'kohya-sdxl.safetensors'), weight: WEIGHT }], embeddings: [] });
    try {
      assert.deepEqual(adapted.warnings, []);
      const pairs = [
        ['text_encoder', base.textEncoder, adapted.textEncoder],
        ['text_encoder_2', base.second!.textEncoder, adapted.second!.textEncoder],
        ['unet', base.unet, adapted.unet],
      ] as const;
      for (const [component, before, after] of pairs) {
        const [want, got] = [await before.run(FEEDS[component]), await after.run(FEEDS[component])];
        const name = before.outputNames[0];
        assert.ok(maxAbsDiff(want[name].data, got[name].data) > 1e-3, `${component}: the LoRA changes ${name}`);
      }
    } finally {
      await Promise.all([base.release(), adapted.release()]);
    }
  });
});
