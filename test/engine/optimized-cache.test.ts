// The optimised-model cache (optimized-cache.ts) with real onnxruntime sessions on fixture models:
// the first load saves the optimised graph, the next loads it (the session says where its graph came
// from), every change of what the graph depends on makes a new entry, a damaged entry is rebuilt,
// and the outputs are those of the model as given.
import assert from 'node:assert/strict';
import { open, readdir, readFile, rm, stat, truncate, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createDemoAdapters } from '../../src/diffusion/fixtures/adapters.ts';
import { normalizeAdapters } from '../../src/diffusion/lora/adapt.ts';
import type { ModelFolderInfo } from '../../src/diffusion/model-folder.ts';
import { OnnxModel, type RuntimeOptions } from '../../src/diffusion/onnx-model.ts';
import { DATA_FILE, GRAPH_FILE, OptimizedModelCache } from '../../src/diffusion/optimized-cache.ts';
import { StableDiffusionModel } from '../../src/diffusion/stable-diffusion.ts';
import { FixtureDir } from './helpers.ts';

const FEEDS = {
  sample: { data: Float32Array.from({ length: 2 * 4 * 8 * 8 }, (_, i) => Math.sin(i)), dims: [2, 4, 8, 8] },
  timestep: { data: Float32Array.of(500, 500), dims: [2] },
  encoder_hidden_states: { data: Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.cos(i * 0.1)), dims: [2, 77, 32] },
};

describe('optimised-model cache', () => {
  let fixtures: FixtureDir;
  let model: ModelFolderInfo;
  let cacheDir: string;
  let runtime: RuntimeOptions;
  const entries = async () => (await readdir(cacheDir).catch(() => [])).filter((name) => !name.startsWith('.tmp-'));
  const load = async () => {
    const unet = await OnnxModel.load(model.paths.unet, runtime);
    try {
      return { from: unet.loadedFrom, output: (await unet.run(FEEDS)).out_sample.data };
    } finally {
      await unet.release();
    }
  };

  before(async () => {
    fixtures = await FixtureDir.create();
    model = await fixtures.model('base');
    cacheDir = join(fixtures.root, 'optimized');
    runtime = { intraOpNumThreads: 1, optimizedCacheDir: cacheDir };
  });
  after(() => fixtures.remove());

  test('the first load saves the optimised graph with its weights apart; the next loads it, with the same outputs', async () => {
    const plain = await OnnxModel.load(model.paths.unet, { intraOpNumThreads: 1 });
    const expected = (await plain.run(FEEDS)).out_sample.data;
    await plain.release();
    assert.equal(plain.loadedFrom, 'source');

    const first = await load();
    assert.equal(first.from, 'source');
    const [entry] = await entries();
    assert.ok(entry, 'an entry was written');
    const files = await readdir(join(cacheDir, entry));
    assert.deepEqual(files.sort(), [GRAPH_FILE, DATA_FILE, 'manifest.json'].sort());
    assert.ok((await stat(join(cacheDir, entry, DATA_FILE))).size > (await stat(join(cacheDir, entry, GRAPH_FILE))).size, 'the weights are in the data file');
    assert.deepEqual((await readdir(cacheDir)).filter((n) => n.startsWith('.tmp-')), [], 'no temporary folder is left');

    const second = await load();
    assert.equal(second.from, 'optimized-cache');
    assert.deepEqual(await entries(), [entry]);
    assert.deepEqual(second.output, expected);
    assert.deepEqual(first.output, expected);
  });

  test('a changed model file makes a new entry', async () => {
    await load();
    const before = await entries();
    const later = new Date(Date.now() + 5000);
    await utimes(model.paths.unet, later, later);
    assert.equal((await load()).from, 'source');
    assert.equal((await entries()).length, before.length + 1);
    assert.equal((await load()).from, 'optimized-cache');
  });

  test('the key changes with the providers, the variant and the onnxruntime version', async () => {
    const cache = new OptimizedModelCache(cacheDir);
    const source = { path: model.paths.unet, variant: '', providers: ['cpu'] };
    const keys = [
      await cache.key(source),
      await cache.key({ ...source, providers: ['cuda', 'cpu'] }),
      await cache.key({ ...source, variant: 'adapters x' }),
      await new OptimizedModelCache(cacheDir, 'onnxruntime 9.99.0 x64 some CPU').key(source),
    ];
    assert.equal(new Set(keys).size, keys.length);
    assert.equal(await cache.key(source), keys[0], 'the same source gives the same key');
  });

  test('a damaged entry is rebuilt, never used', async () => {
    await load();
    const entry = await new OptimizedModelCache(cacheDir).key({ path: model.paths.unet, variant: '', providers: ['cpu'] });
    const dir = join(cacheDir, entry);
    const damages: [string, () => Promise<void>][] = [
      ['one byte of the weights flipped', async () => {
        const fh = await open(join(dir, DATA_FILE), 'r+');
        const byte = Buffer.alloc(1);
        await fh.read(byte, 0, 1, 100);
        byte[0] ^= 0xff;
        await fh.write(byte, 0, 1, 100);
        await fh.close();
      }],
      ['the graph truncated', () => truncate(join(dir, GRAPH_FILE), 10)],
      ['the manifest missing', () => rm(join(dir, 'manifest.json'))],
      ['the manifest garbled', async () => {
        const fh = await open(join(dir, 'manifest.json'), 'r+');
        await fh.write('{{{', 0);
        await fh.close();
      }],
    ];
    const expected = (await load()).output;
    for (const [label, damage] of damages) {
      await damage();
      const rebuilt = await load();
      assert.equal(rebuilt.from, 'source', label);
      assert.deepEqual(rebuilt.output, expected, label);
      assert.equal(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')).key, entry, `${label}: the entry is written again`);
      assert.equal((await load()).from, 'optimized-cache', `${label}: and used after`);
    }
  });

  test('each LoRA set merged into a pipeline is an entry of its own', async () => {
    const { lora } = await createDemoAdapters(model.dir, join(fixtures.root, 'loras'), join(fixtures.root, 'embeddings'));
    const pipeline = async (weight: number) => {
      const loaded = await StableDiffusionModel.load(model, runtime, normalizeAdapters([{ name: 'demo', path: lora, weight }]));
      const from = Object.fromEntries(loaded.submodels.map(({ name, model: m }) => [name, m.loadedFrom]));
      const output = (await loaded.unet.run(FEEDS)).out_sample.data;
      await loaded.release();
      return { from, output };
    };
    const first = await pipeline(1);
    assert.equal(first.from.unet, 'source');
    const again = await pipeline(1);
    assert.equal(again.from.unet, 'optimized-cache');
    assert.equal(again.from.vae_decoder, 'optimized-cache');
    assert.deepEqual(again.output, first.output);
    const other = await pipeline(0.5);
    assert.equal(other.from.unet, 'source', 'another weight is another merged UNet');
    assert.notDeepEqual(other.output, first.output);
    assert.equal((await pipeline(0.5)).from.unet, 'optimized-cache');
  });
});
