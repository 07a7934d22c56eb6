// `sdql generate` end to end, as a user runs it: a child process writing image files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { Engine } from '../../src/diffusion/engine.ts';
import { quantize } from '../../src/diffusion/image.ts';
import { readImageInfo } from '../../src/diffusion/image-info.ts';
import { inpaintDefaults } from '../../src/diffusion/inpaint.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { compareImages, loadReference, referenceDir } from '../helpers/reference.ts';
import { FixtureDir } from './helpers.ts';

const SDQL = resolve(fileURLToPath(import.meta.url), '../../../bin/sdql.js');

/** Runs `sdql generate …`; resolves with the exit code and output whether or not it succeeds. */
async function sdqlGenerate(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [SDQL, 'generate', ...args], { timeout: 60_000, env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout: string; stderr: string };
    assert.equal(typeof e.code, 'number', `sdql did not exit normally: ${String(error)}`);
    return { code: e.code!, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('sdql generate', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('demo');
  });
  after(async () => {
    await fixtures.remove();
  });

  test('writes the PNG the engine makes', async () => {
    const out = join(fixtures.root, 'out.png');
    const args = ['--model', model.dir, '--prompt', 'a red cube', '--steps', '3', '--seed', '1', '--size', '96x64', '--scheduler', 'euler_a', '-o', out];
    const { code, stderr } = await sdqlGenerate(args);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /96x64, EULER_A, 3 steps, seed 1/);
    assert.match(stderr, /wrote .*out\.png \(seed 1\)/);

    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.format, info.width, info.height, info.channels], ['raw', 96, 64, 3]);
    const engine = new Engine();
    try {
      const request = await resolveRequest(model, { prompt: 'a red cube', steps: 3, seed: 1, width: 96, height: 64, scheduler: 'EULER_A' });
      const expected = quantize((await engine.run(model, request)).images[0].image);
      assert.ok(Buffer.from(expected).equals(data), 'the file holds the engine’s image');
    } finally {
      await engine.close();
    }
  });

  test('writes one file per image with -i suffixes', async () => {
    const out = join(fixtures.root, 'batch.webp');
    const { code, stderr } = await sdqlGenerate(['--model', model.dir, '--prompt', 'x', '--steps', '1', '--seed', '5', '--num-images', '2', '-o', out]);
    assert.equal(code, 0, stderr);
    for (const [i, seed] of [[0, 5], [1, 6]]) {
      const file = join(fixtures.root, `batch-${i}.webp`);
      assert.match(stderr, new RegExp(`wrote .*batch-${i}\\.webp \\(seed ${seed}\\)`));
      const meta = await sharp(file).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['webp', 64, 64]);
    }
    assert.equal(existsSync(out), false);
  });

  test('inpaints with --mask and its flags: the engine\'s image, with the inpainting infotext', async () => {
    const init = join(fixtures.root, 'init.png');
    const mask = join(fixtures.root, 'mask.png');
    const noise = Buffer.from(Array.from({ length: 96 * 64 * 3 }, (_, i) => (i * 37) % 251));
    writeFileSync(init, await sharp(noise, { raw: { width: 96, height: 64, channels: 3 } }).png().toBuffer());
    const white = await sharp({ create: { width: 32, height: 24, channels: 3, background: '#ffffff' } }).png().toBuffer();
    writeFileSync(mask, await sharp({ create: { width: 96, height: 64, channels: 3, background: '#000000' } }).composite([{ input: white, left: 40, top: 16 }]).png().toBuffer());
    const out = join(fixtures.root, 'inpainted.png');
    const { code, stderr } = await sdqlGenerate([
      '--model', model.dir, '--prompt', 'a hole', '--steps', '2', '--seed', '3', '--init', init, '--mask', mask,
      '--invert-mask', '--mask-blur', '0', '--inpaint-fill', 'latent_nothing', '--inpaint-area', 'only_masked', '--only-masked-padding', '8', '-o', out,
    ]);
    assert.equal(code, 0, stderr);

    const settings = { invertMask: true, maskBlur: 0, inpaintFill: 'LATENT_NOTHING', inpaintArea: 'ONLY_MASKED', onlyMaskedPadding: 8 };
    const engine = new Engine();
    try {
      const request = await resolveRequest(model, { prompt: 'a hole', steps: 2, seed: 3, initImage: readFileSync(init), mask: readFileSync(mask), ...settings });
      assert.deepEqual(request.inpaint, inpaintDefaults({ ...settings, mask: request.inpaint?.mask }), 'the request inpaints as the flags say');
      const expected = quantize((await engine.run(model, request)).images[0].image);
      assert.ok(Buffer.from(expected).equals(await sharp(out).raw().toBuffer()), 'the file holds the engine’s image');
    } finally {
      await engine.close();
    }
    const { parameters, sdql } = await readImageInfo(readFileSync(out));
    for (const setting of ['Mask blur: 0', 'Inpaint not masked', 'Masked content: latent nothing', 'Inpaint area: Only masked', 'Only masked padding, pixels: 8']) assert.ok(parameters.includes(setting), `${setting} in ${parameters}`);
    assert.match(JSON.parse(sdql).mask.sha256, /^[0-9a-f]{64}$/);
  });

  for (const [label, args, message] of [
    ['--mask without --init', ['--mask', 'mask.png'], /error: mask needs an initImage/],
    ['--mask-blur without --mask', ['--mask-blur', '3'], /error: maskBlur applies only with a mask or an outpaint/],
    ['a --mask file that does not exist', ['--init', 'init.png', '--mask', 'absent.png'], /error: cannot read --mask .*absent\.png/],
    ['an unknown --inpaint-fill', ['--init', 'init.png', '--mask', 'mask.png', '--inpaint-fill', 'paint'], /error: inpaintFill must be one of ORIGINAL, FILL, LATENT_NOISE, LATENT_NOTHING/],
    ['a malformed --size', ['--size', '512'], /--size must look like 512x512, got 512/],
    ['a --size off the VAE grid', ['--size', '100x64'], /error: width 100 is not a multiple of 8/],
    ["a --size beyond the model's pixel limit", ['--size', '1024x1024'], /error: 1024×1024 is more than 589824 pixels, model \S+'s limit: one image of it needs 16\.8 GiB for the UNet's attention/],
    ['a non-numeric --steps', ['--steps', 'many'], /error: --steps must be a number, got "many"/],
  ] as const) {
    test(`exits non-zero with a message for ${label}`, async () => {
      const out = join(fixtures.root, 'bad.png');
      // The inputs the inpainting test wrote.
      const inFixtures = args.map((a) => (a.endsWith('.png') ? join(fixtures.root, a) : a));
      const { code, stderr } = await sdqlGenerate(['--model', model.dir, '--prompt', 'x', '-o', out, ...inFixtures]);
      assert.notEqual(code, 0);
      assert.match(stderr, message);
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
      assert.equal(existsSync(out), false);
    });
  }

  test('exits non-zero for a model folder that does not exist', async () => {
    const { code, stderr } = await sdqlGenerate(['--model', join(fixtures.root, 'absent'), '--prompt', 'x']);
    assert.notEqual(code, 0);
    assert.match(stderr, /error: no model ".*absent"/);
  });

  test('applies <lora:…> tags from SDQL_LORAS_DIR: the reference LoRA case', async () => {
    const [c] = loadReference().cases.filter((k) => k.case.lora);
    const out = join(fixtures.root, 'lora.png');
    const { code, stderr } = await sdqlGenerate(
      ['--model', join(referenceDir, 'models', c.case.model), '--prompt', `${c.case.prompt} <lora:${c.case.lora!.name}:${c.case.lora!.weight}>`,
        '--steps', String(c.case.steps), '--guidance-scale', String(c.case.guidance_scale), '--scheduler', c.case.scheduler, '--seed', String(c.case.seed),
        '--size', `${c.case.width}x${c.case.height}`, '-o', out],
      { ...process.env, SDQL_LORAS_DIR: join(referenceDir, 'loras') },
    );
    assert.equal(code, 0, stderr);
    const actual = await sharp(out).raw().toBuffer();
    const expected = await sharp(join(referenceDir, c.images[0].png)).removeAlpha().raw().toBuffer();
    const { within1, maxDiff } = compareImages(actual, expected);
    assert.ok(within1 >= 0.99 && maxDiff <= 4, `${(within1 * 100).toFixed(2)}% within 1 level, max ${maxDiff}`);
  });
});
