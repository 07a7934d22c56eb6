// Bad requests and broken model folders end in a typed DiffusionError that names the problem:
// BAD_USER_INPUT from resolveRequest, MODEL_INVALID from loading, never a crash or a hang.
import assert from 'node:assert/strict';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { Engine } from '../../src/diffusion/engine.ts';
import { buildUNet } from '../../src/diffusion/fixtures/unet.ts';
import { LIMITS } from '../../src/diffusion/limits.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { encodeModel } from '../../src/diffusion/onnx/proto.ts';
import { resolveRequest, type GenerateParams } from '../../src/diffusion/request.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { FixtureDir, diffusionError, initImagePng } from './helpers.ts';

describe('bad input', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;
  let initImage: Buffer;
  const engine = new Engine();

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('base');
    initImage = await initImagePng(64, 64);
  });
  after(async () => {
    await engine.close();
    await fixtures.remove();
  });

  describe('resolveRequest rejects with BAD_USER_INPUT', () => {
    const cases: [label: string, params: () => Partial<GenerateParams>, message: RegExp][] = [
      ['an unknown scheduler', () => ({ scheduler: 'EULER_B' }), /unknown scheduler "EULER_B"/],
      ['a lower-case scheduler name', () => ({ scheduler: 'euler' }), /unknown scheduler "euler"/],
      ['a width not a multiple of the VAE scale factor', () => ({ width: 100 }), /width 100 is not a multiple of 8/],
      ['a height not a multiple of the VAE scale factor', () => ({ height: 68 }), /height 68 is not a multiple of 8/],
      ['a side beyond the maximum', () => ({ width: 4096 }), /width must be from 64 to 2048 pixels, got 4096/],
      ['a side below the minimum', () => ({ height: 32 }), /height must be from 64 to 2048 pixels, got 32/],
      ['more pixels than the maximum', () => ({ width: 1024, height: 1024 }), /1024×1024 is more than 589824 pixels, model base's limit: one image of it needs 16\.8 GiB for the UNet's attention, more than the 5\.3 GiB allowed/],
      ['0 steps', () => ({ steps: 0 }), /steps must be an integer from 1 to 150, got 0/],
      ['151 steps', () => ({ steps: 151 }), /steps must be an integer from 1 to 150, got 151/],
      ['1.5 steps', () => ({ steps: 1.5 }), /steps must be an integer from 1 to 150, got 1.5/],
      ['0 images', () => ({ numImages: 0 }), /numImages must be from 1 to 16, got 0/],
      ['17 images', () => ({ numImages: 17 }), /numImages must be from 1 to 16, got 17/],
      ['strength 0', () => ({ initImage, strength: 0 }), /strength must be in \(0, 1\], got 0/],
      ['strength 1.5', () => ({ initImage, strength: 1.5 }), /strength must be in \(0, 1\], got 1.5/],
      ['strength without an init image', () => ({ strength: 0.5 }), /strength applies only with an init image/],
      ['steps × strength below 1', () => ({ initImage, steps: 3, strength: 0.3 }), /steps × strength must be at least 1 \(3 × 0.3/],
      ['more LCM steps than original_inference_steps', () => ({ scheduler: 'LCM', steps: 51 }), /scheduler LCM with model .*: LCMScheduler: 51 steps exceed the model's original_inference_steps \(50\)/],
      ['more LCM hires steps than original_inference_steps', () => ({ scheduler: 'LCM', steps: 4, hires: { scale: 1.5, steps: 60 } }), /LCMScheduler: 60 steps exceed/],
      ['a negative eta', () => ({ eta: -0.5 }), /eta must be from 0 to 1, got -0.5/],
      ['an eta of 1e308', () => ({ eta: 1e308 }), /eta must be from 0 to 1, got 1e\+308/],
      ['a NUL in the prompt', () => ({ prompt: 'a\0b' }), /prompt holds a NUL character/],
      ['a lone surrogate in the negative prompt', () => ({ negativePrompt: 'a\uD800b' }), /negativePrompt holds a lone UTF-16 surrogate/],
      ['seed −1', () => ({ seed: -1 }), /seed must be an integer from 0 to 4294967295, got -1/],
      ['seed 2^32', () => ({ seed: 2 ** 32 }), /seed must be an integer from 0 to 4294967295, got 4294967296/],
      ['seed 1.5', () => ({ seed: 1.5 }), /seed must be an integer from 0 to 4294967295, got 1.5/],
      ['guidanceRescale 2', () => ({ guidanceRescale: 2 }), /guidanceRescale must be from 0 to 1, got 2/],
      ['a NaN guidanceScale', () => ({ guidanceScale: NaN }), /guidanceScale must be from 0 to 50, got NaN/],
      ['a prompt beyond the length limit', () => ({ prompt: 'a'.repeat(LIMITS.maxPromptChars + 1) }), /prompt is 10001 characters; the limit is 10000/],
      ['an unreadable init image', () => ({ initImage: Buffer.from('not an image at all') }), /init image could not be read: send a PNG, JPEG or WebP file/],
      ['an init image beyond the byte limit', () => ({ initImage: new Uint8Array(LIMITS.maxImageBytes + 1) }), /init image is 20971521 bytes; the limit is 20971520/],
    ];
    for (const [label, params, message] of cases) {
      test(label, async () => {
        await assert.rejects(resolveRequest(model, { prompt: 'a cube', ...params() }), diffusionError('BAD_USER_INPUT', message));
      });
    }

    test('an init image in an unsupported format (GIF)', async () => {
      const gif = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).gif().toBuffer();
      await assert.rejects(resolveRequest(model, { prompt: 'a cube', initImage: gif }), diffusionError('BAD_USER_INPUT', /init image is gif: send a PNG, JPEG or WebP file/));
    });

    test('an init image with more pixels than the limit (a decompression bomb)', async () => {
      const huge = await sharp({ create: { width: 4100, height: 4100, channels: 3, background: '#808080' } }).png({ compressionLevel: 1 }).toBuffer();
      await assert.rejects(resolveRequest(model, { prompt: 'a cube', initImage: huge }), diffusionError('BAD_USER_INPUT', /more than 16777216 pixels/));
    });

    test('an init image for a model without a VAE encoder', async () => {
      const noEncoder = await fixtures.model('no-encoder', { vaeEncoderOutput: 'none' });
      assert.equal(noEncoder.canImg2img, false);
      await assert.rejects(resolveRequest(noEncoder, { prompt: 'a cube', initImage }), diffusionError('BAD_USER_INPUT', /no-encoder has no VAE encoder, so it cannot take an init image/));
      await resolveRequest(noEncoder, { prompt: 'a cube' });
    });

    test('txt2img on an inpainting (9-channel) model', async () => {
      const inpainting = await fixtures.model('inpainting', { inpainting: true });
      assert.equal(inpainting.unetInChannels, 9);
      await assert.rejects(resolveRequest(inpainting, { prompt: 'a cube' }), diffusionError('BAD_USER_INPUT', /inpainting is an inpainting model: it needs an initImage and a mask/));
    });

    test('a valid request passes and gets its defaults', async () => {
      const request = await resolveRequest(model, { prompt: 'a cube' });
      assert.equal(request.width, 64);
      assert.equal(request.steps, 25);
      assert.equal(request.scheduler, 'DPMPP_2M_KARRAS');
    });
  });

  describe('broken model folders fail with MODEL_INVALID', () => {
    /** A fresh fixture, broken by `damage`, run through a fresh Engine. */
    const expectInvalid = async (name: string, damage: (dir: string) => Promise<void>, message: RegExp, options = {}) => {
      const info = await fixtures.model(name, options);
      await damage(info.dir);
      const broken = await inspectModelFolder(info.dir);
      const request = await resolveRequest(broken, { prompt: 'a cube', steps: 1, seed: 1 });
      await assert.rejects(StableDiffusionModel.load(broken), diffusionError('MODEL_INVALID', message));
      await assert.rejects(engine.run(broken, request), diffusionError('MODEL_INVALID', message));
      return broken;
    };

    test('a missing UNet', async () => {
      const broken = await expectInvalid('no-unet', (dir) => rm(join(dir, 'unet', 'model.onnx')), /missing unet\/model\.onnx/);
      assert.equal(broken.supported, false);
    });

    test('a missing tokenizer file', async () => {
      await expectInvalid('no-merges', (dir) => rm(join(dir, 'tokenizer', 'merges.txt')), /missing tokenizer\/merges\.txt/);
    });

    test('a missing external data file', async () => {
      await expectInvalid('no-weights', (dir) => rm(join(dir, 'text_encoder', 'weights.pb')), /text_encoder\/model\.onnx needs external data weights\.pb, which is missing/, {
        externalData: 'weights.pb',
      });
    });

    test('a truncated model file', async () => {
      const damage = async (dir: string) => {
        const path = join(dir, 'vae_decoder', 'model.onnx');
        await truncate(path, Math.floor((await readFile(path)).length / 2));
      };
      await expectInvalid('truncated', damage, /vae_decoder\/model\.onnx/);
    });

    // A UNet copied in from a pipeline whose text encoder is 64 wide, with or without its config.
    const foreignUNet = (withConfig: boolean) => async (dir: string) => {
      const unet = buildUNet(99, 'fp32', { inChannels: 4, blockOutChannels: [32, 64], crossAttentionDim: 64, heads: 8, timestep: 'float32' });
      await writeFile(join(dir, 'unet', 'model.onnx'), encodeModel(unet));
      if (withConfig) {
        const configPath = join(dir, 'unet', 'config.json');
        const config = JSON.parse(await readFile(configPath, 'utf8'));
        await writeFile(configPath, JSON.stringify({ ...config, cross_attention_dim: 64 }));
      }
    };

    test('a UNet with another cross-attention width than its config', async () => {
      await expectInvalid('foreign-unet', foreignUNet(false), /encoder_hidden_states width 64 differs from its config \(32\)/);
    });

    test('a UNet with another cross-attention width than the text encoder', async () => {
      await expectInvalid('foreign-unet-and-config', foreignUNet(true), /the text encoder gives 32-wide embeddings but the UNet expects 64/);
    });
  });
});
