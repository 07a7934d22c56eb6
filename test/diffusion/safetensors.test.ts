import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readSafetensorsHeader, SafetensorsError } from '../../src/diffusion/safetensors.ts';
import { referenceDir } from '../helpers/reference.ts';

const tmp = mkdtempSync(join(tmpdir(), 'sdql-safetensors-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A safetensors file from a header object and a data length. */
function file(name: string, header: unknown, dataBytes: number, headerText: string | Buffer = JSON.stringify(header)): string {
  const json = Buffer.from(headerText);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const path = join(tmp, name);
  writeFileSync(path, Buffer.concat([prefix, json, Buffer.alloc(dataBytes)]));
  return path;
}

test('reads the reference kohya LoRA header', async () => {
  const header = await readSafetensorsHeader(join(referenceDir, 'loras', 'tiny-style.safetensors'));
  assert.equal(Object.keys(header.tensors).length, 216);
  assert.deepEqual(header.tensors['lora_unet_down_blocks_1_attentions_0_proj_in.alpha'], { dtype: 'F32', shape: [], data_offsets: [0, 4] });
  assert.equal(header.metadata.ss_network_dim, '4');
  assert.equal(header.metadata.ss_base_model_version, 'sd_v1');
  assert.equal(header.dataStart, 8 + 30256);
});

test('returns tensors, metadata and where the data starts', async () => {
  const path = file(
    'ok.safetensors',
    {
      __metadata__: { format: 'pt' },
      b: { dtype: 'F16', shape: [2, 3], data_offsets: [4, 16] },
      a: { dtype: 'F32', shape: [], data_offsets: [0, 4] },
    },
    16,
  );
  const header = await readSafetensorsHeader(path);
  assert.deepEqual(header.metadata, { format: 'pt' });
  assert.deepEqual(header.tensors.b, { dtype: 'F16', shape: [2, 3], data_offsets: [4, 16] });
  assert.equal(header.dataStart, 8 + Buffer.byteLength(JSON.stringify({ __metadata__: { format: 'pt' }, b: header.tensors.b, a: header.tensors.a })));
});

test('refuses invalid files, saying what is wrong', async () => {
  const tensor = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const short = join(tmp, 'short');
  writeFileSync(short, Buffer.alloc(5));
  const huge = join(tmp, 'huge');
  const prefix = Buffer.alloc(16);
  prefix.writeBigUInt64LE(2n ** 40n);
  writeFileSync(huge, prefix);
  const cases: [string, RegExp][] = [
    [short, /too short/],
    [huge, /runs past the end of the file/],
    [file('notjson', null, 0, '{"a": '), /not UTF-8 JSON/],
    [file('array', null, 0, '[1, 2]'), /not a JSON object/],
    [file('badutf8', null, 0, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), /not UTF-8 JSON/],
    [file('dtype', { t: { ...tensor, dtype: 'F128' } }, 8), /tensor t has an unknown dtype "F128"/],
    [file('shape', { t: { ...tensor, shape: [-1] } }, 8), /tensor t has an invalid shape/],
    [file('offsets', { t: { ...tensor, data_offsets: [8, 0] } }, 8), /tensor t has invalid data_offsets/],
    [file('size', { t: { ...tensor, shape: [3] } }, 8), /needs 12 bytes but data_offsets span 8/],
    [file('gap', { t: { ...tensor, data_offsets: [4, 12] } }, 12), /starts at byte 4, expected 0/],
    [file('overlap', { t: tensor, u: { ...tensor, data_offsets: [4, 12] } }, 12), /tensor u starts at byte 4, expected 8/],
    [file('trailing', { t: tensor }, 9), /cover 8 bytes but the file holds 9/],
    [file('truncated', { t: tensor }, 4), /cover 8 bytes but the file holds 4/],
    [file('metadata', { __metadata__: { n: 4 }, t: tensor }, 8), /__metadata__\.n is not a string/],
  ];
  for (const [path, expected] of cases) {
    await assert.rejects(readSafetensorsHeader(path), (error: Error) => {
      assert.ok(error instanceof SafetensorsError, `${path}: ${error}`);
      assert.match(error.message, expected, path);
      return true;
    });
  }
});
