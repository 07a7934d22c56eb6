import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { ModelCache } from '../../src/diffusion/model-cache.ts';
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';
import { FixtureDir } from './helpers.ts';

class FakeModel {
  releases = 0;
  constructor(readonly key: string) {}
  async release(): Promise<void> {
    await tick();
    this.releases++;
  }
}

/** A cache whose loads are recorded, with helpers to use an entry now or hold it until released. */
function setup(budgetBytes: number) {
  const cache = new ModelCache<FakeModel>(budgetBytes);
  const loaded: FakeModel[] = [];
  const load = (key: string) => async () => {
    await tick();
    const model = new FakeModel(key);
    loaded.push(model);
    return model;
  };
  const use = (key: string, bytes: number) => cache.use(key, bytes, load(key), async (m) => m);
  /** Uses `key` until the returned `done()` is called. */
  const hold = async (key: string, bytes: number) => {
    let done!: () => void;
    const released = new Promise<void>((resolve) => (done = resolve));
    let ready!: (m: FakeModel) => void;
    const value = new Promise<FakeModel>((resolve) => (ready = resolve));
    const finished = cache.use(key, bytes, load(key), async (m) => (ready(m), await released, m));
    return { model: await value, done: async () => (done(), await finished) };
  };
  const released = () => loaded.filter((m) => m.releases > 0).map((m) => m.key);
  return { cache, loaded, load, use, hold, released };
}

describe('ModelCache', () => {
  test('evicts the least recently used entries when over the byte budget', async () => {
    const { cache, use, released } = setup(100);
    await use('a', 40);
    await use('b', 40);
    await use('a', 40);
    assert.deepEqual(released(), []);
    await use('c', 40);
    assert.deepEqual(released(), ['b']);
    assert.deepEqual(cache.keys.sort(), ['a', 'c']);
    assert.equal(cache.usedBytes, 80);
  });

  test('makes room before loading, so the budget bounds memory during a load too', async () => {
    const { cache, load, use, loaded } = setup(100);
    await use('a', 60);
    let aReleasesAtLoad = -1;
    const loadB = async () => {
      aReleasesAtLoad = loaded[0].releases;
      return load('b')();
    };
    await cache.use('b', 60, loadB, async (m) => m);
    assert.equal(aReleasesAtLoad, 1);
    assert.deepEqual(cache.keys, ['b']);
  });

  test('never evicts an entry in use', async () => {
    const { cache, use, hold, released } = setup(100);
    const a = await hold('a', 60);
    await use('b', 60);
    assert.deepEqual(released(), [], 'a is in use, b was just loaded');
    assert.equal(cache.usedBytes, 120);
    assert.equal(a.model.releases, 0);
    await a.done();
    await use('b', 60);
    assert.deepEqual(released(), ['a'], 'once idle, a goes');
    assert.equal(cache.usedBytes, 60);
  });

  test('loads once for concurrent requests of one key', async () => {
    const { use, loaded } = setup(100);
    const values = await Promise.all([use('a', 10), use('a', 10), use('a', 10)]);
    assert.equal(loaded.length, 1);
    assert.ok(values.every((v) => v === loaded[0]));
    assert.equal(await use('a', 10), loaded[0], 'and reuses it afterwards');
  });

  test('does not cache a failed load', async () => {
    const { cache, use, loaded } = setup(100);
    let calls = 0;
    const failing = async () => {
      calls++;
      throw new Error('corrupt model');
    };
    let ran = false;
    const attempts = [cache.use('a', 10, failing, async () => (ran = true)), cache.use('a', 10, failing, async () => (ran = true))];
    for (const attempt of attempts) await assert.rejects(attempt, /corrupt model/);
    assert.equal(calls, 1, 'concurrent requests share the failed load');
    assert.equal(ran, false);
    assert.deepEqual(cache.keys, []);
    assert.equal(cache.usedBytes, 0);
    const model = await use('a', 10);
    assert.equal(model, loaded[0], 'the next request loads again');
  });

  test('releases each entry once when evictions overlap', async () => {
    const { cache, use, hold, loaded } = setup(100);
    await use('x', 50);
    await use('y', 50);
    const [p, q] = await Promise.all([hold('p', 100), hold('q', 100)]);
    assert.deepEqual(cache.keys.sort(), ['p', 'q']);
    await Promise.all([p.done(), q.done()]);
    assert.ok(loaded.every((m) => m.releases <= 1), loaded.map((m) => `${m.key}: ${m.releases}`).join(', '));
  });

  test('clear() releases the idle entries and keeps those in use', async () => {
    const { cache, use, hold } = setup(1000);
    await use('a', 10);
    const b = await hold('b', 10);
    await cache.clear();
    assert.deepEqual(cache.keys, ['b']);
    assert.equal(b.model.releases, 0);
    await b.done();
  });

  test('a measuring cache counts what a load made resident, not the estimate', async () => {
    const cache = new ModelCache<FakeModel & { memory?: Buffer }>(1024 * 2 ** 20, true);
    const mib = 2 ** 20;
    // Filled with ones, so that every page is touched (a zero-filled buffer may stay unmapped).
    await cache.use('big', 1, async () => Object.assign(new FakeModel('big'), { memory: Buffer.alloc(96 * mib, 1) }), async () => undefined);
    const big = cache.usedBytes;
    assert.ok(big >= 90 * mib, `counted ${big / mib} MiB for 96 MiB made resident`);
    await cache.use('small', 500 * mib, async () => new FakeModel('small'), async () => undefined);
    assert.ok(cache.usedBytes - big < 16 * mib, `counted ${(cache.usedBytes - big) / mib} MiB for a load that allocates nothing`);
  });

  test("a measuring cache charges an fp16 UNet what onnxruntime holds for it, its float32 widening included, not the files' bytes", async (t) => {
    const mib = 2 ** 20;
    const fixtures = await FixtureDir.create();
    try {
      const folder = await fixtures.model('fp16', { precision: 'fp16', unetChannels: [128, 256], externalData: 'model.onnx_data' });
      const unetDir = join(folder.dir, 'unet');
      let fileBytes = 0;
      for (const name of await readdir(unetDir)) if (name.startsWith('model.onnx')) fileBytes += (await stat(join(unetDir, name))).size;
      const cache = new ModelCache<OnnxModel>(2 ** 40, true);
      const before = process.memoryUsage.rss();
      await cache.use('unet', 1, () => OnnxModel.load(join(unetDir, 'model.onnx')), async (unet) => {
        const grown = process.memoryUsage.rss() - before;
        const charged = cache.usedBytes;
        assert.ok(Math.abs(charged - grown) < 8 * mib, `charged ${charged / mib} MiB for a load that grew the process by ${grown / mib} MiB`);
        // The CPU provider computes in float32: the session holds float32 copies of the float16 weights.
        assert.ok(charged >= 2 * fileBytes, `charged ${charged / mib} MiB for ${fileBytes / mib} MiB of float16 files`);
        // All of it was resident once loaded: a call adds its activations, not the weights read late.
        const side = 8;
        const filled = (dims: number[]) => ({ data: new Float32Array(dims.reduce((a, b) => a * b)).map((_, i) => Math.sin(i)), dims });
        await unet.run({ sample: filled([2, 4, side, side]), timestep: { data: Float32Array.of(500, 500), dims: [2] }, encoder_hidden_states: filled([2, 77, 32]) });
        const afterCall = process.memoryUsage.rss() - before;
        t.diagnostic(`files ${(fileBytes / mib).toFixed(1)} MiB, charged ${(charged / mib).toFixed(1)} MiB, grown ${(grown / mib).toFixed(1)} MiB, after a call ${(afterCall / mib).toFixed(1)} MiB`);
        assert.ok(afterCall - charged < 16 * mib, `${afterCall / mib} MiB resident after a call; ${charged / mib} MiB charged`);
      });
      await cache.clear();
    } finally {
      await fixtures.remove();
    }
  });
});
