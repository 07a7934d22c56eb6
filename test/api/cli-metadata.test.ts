// `sdql generate` writes the server's metadata: a PNG's "parameters" infotext and "sdql" request
// chunks, a JPEG's or WebP's infotext as its EXIF UserComment in AUTOMATIC1111's encoding; pngInfo
// reads all three back through the API.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import exifReader from 'exif-reader';
import sharp from 'sharp';
import { parseInfotext } from '../../src/diffusion/infotext.ts';
import { readPngText } from '../../src/diffusion/png-text.ts';
import { startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';

const SDQL = resolve(fileURLToPath(import.meta.url), '../../../bin/sdql.js');
const PROMPT = 'a (fox:1.2) in snow, 雪の狐';
const NEGATIVE = 'blurry';
const PNG_INFO = `query($image: ImageInput!) { pngInfo(image: $image) { parameters prompt negativePrompt steps seed scheduler model modelHash request } }`;

let api: TestServer;
/** The server's infotext and sdql chunk for the same request. */
let server: { infotext: string; sdql: Record<string, unknown> };

before(async () => {
  api = await startTestServer();
  const { generate } = await api.data<{ generate: { id: string } }>(
    `mutation($input: GenerateInput!) { generate(input: $input) { id } }`,
    { input: { modelId: 'demo', prompt: PROMPT, negativePrompt: NEGATIVE, steps: 3, seed: 7, scheduler: 'EULER_A' } },
  );
  await waitForStatus(api.server.url, generate.id, ['SUCCEEDED']);
  const { generation } = await api.data<{ generation: { images: { url: string; infotext: string }[] } }>(`query($id: ID!) { generation(id: $id) { images { url infotext } } }`, { id: generate.id });
  const png = Buffer.from(await (await fetch(generation.images[0].url)).arrayBuffer());
  server = { infotext: generation.images[0].infotext, sdql: JSON.parse(readPngText(png).sdql) };
});

after(async () => {
  await api?.close();
});

async function cliGenerate(file: string): Promise<Buffer> {
  const out = join(api.tmp, file);
  const args = ['generate', '--model', join(api.config.modelsDir, 'demo'), '--prompt', PROMPT, '--negative-prompt', NEGATIVE, '--steps', '3', '--seed', '7', '--scheduler', 'euler_a', '-o', out];
  await promisify(execFile)(process.execPath, [SDQL, ...args], { timeout: 60_000 });
  return readFileSync(out);
}

async function pngInfo(bytes: Buffer, mime: string) {
  const { pngInfo } = await api.data<{ pngInfo: Record<string, any> }>(PNG_INFO, { image: { dataUrl: `data:${mime};base64,${bytes.toString('base64')}` } });
  return pngInfo;
}

test('a PNG of sdql generate carries the server’s infotext and sdql chunk, and pngInfo reads them', async () => {
  const png = await cliGenerate('out.png');
  const texts = readPngText(png);
  assert.equal(texts.parameters, server.infotext, 'the same infotext as the server writes');
  const { generationId, ...fromServer } = server.sdql;
  assert.equal(typeof generationId, 'string');
  assert.deepEqual(JSON.parse(texts.sdql), fromServer, 'the server’s sdql chunk, less the generation id');

  const info = await pngInfo(png, 'image/png');
  assert.equal(info.parameters, server.infotext);
  assert.deepEqual([info.prompt, info.negativePrompt, info.steps, info.seed, info.scheduler, info.model], [PROMPT, NEGATIVE, 3, 7, 'EULER_A', 'demo']);
  assert.match(info.modelHash, /^[0-9a-f]{10}$/);
  assert.equal(JSON.parse(info.request).seed, 7);
});

for (const [file, mime, format] of [
  ['out.jpg', 'image/jpeg', 'jpeg'],
  ['out.webp', 'image/webp', 'webp'],
] as const) {
  test(`a ${format.toUpperCase()} of sdql generate carries the infotext in EXIF UserComment as AUTOMATIC1111 writes it; pngInfo reads it`, async () => {
    const bytes = await cliGenerate(file);
    const { exif, format: decoded, width, height } = await sharp(bytes).metadata();
    assert.deepEqual([decoded, width, height], [format, 64, 64], 'a whole image, decodable');
    assert.ok(exif, 'an EXIF block');
    // AUTOMATIC1111's reading (modules/images.py, read_info_from_image): piexif.load, then
    // UserComment.load: an 8-byte character code, "UNICODE" meaning UTF-16 big-endian.
    const comment = exifReader(exif).Photo?.UserComment;
    assert.ok(comment, 'a UserComment in the Exif IFD');
    assert.equal(comment.toString('latin1', 0, 8), 'UNICODE\0');
    const text = Buffer.from(comment.subarray(8)).swap16().toString('utf16le');
    assert.equal(text, server.infotext);
    const parsed = parseInfotext(text);
    assert.deepEqual([parsed.prompt, parsed.negativePrompt, parsed.settings.Steps, parsed.settings.Seed], [PROMPT, NEGATIVE, '3', '7']);

    const info = await pngInfo(bytes, mime);
    assert.equal(info.parameters, server.infotext);
    assert.deepEqual([info.prompt, info.negativePrompt, info.steps, info.seed, info.scheduler, info.model], [PROMPT, NEGATIVE, 3, 7, 'EULER_A', 'demo']);
    assert.equal(info.request, null, 'the request is a PNG chunk only');
  });
}

test('pngInfo reads an ASCII UserComment (as sharp writes it), and gives nulls for an EXIF without one', async () => {
  const plain = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).jpeg().toBuffer();
  const ascii = await sharp(plain).withExif({ IFD2: { UserComment: 'a cat\nSteps: 12, Sampler: Euler, Seed: 3' } }).jpeg().toBuffer();
  const info = await pngInfo(ascii, 'image/jpeg');
  assert.deepEqual([info.prompt, info.steps, info.seed], ['a cat', 12, 3]);
  const none = await pngInfo(await sharp(plain).withExif({ IFD0: { Copyright: 'me' } }).jpeg().toBuffer(), 'image/jpeg');
  assert.deepEqual([none.parameters, none.prompt, none.steps], [null, null, null]);
});
