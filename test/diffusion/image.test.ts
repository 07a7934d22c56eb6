import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { DiffusionError } from '../../src/diffusion/errors.ts';
import { decodeInitImage, encodeImage, inputImageBytes, probeImage, quantize, vaeOutputToImage } from '../../src/diffusion/image.ts';
import { LIMITS } from '../../src/diffusion/limits.ts';

const solid = (width: number, height: number, format: 'png' | 'jpeg' | 'webp', background = { r: 255, g: 0, b: 0, alpha: 1 }) =>
  sharp({ create: { width, height, channels: 4, background } })[format]().toBuffer();

test('init images decode to [-1, 1] planes, flattening transparency onto white', async () => {
  const red = await decodeInitImage(await solid(16, 8, 'png'), 16, 8);
  assert.deepEqual([red.width, red.height, red.pixels.length], [16, 8, 3 * 16 * 8]);
  assert.deepEqual([red.pixels[0], red.pixels[128], red.pixels[256]], [1, -1, -1]);
  const clear = await decodeInitImage(await solid(8, 8, 'png', { r: 0, g: 0, b: 0, alpha: 0 }), 8, 8);
  assert.ok(clear.pixels.every((v) => v === 1));
});

test('init images are stretched only when the size differs', async () => {
  const image = await decodeInitImage(await solid(20, 10, 'webp'), 16, 8);
  assert.deepEqual([image.width, image.height], [16, 8]);
  assert.deepEqual(await probeImage(await solid(20, 10, 'jpeg')), { width: 20, height: 10, format: 'jpeg' });
});

test('unreadable, unsupported and oversized init images are rejected as bad input', async () => {
  const rejects = (bytes: Uint8Array, pattern: RegExp) =>
    assert.rejects(probeImage(bytes), (e: unknown) => e instanceof DiffusionError && e.code === 'BAD_USER_INPUT' && pattern.test(e.message));
  await rejects(Buffer.from('definitely not an image'), /could not be read/);
  await rejects(await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).gif().toBuffer(), /is gif/);
  await rejects(new Uint8Array(LIMITS.maxImageBytes + 1), /bytes; the limit/);
  const side = Math.sqrt(LIMITS.maxInputPixels) + 16;
  const bomb = await sharp({ create: { width: side, height: side, channels: 3, background: '#000' } }).png({ compressionLevel: 9 }).toBuffer();
  await rejects(bomb, /more than \d+ pixels/);
});

test('input images are read from data URLs, bytes and files, refused when malformed or over the byte limit', async () => {
  const png = await solid(4, 4, 'png');
  const bad = (pattern: RegExp) => (e: unknown) => e instanceof DiffusionError && e.code === 'BAD_USER_INPUT' && pattern.test(e.message);
  assert.deepEqual(await inputImageBytes(`data:image/png;base64,${png.toString('base64')}`), png);
  assert.deepEqual(await inputImageBytes(png), png);
  assert.deepEqual(await inputImageBytes(new Blob([png])), new Uint8Array(png));
  for (const url of ['data:text/plain;base64,aGVsbG8=', 'data:image/png,raw', `${'x'.repeat(100)},data:image/png;base64,AA==`]) {
    await assert.rejects(inputImageBytes(url), bad(/data URL must look like data:image\/png;base64/), url);
  }
  // Sizes are known before anything is decoded or read: a file that would fail to read is refused first.
  const huge = 'A'.repeat(Math.ceil((LIMITS.maxImageBytes + 8) / 3) * 4);
  await assert.rejects(inputImageBytes(`data:image/webp;base64,${huge}`), bad(/the image is \d+ bytes; the limit is/));
  const unreadable = { size: LIMITS.maxImageBytes + 1, arrayBuffer: () => Promise.reject(new Error('read')) };
  await assert.rejects(inputImageBytes(unreadable), bad(new RegExp(`the image is ${LIMITS.maxImageBytes + 1} bytes`)));
  await assert.rejects(inputImageBytes(new Uint8Array(LIMITS.maxImageBytes + 1)), bad(/bytes; the limit/));
});

test('VAE output is clamped, scaled and quantised like diffusers (round half to even)', async () => {
  // One pixel per channel value: -1 → 0, 0 → 0.5 → 127.5 → 128 (even), 2 → clamped 1 → 255.
  const image = vaeOutputToImage(Float32Array.of(-1, 0, 2), 1, 1);
  assert.deepEqual([...image.data], [0, 0.5, 1]);
  assert.deepEqual([...quantize(image)], [0, 128, 255]);
  const png = await encodeImage(image, 'png');
  const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([...data], [0, 128, 255]);
});
