import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openDatabase, type Database } from '../../src/db/index.ts';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { configureLogging } from '../../src/log.ts';
import { Registry } from '../../src/registry/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';

let tmp: string;
let fixture: string;
let testDb: TestDatabase;
let db: Database;
const logLines: string[] = [];

before(async () => {
  configureLogging({ json: true, write: (line) => logLines.push(line) });
  tmp = mkdtempSync(join(tmpdir(), 'sdql-registry-'));
  fixture = join(tmp, 'fixture');
  await createFixturePipeline(fixture);
  testDb = await createTestDatabase();
  db = await openDatabase(testDb.target);
});

after(async () => {
  await db?.close();
  await testDb?.drop();
  rmSync(tmp, { recursive: true, force: true });
  configureLogging({ write: (line) => process.stdout.write(`${line}\n`) });
});

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A LoRA-like safetensors file with the given kohya metadata. */
function writeLora(path: string, metadata: Record<string, string>): void {
  const json = Buffer.from(JSON.stringify({ __metadata__: metadata, w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([prefix, json, Buffer.alloc(8)]));
}

test('scans folders into the database, hashes lazily once, and notices changes', async () => {
  const modelsDir = join(tmp, 'models');
  const lorasDir = join(modelsDir, 'loras');
  const registry = new Registry(db.prisma, modelsDir, lorasDir);

  // A missing models folder is created, with a hint.
  await registry.scan();
  assert.ok(existsSync(modelsDir));
  assert.ok(logLines.some((l) => l.includes('created the models folder') && l.includes('create-demo')));

  cpSync(fixture, join(modelsDir, 'good'), { recursive: true });
  cpSync(fixture, join(modelsDir, 'broken'), { recursive: true });
  unlinkSync(join(modelsDir, 'broken', 'unet', 'model.onnx'));
  mkdirSync(lorasDir);
  writeLora(join(lorasDir, 'style.safetensors'), { ss_network_dim: '4', ss_tag_frequency: '{"d": {"ink": 2, "paper": 1}}' });
  writeFileSync(join(lorasDir, 'junk.safetensors'), 'junk');
  writeFileSync(join(lorasDir, 'readme.txt'), 'not a LoRA');

  const scan = await registry.scan();
  assert.deepEqual(scan.models.map((m) => m.id), ['broken', 'good']);
  assert.deepEqual(scan.loras.map((l) => l.id), ['junk', 'style']);
  assert.equal(registry.model('good')?.paths.unet, join(modelsDir, 'good', 'unet', 'model.onnx'));

  const good = await db.prisma.model.findUniqueOrThrow({ where: { id: 'good' } });
  assert.equal(good.error, null);
  assert.equal(good.supported, true);
  assert.equal(good.precision, 'FP32');
  assert.equal(good.nativeWidth, 64);
  assert.equal(good.unetSha256, null, 'hashed only when asked');
  const broken = await db.prisma.model.findUniqueOrThrow({ where: { id: 'broken' } });
  assert.match(broken.error ?? '', /missing unet\/model\.onnx/);
  assert.equal(broken.supported, false);
  assert.equal(broken.precision, null);
  assert.equal(broken.nativeWidth, null);

  // Two concurrent requests hash the file once; the hash is stored.
  const unet = join(modelsDir, 'good', 'unet', 'model.onnx');
  const hashed = () => logLines.filter((l) => l.includes('hashed file') && l.includes(unet)).length;
  const [h1, h2] = await Promise.all([registry.modelSha256('good'), registry.modelSha256('good')]);
  assert.equal(h1, sha256(unet));
  assert.equal(h2, h1);
  assert.equal(hashed(), 1);
  assert.equal((await db.prisma.model.findUniqueOrThrow({ where: { id: 'good' } })).unetSha256, h1);
  assert.equal(await registry.modelSha256('good'), h1);
  assert.equal(hashed(), 1);
  assert.equal(await registry.modelSha256('broken'), null);

  // A changed UNet file invalidates the stored hash at the next scan.
  appendFileSync(unet, Buffer.alloc(16));
  await registry.scan();
  assert.equal((await db.prisma.model.findUniqueOrThrow({ where: { id: 'good' } })).unetSha256, null);
  assert.equal(await registry.modelSha256('good'), sha256(unet));

  // LoRAs: metadata stored, invalid files listed with their error, hashes lazy too.
  const style = await db.prisma.lora.findUniqueOrThrow({ where: { id: 'style' } });
  assert.deepEqual(style.triggerWords, ['ink', 'paper']);
  assert.equal(style.networkDim, 4);
  assert.match((await db.prisma.lora.findUniqueOrThrow({ where: { id: 'junk' } })).error ?? '', /not a valid safetensors file/);
  assert.equal(await registry.loraSha256('style'), sha256(join(lorasDir, 'style.safetensors')));
  assert.equal(await registry.loraSha256('junk'), null);

  // A removed folder leaves its row (generations keep their model), marked absent.
  await db.prisma.generation.create({
    data: { modelId: 'good', prompt: 'p', scheduler: 'DDIM', width: 64, height: 64, steps: 1, guidanceScale: 7.5, seed: 1n, request: {} },
  });
  rmSync(join(modelsDir, 'good'), { recursive: true });
  unlinkSync(join(lorasDir, 'style.safetensors'));
  const after = await registry.scan();
  assert.deepEqual(after.models.map((m) => m.id), ['broken']);
  assert.equal(registry.model('good'), undefined);
  assert.equal((await db.prisma.model.findUniqueOrThrow({ where: { id: 'good' } })).present, false);
  assert.equal((await db.prisma.lora.findUniqueOrThrow({ where: { id: 'style' } })).present, false);
  assert.equal(await db.prisma.generation.count({ where: { modelId: 'good' } }), 1);
  assert.equal(await registry.modelSha256('good'), null);

  // Back again: present once more.
  cpSync(fixture, join(modelsDir, 'good'), { recursive: true });
  await registry.scan();
  assert.equal((await db.prisma.model.findUniqueOrThrow({ where: { id: 'good' } })).present, true);
});
