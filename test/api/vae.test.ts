// Separate VAE files (SDQL_MODELS_DIR/vae/) through the public API: listed with what is wrong with
// each; `GenerateInput.vae` decodes with one instead of the model's own. The reference checkpoint's
// VAE, as a file in the LDM layout and under diffusers' names, gives the tiny-sd15 ONNX folder's
// own images; a VAE with other weights other images; an unknown, broken or misfitting VAE is
// BAD_USER_INPUT with nothing stored.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { writeSafetensors } from '../../src/diffusion/fixtures/adapters.ts';
import { collectSse, startTestServer, type TestServer } from '../helpers/api.ts';
import { checkpointRef, vaeFileOf } from '../helpers/checkpoint.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error vae images { url infotext } } }`;
const REQUEST = { modelId: 'tiny-sd15', prompt: 'a red house by the sea', steps: 3, width: 64, height: 64, seed: 7 };

describe('separate VAE files through the API', () => {
  let api: TestServer;
  let modelsDir: string;

  before(async () => {
    modelsDir = mkdtempSync(join(tmpdir(), 'sdql-vae-models-'));
    symlinkSync(join(checkpointRef.file, '..', 'tiny-sd15'), join(modelsDir, 'tiny-sd15'), 'dir');
    const vaeDir = join(modelsDir, 'vae');
    mkdirSync(vaeDir);
    await vaeFileOf(checkpointRef.file, join(vaeDir, 'same-ldm.safetensors'), 'ldm');
    await vaeFileOf(checkpointRef.file, join(vaeDir, 'same-diffusers.safetensors'), 'diffusers');
    // Another decoder: its output convolution's bias shifted, as a VAE with other colours.
    await vaeFileOf(checkpointRef.file, join(vaeDir, 'other.safetensors'), 'diffusers', (name, data) => (name === 'decoder.conv_out.bias' ? data.map((v) => v + 0.3) : data));
    // Another encoder (img2img's): its output convolution's bias shifted.
    await vaeFileOf(checkpointRef.file, join(vaeDir, 'other-encoder.safetensors'), 'ldm', (name, data) => (name === 'encoder.conv_out.bias' ? data.map((v) => v + 0.3) : data));
    writeFileSync(join(vaeDir, 'broken.safetensors'), 'not a safetensors file');
    // A VAE of 8-channel latents (only the tensors its shape is read from).
    const conv = (out: number, inC: number) => ({ shape: [out, inC, 3, 3], data: new Float32Array(out * inC * 9) });
    await writeSafetensors(join(vaeDir, 'wide.safetensors'), {
      'encoder.conv_in.weight': conv(32, 3),
      'encoder.down.0.block.0.conv1.weight': conv(32, 32),
      'decoder.conv_in.weight': conv(32, 8),
      'decoder.conv_out.weight': conv(3, 32),
      'decoder.up.0.block.0.norm1.weight': { shape: [32], data: new Float32Array(32) },
    });
    api = await startTestServer({ modelsDir });
  });
  after(async () => {
    await api?.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  /** Generates REQUEST with `vae`; the generation and its image's pixels. */
  async function generate(vae?: string, extra: Record<string, unknown> = {}): Promise<{ generation: any; pixels: Buffer }> {
    const { generate } = await api.data<any>(GENERATE, { input: { ...REQUEST, ...extra, ...(vae && { vae }) } });
    await collectSse(api.server.url, PROGRESS, { id: generate.id }).done();
    const { generation } = await api.data<any>(GENERATION, { id: generate.id });
    assert.equal(generation.status, 'SUCCEEDED', generation.error);
    const pixels = await sharp(Buffer.from(await (await fetch(generation.images[0].url)).arrayBuffer())).raw().toBuffer();
    return { generation, pixels };
  }

  test('vaes lists the files, with what is wrong with each', async () => {
    const { vaes } = await api.data<any>(`{ vaes { id latentChannels error } }`);
    const byId = new Map<string, any>(vaes.map((v: any) => [v.id, v]));
    assert.deepEqual([...byId.keys()], ['broken', 'other', 'other-encoder', 'same-diffusers', 'same-ldm', 'wide']);
    assert.deepEqual(byId.get('same-ldm'), { id: 'same-ldm', latentChannels: 4, error: null });
    assert.deepEqual(byId.get('same-diffusers'), { id: 'same-diffusers', latentChannels: 4, error: null });
    assert.equal(byId.get('wide').latentChannels, 8);
    assert.match(byId.get('broken').error, /not a safetensors file/);
  });

  test('the model\'s own VAE as a file, in either layout, gives the same image; other weights another', async () => {
    const own = await generate();
    assert.equal(own.generation.vae, null);
    assert.doesNotMatch(own.generation.images[0].infotext, /VAE/);
    for (const id of ['same-ldm', 'same-diffusers']) {
      const { generation, pixels } = await generate(id);
      assert.equal(generation.vae, id);
      assert.ok(pixels.equals(own.pixels), `${id} changed the image`);
      const hash = createHash('sha256').update(readFileSync(join(modelsDir, 'vae', `${id}.safetensors`))).digest('hex').slice(0, 10);
      assert.match(generation.images[0].infotext, new RegExp(`Model: tiny-sd15, VAE hash: ${hash}, VAE: ${id}\\.safetensors`));
    }
    const other = await generate('other');
    assert.ok(!other.pixels.equals(own.pixels), 'a VAE with other weights gave the same image');
  });

  test('img2img encodes its init image with the VAE file\'s encoder', async () => {
    const init = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 60, b: 40 } } }).png().toBuffer();
    const img2img = { initImage: { dataUrl: `data:image/png;base64,${init.toString('base64')}` }, strength: 0.7 };
    const own = await generate(undefined, img2img);
    assert.ok((await generate('same-ldm', img2img)).pixels.equals(own.pixels), 'the same VAE changed the image');
    assert.ok(!(await generate('other-encoder', img2img)).pixels.equals(own.pixels), 'a VAE with another encoder gave the same image');
  });

  test('an unknown, unreadable or misfitting VAE is BAD_USER_INPUT, with nothing stored', async () => {
    const before = (await api.data<any>(`{ generations(first: 100) { edges { node { id } } } }`)).generations.edges.length;
    for (const [vae, message] of [
      ['missing', /unknown VAE "missing"/],
      ['broken', /VAE "broken" cannot be used: not a safetensors file/],
      ['wide', /VAE "wide" does not fit model tiny-sd15: it makes 8-channel latents/],
    ] as const) {
      const result = await api.gql(GENERATE, { input: { ...REQUEST, vae } });
      assert.equal(result.errors?.[0].extensions?.code, 'BAD_USER_INPUT', vae);
      assert.match(result.errors![0].message, message);
    }
    const after = (await api.data<any>(`{ generations(first: 100) { edges { node { id } } } }`)).generations.edges.length;
    assert.equal(after, before, 'a rejected request was stored');
  });
});
