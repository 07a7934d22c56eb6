// Variation seeds through the API: the ends of the strength range give the seed's and the variation
// seed's images exactly, values between differ from both, each image's infotext names its own
// variation seed, and bad values are refused with nothing stored. With a mask or an outpaint the
// initial noise varies as in txt2img: only the masked area changes, and on models whose VAE encoder
// draws no noise (\`latent_sample\`) strength 1 is the variation seed's inpaint exactly.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const IMAGES = `query($id: ID!) { generation(id: $id) { status error images { url seed infotext } } }`;

let api: TestServer;
before(async () => {
  // Encoders without sampling, so that the seed draws nothing but the noise.
  api = await startTestServer({ models: { demo: {}, inpainting: { inpainting: true, vaeEncoderOutput: 'latent_sample' }, plain: { vaeEncoderOutput: 'latent_sample' } } });
});
after(() => api?.close());

const base = { modelId: 'demo', prompt: 'a lighthouse', steps: 3, width: 64, height: 64, scheduler: 'DDIM' };

async function generate(input: Record<string, unknown>): Promise<{ pixels: Buffer; infotext: string; seed: number }[]> {
  const { generate } = await api.data<any>(GENERATE, { input: { ...base, ...input } });
  await waitForStatus(api.server.url, generate.id, ['SUCCEEDED']);
  const { generation } = await api.data<any>(IMAGES, { id: generate.id });
  return Promise.all(
    generation.images.map(async (image: any) => ({
      pixels: await sharp(Buffer.from(await (await fetch(image.url)).arrayBuffer())).raw().toBuffer(),
      infotext: image.infotext,
      seed: image.seed,
    })),
  );
}

test('strength 0 is the seed image, 1 the variation seed image, and between differs from both', async () => {
  const [seedImage] = await generate({ seed: 5 });
  const [variationImage] = await generate({ seed: 9 });
  assert.ok(!seedImage.pixels.equals(variationImage.pixels), 'two seeds gave one image');
  const [none] = await generate({ seed: 5, variationSeed: 9, variationStrength: 0 });
  assert.ok(none.pixels.equals(seedImage.pixels));
  assert.doesNotMatch(none.infotext, /Variation seed/);
  const [full] = await generate({ seed: 5, variationSeed: 9, variationStrength: 1 });
  assert.ok(full.pixels.equals(variationImage.pixels));
  const [half] = await generate({ seed: 5, variationSeed: 9, variationStrength: 0.3 });
  assert.ok(!half.pixels.equals(seedImage.pixels) && !half.pixels.equals(variationImage.pixels));
  assert.match(half.infotext, /Seed: 5, Size: 64x64, .*Variation seed: 9, Variation seed strength: 0\.3/);
});

test('image i of a batch varies towards variationSeed + i; a missing variation seed is drawn and recorded', async () => {
  const batch = await generate({ seed: 20, numImages: 2, variationSeed: 40, variationStrength: 1 });
  const [second] = await generate({ seed: 41 });
  assert.ok(batch[1].pixels.equals(second.pixels));
  assert.match(batch[0].infotext, /Variation seed: 40,/);
  assert.match(batch[1].infotext, /Seed: 21,.*Variation seed: 41,/);
  const [drawn] = await generate({ seed: 3, variationStrength: 0.5 });
  const recorded = Number(/Variation seed: (\d+),/.exec(drawn.infotext)?.[1]);
  assert.ok(Number.isInteger(recorded), drawn.infotext);
  const [again] = await generate({ seed: 3, variationSeed: recorded, variationStrength: 0.5 });
  assert.ok(again.pixels.equals(drawn.pixels), 'the recorded variation seed does not give the image again');
});

test('variation reaches both passes of a hires fix: strength 1 with a latent upscaler is the variation seed\'s hires image', async () => {
  const hires = { upscaler: 'latent', scale: 1.5, strength: 0.5 };
  const [varied] = await generate({ seed: 5, variationSeed: 9, variationStrength: 1, hires });
  const [plain] = await generate({ seed: 9, hires });
  const [seedOnly] = await generate({ seed: 5, hires });
  assert.ok(varied.pixels.equals(plain.pixels));
  assert.ok(!varied.pixels.equals(seedOnly.pixels));
});

describe('with a mask, variation changes the masked area only; strength 0 is the plain inpaint, 1 the variation seed\'s', () => {
  const [width, height] = [64, 64];
  const box = [16, 16, 48, 40];
  const inBox = (i: number) => {
    const [x, y] = [i % width, Math.floor(i / width)];
    return x >= box[0] && x < box[2] && y >= box[1] && y < box[3];
  };
  let editing: Record<string, unknown>;
  let init: Buffer;
  before(async () => {
    init = Buffer.from(Array.from({ length: width * height * 3 }, (_, i) => (i * 37) % 251));
    const mask = Buffer.alloc(width * height);
    for (let y = box[1]; y < box[3]; y++) mask.fill(255, y * width + box[0], y * width + box[2]);
    const encode = async (data: Buffer, channels: 1 | 3) => `data:image/png;base64,${(await sharp(data, { raw: { width, height, channels } }).png().toBuffer()).toString('base64')}`;
    editing = { initImage: { dataUrl: await encode(init, 3) }, mask: { dataUrl: await encode(mask, 1) }, maskBlur: 0 };
  });

  // 9 channels (the noise only starts the latents) and 4 (it also re-noises the kept area each step).
  for (const modelId of ['inpainting', 'plain']) {
    test(modelId, async () => {
      const request = { modelId, ...editing };
      const [plain] = await generate({ ...request, seed: 5 });
      const [none] = await generate({ ...request, seed: 5, variationSeed: 9, variationStrength: 0 });
      assert.ok(none.pixels.equals(plain.pixels));
      const [half] = await generate({ ...request, seed: 5, variationSeed: 9, variationStrength: 0.5 });
      let changedInside = 0;
      for (let i = 0; i < width * height; i++) {
        const differs = [0, 1, 2].some((c) => half.pixels[i * 3 + c] !== plain.pixels[i * 3 + c]);
        if (differs) changedInside++;
        assert.ok(inBox(i) || !differs, `pixel ${i} outside the mask changed`);
        if (!inBox(i)) assert.ok([0, 1, 2].every((c) => half.pixels[i * 3 + c] === init[i * 3 + c]), `pixel ${i} is not the init image's`);
      }
      assert.ok(changedInside > 0, 'the variation changed nothing');
      assert.match(half.infotext, /Variation seed: 9, Variation seed strength: 0\.5/);
      const [full] = await generate({ ...request, seed: 5, variationSeed: 9, variationStrength: 1 });
      const [variationImage] = await generate({ ...request, seed: 9 });
      assert.ok(full.pixels.equals(variationImage.pixels), 'strength 1 is not the variation seed\'s inpaint');
      assert.ok(!full.pixels.equals(plain.pixels));
    });
  }

  test('an outpaint varies too: strength 1 is the variation seed\'s outpaint', async () => {
    const request = { modelId: 'inpainting', initImage: editing.initImage, outpaint: { left: 16, right: 0, top: 0, bottom: 8 } };
    const [full] = await generate({ ...request, seed: 5, variationSeed: 9, variationStrength: 1 });
    const [variationImage] = await generate({ ...request, seed: 9 });
    const [plain] = await generate({ ...request, seed: 5 });
    assert.ok(full.pixels.equals(variationImage.pixels));
    assert.ok(!full.pixels.equals(plain.pixels));
  });
});

test('bad variation settings are BAD_USER_INPUT naming the field, and store nothing', async () => {
  const { generations: before } = await api.data<any>(`{ generations(first: 100) { edges { node { id } } } }`);
  for (const [input, field] of [
    [{ variationSeed: 1, variationStrength: 1.5 }, /variationStrength/],
    [{ variationSeed: 1, variationStrength: -0.1 }, /variationStrength/],
    [{ variationSeed: -1, variationStrength: 0.5 }, /variationSeed/],
    [{ variationSeed: 2 ** 32, variationStrength: 0.5 }, /variationSeed/],
  ] as const) {
    const result = await api.gql(GENERATE, { input: { ...base, ...input } });
    assert.equal(result.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(result));
    assert.match(result.errors![0].message, field);
  }
  const { generations } = await api.data<any>(`{ generations(first: 100) { edges { node { id } } } }`);
  assert.equal(generations.edges.length, before.edges.length);
});
