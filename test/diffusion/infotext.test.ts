import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { formatInfotext, parseInfotext, schedulerFromA1111 } from '../../src/diffusion/infotext.ts';
import { addPngText, readPngText } from '../../src/diffusion/png-text.ts';

test('infotext is written as AUTOMATIC1111 writes it', () => {
  const text = formatInfotext({
    prompt: 'a cat, (masterpiece:1.2)',
    negativePrompt: 'blurry',
    steps: 25,
    scheduler: 'DPMPP_2M_KARRAS',
    guidanceScale: 7.5,
    seed: 1234,
    width: 512,
    height: 768,
    modelHash: 'abcdef1234',
    modelName: 'sd15',
    extra: { Lora: 'style: 0.8' },
  });
  assert.equal(
    text,
    'a cat, (masterpiece:1.2)\nNegative prompt: blurry\nSteps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234, Size: 512x768, Model hash: abcdef1234, Model: sd15, Lora: "style: 0.8"',
  );
});

test('infotext parses back, quoted values included', () => {
  const parsed = parseInfotext(
    'a cat\non two lines\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Lora hashes: "a: 1, b: 2"',
  );
  assert.equal(parsed.prompt, 'a cat\non two lines');
  assert.equal(parsed.negativePrompt, 'blurry');
  assert.deepEqual(parsed.settings, { Steps: '20', Sampler: 'Euler a', 'CFG scale': '7', Seed: '42', Size: '512x512', 'Lora hashes': 'a: 1, b: 2' });
  assert.equal(schedulerFromA1111(parsed.settings.Sampler), 'EULER_A');
});

test('a last line with fewer than three settings is part of the prompt, as in AUTOMATIC1111', () => {
  const parsed = parseInfotext('just a prompt\nwith: one colon');
  assert.equal(parsed.prompt, 'just a prompt\nwith: one colon');
  assert.deepEqual(parsed.settings, {});
});

test('PNG text chunks round-trip, Latin-1 as tEXt and other text as iTXt, and the image still decodes', async () => {
  const png = await sharp({ create: { width: 4, height: 3, channels: 3, background: '#336699' } }).png().toBuffer();
  const texts = { parameters: 'déjà vu\nSteps: 1', sdql: '{"prompt":"猫"}' };
  const tagged = addPngText(png, texts);
  assert.deepEqual(readPngText(tagged), texts);
  assert.ok(tagged.includes(Buffer.from('tEXtparameters')));
  assert.ok(tagged.includes(Buffer.from('iTXtsdql')));
  const { width, height } = await sharp(tagged).metadata();
  assert.deepEqual([width, height], [4, 3]);
  assert.deepEqual(readPngText(Buffer.from('not a png')), {});
});
