// `sdql models convert`, as users run it: the checkpoint converted into the server's cache with a
// progress report, and errors for what is no checkpoint.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../../src/diffusion/fixtures/adapters.ts';
import { checkpointRef } from '../helpers/checkpoint.ts';
import { DEADLINE_MS } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/sdql.js', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'sdql-convert-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function sdql(args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: tmp, env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: DEADLINE_MS });
  assert.equal(result.error, undefined, `sdql ${args.join(' ')} did not exit by itself: ${result.error?.message}`);
  return result;
}

test('sdql models convert converts a checkpoint into SDQL_DATA_DIR/models-cache/<sha256>/ with progress, once', async () => {
  const models = join(tmp, 'models');
  mkdirSync(models);
  symlinkSync(checkpointRef.file, join(models, 'tiny-sd15.safetensors'));
  symlinkSync(checkpointRef.yaml, join(models, 'tiny-sd15.yaml'));
  symlinkSync(checkpointRef.vocabDir, join(models, 'clip-tokenizer'), 'dir');
  const args = ['models', 'convert', 'tiny-sd15', '--models-dir', models, '--data-dir', join(tmp, 'data')];
  const sha = createHash('sha256').update(readFileSync(checkpointRef.file)).digest('hex');

  const first = sdql(args);
  assert.equal(first.status, 0, first.stderr);
  const dir = join(tmp, 'data', 'models-cache', sha);
  assert.match(first.stdout, new RegExp(`tiny-sd15 \\(SD1, model hash ${sha.slice(0, 10)}\\) is converted in ${dir}`));
  // Not a terminal: a line per tenth of the weights, ending with all of them.
  const lines = first.stderr.split('\n').filter((l) => / of /.test(l));
  assert.ok(lines.length >= 2, first.stderr);
  assert.match(lines.at(-1)!, /(\S+ MB) of \1/);
  assert.deepEqual(readdirSync(join(tmp, 'data', 'models-cache')), [sha]);
  for (const submodel of ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder']) assert.ok(existsSync(join(dir, submodel, 'model.onnx')));

  const second = sdql(args);
  assert.equal(second.status, 0, second.stderr);
  assert.equal(second.stderr.split('\n').filter((l) => / of /.test(l)).length, 0, 'converted once');

  await writeSafetensors(join(models, 'lora.safetensors'), { 'lora_unet_x.alpha': { shape: [], data: Float32Array.of(1) } });
  const refused = sdql(['models', 'convert', join(models, 'lora.safetensors'), '--models-dir', models, '--data-dir', join(tmp, 'data')]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /not a Stable Diffusion checkpoint/);
  assert.equal(sdql(['models', 'convert', 'absent', '--models-dir', models]).status, 1);
});
