// Inpainting and outpainting through generate, on fixture models with a 9-channel inpainting UNet
// and with a plain 4-channel one: the init image's pixels survive outside the mask, bit for bit;
// ONLY_MASKED gives the init image's size back; outpainting grows the image and keeps the original;
// the masks' forms agree; the infotext carries AUTOMATIC1111's keys; the mask is kept and shown with
// the generation, and goes with it.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { noise } from '../engine/helpers.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error width height images { url width height infotext } } }`;

let api: TestServer;
before(async () => {
  api = await startTestServer({ models: { demo: {}, inpainting: { inpainting: true } } });
});
after(() => api?.close());

const png = (data: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4) => sharp(data, { raw: { width, height, channels } }).png().toBuffer();
const dataUrl = (bytes: Buffer) => `data:image/png;base64,${bytes.toString('base64')}`;

/** A grey mask, white inside the box [x1, x2) × [y1, y2). */
function rectMask(width: number, height: number, [x1, y1, x2, y2]: number[]): Buffer {
  const data = Buffer.alloc(width * height);
  for (let y = y1; y < y2; y++) data.fill(255, y * width + x1, y * width + x2);
  return data;
}

/** Runs a request to the end and returns its first image's pixels (RGB), with the generation. */
async function run(input: Record<string, unknown>): Promise<{ id: string; pixels: Buffer; generation: any }> {
  const { generate } = await api.data<any>(GENERATE, { input: { prompt: 'a red door', steps: 3, seed: 7, previewEvery: 0, ...input } });
  await waitForStatus(api.server.url, generate.id, ['SUCCEEDED', 'FAILED']);
  const { generation } = await api.data<any>(GENERATION, { id: generate.id });
  assert.equal(generation.status, 'SUCCEEDED', generation.error);
  const served = Buffer.from(await (await fetch(generation.images[0].url)).arrayBuffer());
  return { id: generate.id, pixels: await sharp(served).removeAlpha().raw().toBuffer(), generation };
}

/** Pixels (x, y) of `region` where the results differ and where they are the same as `init`. */
function compare(result: Buffer, init: Buffer, width: number, inside: (x: number, y: number) => boolean) {
  let changedInside = 0;
  let changedOutside = 0;
  for (let i = 0; i < result.length / 3; i++) {
    const same = result[i * 3] === init[i * 3] && result[i * 3 + 1] === init[i * 3 + 1] && result[i * 3 + 2] === init[i * 3 + 2];
    if (same) continue;
    if (inside(i % width, Math.floor(i / width))) changedInside++;
    else changedOutside++;
  }
  return { changedInside, changedOutside };
}

describe('with restoreUnmasked and maskBlur 0, pixels outside the mask are the init image\'s own', () => {
  const [width, height] = [96, 80];
  const box = [24, 16, 56, 48];
  const inBox = (x: number, y: number) => x >= box[0] && x < box[2] && y >= box[1] && y < box[3];
  let init: Buffer;
  let mask: Buffer;
  before(async () => {
    init = noise(width, height, 1);
    mask = await png(rectMask(width, height, box), width, height, 1);
  });

  for (const modelId of ['inpainting', 'demo']) {
    for (const inpaintArea of ['WHOLE_PICTURE', 'ONLY_MASKED']) {
      test(`${modelId}, ${inpaintArea}`, async () => {
        const { pixels, generation } = await run({
          modelId,
          initImage: { dataUrl: dataUrl(await png(init, width, height, 3)) },
          mask: { dataUrl: dataUrl(mask) },
          maskBlur: 0,
          inpaintArea,
        });
        // ONLY_MASKED paints at the model's native size and pastes back into the whole image.
        assert.deepEqual([generation.images[0].width, generation.images[0].height], [width, height]);
        if (inpaintArea === 'ONLY_MASKED') assert.deepEqual([generation.width, generation.height], [64, 64]);
        const { changedInside, changedOutside } = compare(pixels, init, width, inBox);
        assert.equal(changedOutside, 0);
        assert.ok(changedInside > (box[2] - box[0]) * (box[3] - box[1]) / 2, `only ${changedInside} pixels were repainted`);
      });
    }
  }

  test('restoreUnmasked: false gives the decoder\'s pixels outside the mask too', async () => {
    const { pixels } = await run({
      modelId: 'inpainting',
      initImage: { dataUrl: dataUrl(await png(init, width, height, 3)) },
      mask: { dataUrl: dataUrl(mask) },
      maskBlur: 0,
      restoreUnmasked: false,
    });
    assert.ok(compare(pixels, init, width, inBox).changedOutside > 0);
  });
});

test('outpainting grows the image and keeps the original where the blurred mask does not reach', async () => {
  const [width, height] = [64, 64];
  const init = noise(width, height, 2);
  const outpaint = { left: 16, top: 8, bottom: 8 };
  const initImage = { dataUrl: dataUrl(await png(init, width, height, 3)) };
  for (const maskBlur of [0, 4]) {
    const { pixels, generation } = await run({ modelId: 'inpainting', initImage, outpaint, maskBlur });
    assert.deepEqual([generation.images[0].width, generation.images[0].height], [80, 80]);
    // Where the mask's blur (about 2.5σ) does not reach.
    const reach = maskBlur === 0 ? 0 : Math.ceil(2.6 * maskBlur) + 1;
    let same = 0;
    let checked = 0;
    for (let y = reach; y < height; y++) {
      for (let x = reach; x < width; x++) {
        if (y >= height - reach) continue;
        checked++;
        const i = ((y + 8) * 80 + x + 16) * 3;
        const j = (y * width + x) * 3;
        if (pixels[i] === init[j] && pixels[i + 1] === init[j + 1] && pixels[i + 2] === init[j + 2]) same++;
      }
    }
    assert.equal(same, checked, `maskBlur ${maskBlur}: ${checked - same} original pixels changed`);
    const infotext: string = generation.images[0].infotext;
    assert.match(infotext, /Masked content: fill/);
    assert.match(infotext, /Size: 80x80/);
  }
});

test('grey, alpha and luminance masks, and an inverted mask inverted back, paint alike', async () => {
  const [width, height] = [64, 64];
  const initImage = { dataUrl: dataUrl(await png(noise(width, height, 3), width, height, 3)) };
  const grey = rectMask(width, height, [8, 8, 40, 32]);
  const rgba = Buffer.alloc(width * height * 4);
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < grey.length; i++) {
    rgba[i * 4 + 3] = grey[i];
    rgb.fill(grey[i], i * 3, i * 3 + 3);
  }
  const inverted = Buffer.from(grey.map((v) => 255 - v));
  const results = [];
  for (const [mask, invertMask] of [
    [await png(grey, width, height, 1), false],
    [await png(rgba, width, height, 4), false],
    [await png(rgb, width, height, 3), false],
    [await png(inverted, width, height, 1), true],
  ] as const) {
    results.push((await run({ modelId: 'demo', initImage, mask: { dataUrl: dataUrl(mask) }, invertMask, strength: 0.7 })).pixels);
  }
  for (const result of results.slice(1)) assert.ok(result.equals(results[0]));
});

test('each inpaintFill starts the masked area from something else, and leaves the rest alone', async () => {
  const [width, height] = [64, 64];
  const init = noise(width, height, 8);
  const box = [16, 16, 48, 40];
  const inBox = (x: number, y: number) => x >= box[0] && x < box[2] && y >= box[1] && y < box[3];
  const request = { modelId: 'demo', initImage: { dataUrl: dataUrl(await png(init, width, height, 3)) }, mask: { dataUrl: dataUrl(await png(rectMask(width, height, box), width, height, 1)) }, maskBlur: 0, strength: 0.6 };
  const results: Buffer[] = [];
  for (const inpaintFill of ['ORIGINAL', 'FILL', 'LATENT_NOISE', 'LATENT_NOTHING']) {
    const { pixels, generation } = await run({ ...request, inpaintFill });
    assert.equal(compare(pixels, init, width, inBox).changedOutside, 0, inpaintFill);
    assert.ok(results.every((other) => !other.equals(pixels)), `${inpaintFill} paints as another fill does`);
    assert.match(generation.images[0].infotext, /Masked content: (original|fill|latent noise|latent nothing)/);
    results.push(pixels);
  }
});

test('the infotext, pngInfo and the generation record the settings; the mask goes with its generation', async () => {
  const [width, height] = [64, 64];
  const init = await png(noise(width, height, 4), width, height, 3);
  const mask = await png(rectMask(width, height, [16, 16, 32, 48]), width, height, 1);
  const { id, generation } = await run({
    modelId: 'demo',
    initImage: { dataUrl: dataUrl(init) },
    mask: { dataUrl: dataUrl(mask) },
    inpaintArea: 'ONLY_MASKED',
    onlyMaskedPadding: 8,
    inpaintFill: 'LATENT_NOISE',
    strength: 0.75,
  });
  const infotext: string = generation.images[0].infotext;
  for (const setting of ['Denoising strength: 0.75', 'Mask blur: 4', 'Masked content: latent noise', 'Inpaint area: Only masked', 'Only masked padding, pixels: 8']) {
    assert.ok(infotext.includes(setting), `${setting} in ${infotext}`);
  }
  const { generation: recorded } = await api.data<any>(
    `query($id: ID!) { generation(id: $id) { images { id } initImage { sha256 } mask { sha256 format dataUrl image { id } }
      inpaint { invertMask maskBlur inpaintFill inpaintArea onlyMaskedPadding restoreUnmasked outpaint { left } } } }`,
    { id },
  );
  assert.equal(recorded.mask.dataUrl, dataUrl(mask));
  assert.equal(recorded.mask.format, 'png');
  assert.equal(recorded.mask.image, null);
  assert.deepEqual(recorded.inpaint, { invertMask: false, maskBlur: 4, inpaintFill: 'LATENT_NOISE', inpaintArea: 'ONLY_MASKED', onlyMaskedPadding: 8, restoreUnmasked: true, outpaint: null });
  const { pngInfo } = await api.data<any>(`query($id: ID!) { pngInfo(image: { imageId: $id }) { strength settings { key value } request } }`, { id: recorded.images[0].id });
  assert.equal(pngInfo.strength, 0.75);
  assert.ok(pngInfo.settings.some((s: any) => s.key === 'Masked content' && s.value === 'latent noise'));
  const request = JSON.parse(pngInfo.request);
  assert.equal(request.mask.sha256, recorded.mask.sha256);
  assert.equal(request.inpaintArea, 'ONLY_MASKED');
  assert.equal(request.mask.path, undefined, 'no internal path in the PNG');

  // The mask sent again as the dataUrl the generation shows: the same file, kept for both generations.
  const files = [recorded.initImage.sha256, recorded.mask.sha256].map((sha) => join(api.config.dataDir, 'inputs', `${sha}.png`));
  const again = await run({ modelId: 'demo', initImage: { dataUrl: dataUrl(init) }, mask: { dataUrl: recorded.mask.dataUrl }, strength: 0.75 });
  const { generation: second } = await api.data<any>(`query($id: ID!) { generation(id: $id) { mask { sha256 } } }`, { id: again.id });
  assert.equal(second.mask.sha256, recorded.mask.sha256);
  const remove = (generationId: string) => api.data<any>(`mutation($id: ID!) { deleteGeneration(id: $id) }`, { id: generationId });
  await remove(id);
  assert.deepEqual(files.map(existsSync), [true, true], 'the other generation still uses them');
  await remove(again.id);
  assert.deepEqual(files.map(existsSync), [false, false]);
});

describe('bad editing requests are BAD_USER_INPUT naming the field, and store nothing', () => {
  let noEncoder: TestServer;
  before(async () => {
    noEncoder = await startTestServer({ models: { plain: { vaeEncoderOutput: 'none' } } });
  });
  after(() => noEncoder?.close());

  test('each is refused', async () => {
    const [width, height] = [64, 64];
    const init = { dataUrl: dataUrl(await png(noise(width, height, 5), width, height, 3)) };
    const mask = { dataUrl: dataUrl(await png(rectMask(width, height, [0, 0, 8, 8]), width, height, 1)) };
    const otherSize = { dataUrl: dataUrl(await png(rectMask(72, 64, [0, 0, 8, 8]), 72, 64, 1)) };
    const truncated = { dataUrl: dataUrl((await png(noise(width, height, 6), width, height, 3)).subarray(0, 200)) };
    const cases: [Record<string, unknown>, RegExp, TestServer?][] = [
      [{ mask }, /mask needs an initImage/],
      [{ outpaint: { left: 8 } }, /outpaint needs an initImage/],
      [{ initImage: init, mask: otherSize }, /mask is 72×64 but initImage is 64×64/],
      [{ initImage: init, mask: { dataUrl: 'data:image/png;base64,AAAA' } }, /mask could not be read/],
      [{ initImage: init, mask: truncated }, /mask is damaged or truncated/],
      [{ initImage: init, mask: { dataUrl: 'not a data url' } }, /^mask: the image data URL/],
      [{ initImage: init, outpaint: { left: -8 } }, /outpaint\.left must be a whole number of pixels, 0 or more/],
      [{ initImage: init, outpaint: { top: 12 } }, /outpaint\.top 12 is not a multiple of 8/],
      [{ initImage: init, outpaint: {} }, /outpaint adds no pixels/],
      [{ initImage: init, outpaint: { right: 2048 } }, /outpaint makes the image 2112×64/],
      [{ initImage: init, outpaint: { right: 712, bottom: 712 } }, /outpaint makes the image 776×776, which is more than 589824 pixels, model demo's limit: one image of it needs 5\.5 GiB/],
      [{ initImage: init, mask, maskBlur: 65 }, /maskBlur must be an integer from 0 to 64/],
      [{ initImage: init, mask, onlyMaskedPadding: -1 }, /onlyMaskedPadding must be/],
      [{ initImage: init, maskBlur: 2 }, /maskBlur applies only with a mask or an outpaint/],
      [{ initImage: init, mask, modelId: 'plain' }, /model plain has no VAE encoder, so it cannot inpaint or outpaint \(mask\)/, noEncoder],
      [{ prompt: 'x', modelId: 'inpainting' }, /inpainting model: it needs an initImage and a mask/],
    ];
    for (const [input, message, server = api] of cases) {
      const inputsDir = join(server.config.dataDir, 'inputs');
      const files = () => (existsSync(inputsDir) ? readdirSync(inputsDir) : []);
      const filesBefore = files();
      const before = await server.data<any>(`{ generations(first: 100) { edges { node { id } } } }`);
      const result = await server.gql(GENERATE, { input: { modelId: 'demo', prompt: 'p', steps: 2, ...input } });
      assert.equal(result.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', `${JSON.stringify(input).slice(0, 120)}: ${JSON.stringify(result.errors)}`);
      assert.match(result.errors![0].message, message);
      const now = await server.data<any>(`{ generations(first: 100) { edges { node { id } } } }`);
      assert.equal(now.generations.edges.length, before.generations.edges.length, 'nothing stored');
      assert.deepEqual(files(), filesBefore, 'no file left');
    }
  });
});
