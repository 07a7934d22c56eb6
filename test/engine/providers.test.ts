// Execution providers (providers.ts): the start-up check creates a real session on each provider
// asked for, and a submodel placed on a provider runs (or fails) there alone.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { checkProviders, providersFor } from '../../src/diffusion/providers.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { FixtureDir, diffusionError } from './helpers.ts';

/** A provider no onnxruntime-node build for this platform has. */
const ABSENT = process.platform === 'win32' ? 'coreml' : 'dml';

let fixtures: FixtureDir;
let model: ModelFolderInfo;
before(async () => {
  fixtures = await FixtureDir.create();
  model = await fixtures.model('base');
});
after(() => fixtures.remove());

test('the CPU passes the check; a provider missing from this build fails it, naming what it needs', async () => {
  await checkProviders(['cpu']);
  await assert.rejects(checkProviders(['cpu', ABSENT]), new RegExp(`^Error: execution provider unavailable: ${ABSENT}: not in this onnxruntime-node build for ${process.platform}/${process.arch} \\(it has cpu[^)]*\\); it needs (Windows|macOS)`));
});

test('CUDA, where it cannot create a session, fails the check with the command that installs it and the CUDA and cuDNN it needs', async () => {
  const works = await checkProviders(['cuda']).then(() => true, (error: Error) => {
    assert.match(error.message, /^execution provider unavailable: cuda: /);
    assert.match(error.message, /npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12/);
    assert.match(error.message, /CUDA 12\.x and cuDNN 9\.x/);
    return false;
  });
  // Only a Linux x64 build has it at all.
  if (works) assert.deepEqual([process.platform, process.arch], ['linux', 'x64']);
  assert.equal(ort.listSupportedBackends().some((b) => b.name === 'cuda'), process.platform === 'linux' && process.arch === 'x64');
});

test('a placement gives a submodel its own providers, the others the default list', async () => {
  const placement = { vae_decoder: ['cpu'], text_encoder: ['webgpu', 'cpu'] };
  assert.deepEqual(providersFor(['cuda', 'cpu'], placement, 'vae_decoder'), ['cpu']);
  assert.deepEqual(providersFor(['cuda', 'cpu'], placement, 'unet'), ['cuda', 'cpu']);
  assert.deepEqual(providersFor(undefined, undefined, 'unet'), ['cpu']);

  const loaded = await StableDiffusionModel.load(model, { intraOpNumThreads: 1, placement: { vae_decoder: ['cpu'] } });
  assert.deepEqual(loaded.submodels.map(({ name, model: m }) => [name, m.providers]), [['text_encoder', ['cpu']], ['unet', ['cpu']], ['vae_decoder', ['cpu']], ['vae_encoder', ['cpu']]]);
  await loaded.release();
  // Only the VAE decoder is sent to the provider this build lacks, so its load alone fails.
  await assert.rejects(StableDiffusionModel.load(model, { intraOpNumThreads: 1, placement: { vae_decoder: [ABSENT] } }), diffusionError('MODEL_INVALID', new RegExp(`vae_decoder/model\\.onnx: onnxruntime could not load it .*${ABSENT}`)));
});
