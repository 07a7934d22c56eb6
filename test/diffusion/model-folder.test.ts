import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { scanModelsDir } from '../../src/diffusion/models-dir.ts';
import { referenceDir } from '../helpers/reference.ts';

let tmp: string;
/** A default fixture pipeline; tests copy it and change the copy. */
let base: string;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sdql-model-folder-'));
  base = join(tmp, 'base');
  await createFixturePipeline(base);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function copyOf(name: string, edit?: (dir: string) => void): string {
  const dir = join(tmp, name);
  cpSync(base, dir, { recursive: true });
  edit?.(dir);
  return dir;
}

function editJson(path: string, change: (value: Record<string, unknown>) => void): void {
  const value = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  change(value);
  writeFileSync(path, JSON.stringify(value));
}

function sizeOf(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .reduce((sum, e) => sum + statSync(join(e.parentPath, e.name)).size, 0);
}

test('describes the reference tiny-sd folder', async () => {
  const dir = join(referenceDir, 'models', 'tiny-sd');
  const info = await inspectModelFolder(dir);
  assert.equal(info.error, undefined);
  assert.deepEqual(
    { ...info, schedulerConfig: undefined },
    {
      id: 'tiny-sd',
      name: 'tiny-sd',
      dir,
      // Its text embeddings are 32 wide: no known family, and it says so rather than guessing.
      format: 'ONNX',
      family: 'UNKNOWN',
      supported: true,
      predictionType: 'epsilon',
      vaeScaleFactor: 8,
      vaeScalingFactor: 0.18215,
      nativeWidth: 64,
      nativeHeight: 64,
      canImg2img: true,
      canInpaint: true,
      precision: 'fp32',
      sizeBytes: sizeOf(dir),
      unetInChannels: 4,
      crossAttentionDim: 32,
      attentionLevels: [{ level: 1, heads: 8 }],
      paths: {
        textEncoder: join(dir, 'text_encoder', 'model.onnx'),
        unet: join(dir, 'unet', 'model.onnx'),
        vaeDecoder: join(dir, 'vae_decoder', 'model.onnx'),
        vaeEncoder: join(dir, 'vae_encoder', 'model.onnx'),
        tokenizer: join(dir, 'tokenizer'),
        schedulerConfig: join(dir, 'scheduler', 'scheduler_config.json'),
      },
      schedulerConfig: undefined,
    },
  );
  assert.equal(info.schedulerConfig.beta_schedule, 'scaled_linear');
});

test('reads capabilities from the graph and the configs', async () => {
  const fp16 = join(tmp, 'fp16');
  await createFixturePipeline(fp16, { precision: 'fp16', inpainting: true, vaeEncoderOutput: 'none', sampleSize: 16, schedulerConfig: { prediction_type: 'v_prediction' } });
  const info = await inspectModelFolder(fp16);
  assert.equal(info.error, undefined);
  assert.equal(info.precision, 'fp16');
  assert.equal(info.unetInChannels, 9);
  // A mask needs the VAE encoder (the masked image's latents), whatever the UNet.
  assert.equal(info.canInpaint, false);
  assert.equal(info.canImg2img, false);
  assert.equal(info.paths.vaeEncoder, undefined);
  assert.equal(info.nativeWidth, 128);
  assert.equal(info.nativeHeight, 128);
  assert.equal(info.predictionType, 'v_prediction');
  assert.equal(info.sizeBytes, sizeOf(fp16));
});

test('the VAE scale factor and scaling factor come from the VAE config, with diffusers defaults', async () => {
  const three = copyOf('vae3', (dir) =>
    editJson(join(dir, 'vae_decoder', 'config.json'), (c) => {
      c.block_out_channels = [32, 32, 32];
      c.scaling_factor = 0.13025;
    }),
  );
  const info = await inspectModelFolder(three);
  assert.equal(info.vaeScaleFactor, 4);
  assert.equal(info.vaeScalingFactor, 0.13025);
  assert.equal(info.nativeWidth, 8 * 4);
  const none = copyOf('novaeconfig', (dir) => {
    unlinkSync(join(dir, 'vae_decoder', 'config.json'));
    unlinkSync(join(dir, 'vae_encoder', 'config.json'));
  });
  const defaults = await inspectModelFolder(none);
  assert.equal(defaults.vaeScaleFactor, 8);
  assert.equal(defaults.vaeScalingFactor, 0.18215);
});

test('the family comes from the text embedding width or a second text encoder, never a guess', async () => {
  const withDim = (dim: number | undefined) =>
    copyOf(`dim-${dim}`, (dir) =>
      editJson(join(dir, 'unet', 'config.json'), (c) => {
        if (dim === undefined) delete c.cross_attention_dim;
        else c.cross_attention_dim = dim;
      }),
    );
  const family = async (dir: string) => {
    const info = await inspectModelFolder(dir);
    return [info.family, info.supported];
  };
  assert.deepEqual(await family(withDim(768)), ['SD1', true]);
  assert.deepEqual(await family(withDim(1024)), ['SD2', true]);
  assert.deepEqual(await family(withDim(2048)), ['SDXL', false]);
  assert.deepEqual(await family(withDim(512)), ['UNKNOWN', true]);
  // Without the config, the UNet's encoder_hidden_states input (32 wide here) tells.
  const fromGraph = await inspectModelFolder(withDim(undefined));
  assert.equal(fromGraph.crossAttentionDim, 32);
  assert.equal(fromGraph.family, 'UNKNOWN');
  const xl = copyOf('xl', (dir) => editJson(join(dir, 'model_index.json'), (c) => (c.text_encoder_2 = ['transformers', 'CLIPTextModelWithProjection'])));
  assert.deepEqual(await family(xl), ['SDXL', false]);
});

test('the attention levels come from down_block_types and their heads from attention_head_dim: a number, or one per level (SD 2.x, SDXL)', async () => {
  const unet = (edit: Record<string, unknown>) =>
    copyOf(`attention-${JSON.stringify(edit)}`, (dir) =>
      editJson(join(dir, 'unet', 'config.json'), (c) => {
        for (const [key, value] of Object.entries(edit)) {
          if (value === undefined) delete c[key];
          else c[key] = value;
        }
      }),
    );
  const sd2 = ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'];
  const levels = async (edit: Record<string, unknown>) => (await inspectModelFolder(await unet(edit))).attentionLevels;
  assert.deepEqual(await levels({ down_block_types: sd2, attention_head_dim: [5, 10, 20, 20] }), [{ level: 0, heads: 5 }, { level: 1, heads: 10 }, { level: 2, heads: 20 }]);
  assert.deepEqual(await levels({ down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'], attention_head_dim: [5, 10, 20] }), [{ level: 1, heads: 10 }, { level: 2, heads: 20 }]);
  assert.deepEqual(await levels({ attention_head_dim: 8 }), [{ level: 0, heads: 8 }]);
  // diffusers takes num_attention_heads over attention_head_dim when a config has both.
  assert.deepEqual(await levels({ num_attention_heads: 4, attention_head_dim: 8 }), [{ level: 0, heads: 4 }]);
  // Without down_block_types every level has attention, as SD 1.x/2.x.
  assert.deepEqual(await levels({ down_block_types: undefined, attention_head_dim: [5, 10] }), [{ level: 0, heads: 5 }, { level: 1, heads: 10 }]);
  assert.equal(await levels({ attention_head_dim: undefined }), undefined);
});

test('a broken folder is described with what is wrong, never thrown', async () => {
  const cases: [string, (dir: string) => void, RegExp][] = [
    ['malformed-index', (dir) => writeFileSync(join(dir, 'model_index.json'), '{"_class_name": '), /model_index\.json is not valid JSON/],
    ['no-index', (dir) => unlinkSync(join(dir, 'model_index.json')), /model_index\.json is missing/],
    ['no-unet', (dir) => unlinkSync(join(dir, 'unet', 'model.onnx')), /missing unet\/model\.onnx/],
    ['no-tokenizer', (dir) => rmSync(join(dir, 'tokenizer'), { recursive: true }), /missing tokenizer\/vocab\.json, tokenizer\/merges\.txt/],
    ['no-scheduler', (dir) => rmSync(join(dir, 'scheduler'), { recursive: true }), /missing scheduler\/scheduler_config\.json/],
    ['garbage-onnx', (dir) => writeFileSync(join(dir, 'vae_decoder', 'model.onnx'), 'not a protobuf at all'), /^vae_decoder\/model\.onnx: /],
    ['bad-unet-config', (dir) => writeFileSync(join(dir, 'unet', 'config.json'), '[1, 2]'), /unet\/config\.json is not a JSON object/],
  ];
  for (const [name, edit, expected] of cases) {
    const info = await inspectModelFolder(copyOf(name, edit));
    assert.match(info.error ?? '', expected, name);
    assert.equal(info.supported, false, name);
    assert.equal(info.id, name);
  }
});

test('every external data file an ONNX model names must exist', async () => {
  const dir = join(tmp, 'external');
  await createFixturePipeline(dir, { externalData: 'weights.pb' });
  assert.equal((await inspectModelFolder(dir)).error, undefined);
  unlinkSync(join(dir, 'unet', 'weights.pb'));
  const info = await inspectModelFolder(dir);
  assert.equal(info.error, 'unet/model.onnx needs external data weights.pb, which is missing');
});

test('scanModelsDir lists the folders with a model_index.json, by id', async () => {
  const models = join(tmp, 'models');
  mkdirSync(models);
  cpSync(base, join(models, 'zeta'), { recursive: true });
  cpSync(base, join(models, 'alpha'), { recursive: true });
  mkdirSync(join(models, 'loras'));
  mkdirSync(join(models, 'not-a-model'));
  writeFileSync(join(models, 'notes.txt'), 'hello');
  assert.deepEqual((await scanModelsDir(models)).map((m) => m.id), ['alpha', 'zeta']);
  assert.deepEqual(await scanModelsDir(join(tmp, 'no-such-folder')), []);
});
