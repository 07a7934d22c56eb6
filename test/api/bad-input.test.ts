// Every way a client can get a request wrong: each gets its error code, the server stays healthy,
// and nothing is stored (no generation row, no init image file).
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { LIMITS } from '../../src/diffusion/limits.ts';
import { MAX_REQUEST_BYTES } from '../../src/server/limits.ts';
import { startTestServer, type TestServer } from '../helpers/api.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;

let api: TestServer;
let png: string;
let truncated: string;

before(async () => {
  api = await startTestServer({ models: { demo: {}, noencoder: { vaeEncoderOutput: 'none' }, inpaint: { inpainting: true } } });
  const bytes = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png().toBuffer();
  png = `data:image/png;base64,${bytes.toString('base64')}`;
  // The header and the first rows survive: only decoding the whole image finds the damage.
  const whole = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png({ compressionLevel: 0 }).toBuffer();
  truncated = `data:image/png;base64,${whole.subarray(0, Math.floor(whole.length * 0.6)).toString('base64')}`;
});
after(() => api.close());

const base = { modelId: 'demo', prompt: 'a cat', steps: 2 };
const cases: [name: string, input: Record<string, unknown>, code: string, message?: RegExp][] = [
  ['unknown model', { ...base, modelId: 'nope' }, 'NOT_FOUND', /nope/],
  ['unknown scheduler', { ...base, scheduler: 'WARP' }, 'BAD_USER_INPUT'],
  ['size not a multiple of 8', { ...base, width: 100 }, 'BAD_USER_INPUT', /multiple of 8/],
  ['size beyond the maximum', { ...base, width: LIMITS.maxSide + 8 }, 'BAD_USER_INPUT', /width/],
  ['too many pixels', { ...base, width: 2048, height: 2048 }, 'BAD_USER_INPUT', /pixels/],
  ['zero steps', { ...base, steps: 0 }, 'BAD_USER_INPUT', /steps/],
  ['151 steps', { ...base, steps: 151 }, 'BAD_USER_INPUT', /steps/],
  ['zero images', { ...base, numImages: 0 }, 'BAD_USER_INPUT', /numImages/],
  ['17 images', { ...base, numImages: 17 }, 'BAD_USER_INPUT', /numImages/],
  ['negative seed', { ...base, seed: -1 }, 'BAD_USER_INPUT', /seed/],
  ['seed beyond 32 bits', { ...base, seed: 2 ** 32 }, 'BAD_USER_INPUT', /seed/],
  ['fractional seed', { ...base, seed: 1.5 }, 'BAD_USER_INPUT'],
  ['negative eta', { ...base, eta: -0.5 }, 'BAD_USER_INPUT', /eta/],
  ['eta 1e308', { ...base, eta: 1e308 }, 'BAD_USER_INPUT', /eta must be from 0 to 1/],
  ['a NUL in the prompt', { ...base, prompt: 'a\u0000b' }, 'BAD_USER_INPUT', /NUL/],
  ['a lone surrogate in the prompt', { ...base, prompt: 'a\uD800b' }, 'BAD_USER_INPUT', /surrogate/],
  ['guidance rescale above 1', { ...base, guidanceRescale: 2 }, 'BAD_USER_INPUT', /guidanceRescale/],
  ['strength without an init image', { ...base, strength: 0.5 }, 'BAD_USER_INPUT', /strength/],
  ['strength 0', { ...base, initImage: { dataUrl: 'INIT' }, strength: 0 }, 'BAD_USER_INPUT', /strength/],
  ['strength above 1', { ...base, initImage: { dataUrl: 'INIT' }, strength: 1.5 }, 'BAD_USER_INPUT', /strength/],
  ['steps × strength below 1', { ...base, initImage: { dataUrl: 'INIT' }, strength: 0.1 }, 'BAD_USER_INPUT', /strength/],
  ['two image sources', { ...base, initImage: { dataUrl: 'INIT', imageId: 'x' } }, 'BAD_USER_INPUT', /exactly one/],
  ['no image source', { ...base, initImage: {} }, 'BAD_USER_INPUT', /exactly one/],
  ['unknown image id', { ...base, initImage: { imageId: 'missing' } }, 'NOT_FOUND'],
  ['a data URL that is not an image', { ...base, initImage: { dataUrl: 'data:text/plain;base64,aGVsbG8=' } }, 'BAD_USER_INPUT', /data URL must look like/],
  ['an image that does not decode', { ...base, initImage: { dataUrl: 'data:image/png;base64,aGVsbG8=' } }, 'BAD_USER_INPUT', /could not be read/],
  ['an init image for a model without VAE encoder', { ...base, modelId: 'noencoder', initImage: { dataUrl: 'INIT' } }, 'BAD_USER_INPUT', /VAE encoder/],
  ['an inpainting model for txt2img', { ...base, modelId: 'inpaint' }, 'BAD_USER_INPUT', /inpainting/],
  ['a prompt beyond the limit', { ...base, prompt: 'x'.repeat(LIMITS.maxPromptChars + 1) }, 'BAD_USER_INPUT', /prompt/],
  ['priority beyond the range', { ...base, priority: 1000 }, 'BAD_USER_INPUT', /priority/],
  ['negative previewEvery', { ...base, previewEvery: -1 }, 'BAD_USER_INPUT', /previewEvery/],
  ['a GraphQL type error', { ...base, steps: 'many' }, 'BAD_USER_INPUT'],
  ['a truncated PNG', { ...base, initImage: { dataUrl: 'TRUNCATED' } }, 'BAD_USER_INPUT', /damaged or truncated/],
];

test('bad requests get their error code and store nothing', async () => {
  for (const [name, input, code, message] of cases) {
    const initImage = input.initImage as Record<string, unknown> | undefined;
    const placeholder: Record<string, string> = { INIT: png, TRUNCATED: truncated };
    const dataUrl = placeholder[initImage?.dataUrl as string];
    const resolved = dataUrl ? { ...input, initImage: { ...initImage, dataUrl } } : input;
    const result = await api.gql(GENERATE, { input: resolved });
    assert.equal(result.data?.generate ?? null, null, `${name}: accepted`);
    const error = result.errors?.[0];
    assert.equal(error?.extensions?.code, code, `${name}: ${JSON.stringify(result.errors)}`);
    if (message) assert.match(error!.message, message, name);
  }
  const { generations } = await api.data<any>(`{ generations(first: 1) { edges { node { id } } } }`);
  assert.equal(generations.edges.length, 0, 'a rejected request was stored');
  const inputs = join(api.config.dataDir, 'inputs');
  assert.ok(!existsSync(inputs) || readdirSync(inputs).length === 0, 'an init image of a rejected request was kept');
  assert.equal((await fetch(`${api.server.url}/healthz`)).status, 200);
});

test('an oversized request body is refused before it is read', async () => {
  const response = await fetch(`${api.server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: GENERATE, variables: { input: { ...base, prompt: 'x'.repeat(MAX_REQUEST_BYTES) } } }),
  });
  assert.equal(response.status, 413);
  assert.equal((await fetch(`${api.server.url}/healthz`)).status, 200);
});

test('an unknown image is 404 and an invalid document is a validation error', async () => {
  assert.equal((await fetch(`${api.server.url}/images/nothing.png`)).status, 404);
  const invalid = await api.gql(`{ generations { nope } }`);
  assert.equal(invalid.errors?.[0].extensions?.code, 'GRAPHQL_VALIDATION_FAILED');
});
