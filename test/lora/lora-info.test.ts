// LoRA files described from their safetensors headers, and a LoRA folder listed: what the registry
// stores and `sdql generate` looks LoRAs up in.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { inspectLoraFile, listLoras, triggerWords } from '../../src/diffusion/lora/lora-info.ts';
import { referenceDir } from '../helpers/reference.ts';
import { writeSafetensors } from './helpers.ts';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sdql-lora-info-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

const tensors = { w: { shape: [2], data: new Float32Array(2) } };

test('trigger words are ss_tag_frequency tags summed over datasets, most frequent first', () => {
  const frequency = JSON.stringify({ '10_a': { castle: 3, ' sky ': 5, moss: 1 }, '5_b': { castle: 4, ocean: 2 } });
  assert.deepEqual(triggerWords(frequency), ['castle', 'sky', 'ocean', 'moss']);
  assert.deepEqual(triggerWords('not json'), []);
  assert.deepEqual(triggerWords(undefined), []);
});

test('inspectLoraFile reads kohya metadata from the header', async () => {
  const path = join(tmp, 'style-x.safetensors');
  await writeSafetensors(path, tensors, { ss_output_name: 'Style X', ss_base_model_version: 'sd_v2', ss_network_dim: '16', ss_network_alpha: '8.0', ss_tag_frequency: '{"d": {"x": 1}}' });
  assert.deepEqual(await inspectLoraFile(path), {
    id: 'style-x',
    name: 'Style X',
    path,
    sizeBytes: (await readFile(path)).length,
    baseModelVersion: 'sd_v2',
    networkDim: 16,
    networkAlpha: 8,
    triggerWords: ['x'],
  });
  const bad = join(tmp, 'bad.safetensors');
  await writeFile(bad, 'definitely not safetensors');
  const info = await inspectLoraFile(bad);
  assert.equal(info.id, 'bad');
  assert.match(info.error ?? '', /^not a valid safetensors file: /);
  assert.deepEqual(info.triggerWords, []);
});

test('listLoras describes the .safetensors files of a folder by name, unusable ones with their error', async () => {
  const dir = join(tmp, 'loras');
  await mkdir(join(dir, 'nested.safetensors'), { recursive: true });
  await writeSafetensors(join(dir, 'b.safetensors'), tensors, { ss_base_model_version: 'sd_v1' });
  await writeSafetensors(join(dir, 'a.SAFETENSORS'), tensors);
  await writeFile(join(dir, 'c.safetensors'), 'truncated');
  await writeFile(join(dir, 'old.ckpt'), 'pickle');
  const listed = await listLoras(dir);
  assert.deepEqual(
    listed.map((l) => [l.id, l.path, l.baseModelVersion, l.error?.replace(/:.*/, '')]),
    [
      ['a', join(dir, 'a.SAFETENSORS'), undefined, undefined],
      ['b', join(dir, 'b.safetensors'), 'sd_v1', undefined],
      ['c', join(dir, 'c.safetensors'), undefined, 'not a valid safetensors file'],
    ],
  );
  assert.deepEqual(await listLoras(join(tmp, 'absent')), []);
});

test('the reference LoRA lists its trigger words', async () => {
  const info = await inspectLoraFile(join(referenceDir, 'loras', 'tiny-style.safetensors'));
  assert.deepEqual(
    { id: info.id, base: info.baseModelVersion, dim: info.networkDim, alpha: info.networkAlpha, words: info.triggerWords, error: info.error },
    { id: 'tiny-style', base: 'sd_v1', dim: 4, alpha: 2, words: ['tinystyle', 'watercolor', 'lighthouse'], error: undefined },
  );
});
