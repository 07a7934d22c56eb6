// The engine through the API: SDQL_PRELOAD loads models at start-up in the background while the
// server answers, `system { engine }` reports each load and the providers each session runs on, a
// restart loads the optimised graphs the first start saved, and a provider or a preload id that
// cannot work stops the start with a message saying so.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startServer } from '../../src/app/serve.ts';
import { StartError } from '../../src/lifecycle.ts';
import { startTestServer, type TestServer } from '../helpers/api.ts';
import { pollUntil } from '../helpers/wait.ts';

const ENGINE = `{ system { engine { onnxruntimeVersion executionProviders models { modelId loras state error loadMs submodels { name providers fromOptimizedCache } } } } }`;

interface EngineData {
  system: {
    engine: {
      onnxruntimeVersion: string;
      executionProviders: string[];
      models: { modelId: string; loras: string[]; state: string; error: string | null; loadMs: number | null; submodels: { name: string; providers: string[]; fromOptimizedCache: boolean }[] }[];
    } | null;
  };
}

/** A provider no onnxruntime-node build for this platform has. */
const ABSENT_PROVIDER = process.platform === 'win32' ? 'coreml' : 'dml';

describe('engine status, preload and providers through the API', () => {
  let api: TestServer;

  before(async () => {
    api = await startTestServer({ models: { demo: {}, other: { seed: 1 } }, env: { SDQL_PRELOAD: 'demo' } });
  });
  after(() => api.close());

  const ready = (what: string) =>
    pollUntil(
      () => api.data<EngineData>(ENGINE),
      (d) => d.system.engine?.models.some((m) => m.modelId === 'demo' && m.state === 'READY') ?? false,
      what,
    );

  test('the preloaded model loads in the background; /healthz answers 200 and system shows it loading, then ready', async () => {
    const health = await fetch(`${api.server.url}/healthz`);
    assert.equal(health.status, 200);
    const early = await api.data<EngineData>(ENGINE);
    assert.deepEqual(early.system.engine?.models.map((m) => [m.modelId, m.state === 'LOADING' || m.state === 'READY']), [['demo', true]], 'the load started at start-up');

    const { system } = await ready('the preload to finish');
    const engine = system.engine!;
    assert.deepEqual(engine.executionProviders, ['cpu']);
    assert.match(engine.onnxruntimeVersion, /^\d+\.\d+\.\d+/);
    const [demo] = engine.models;
    assert.deepEqual(demo.loras, []);
    assert.equal(demo.error, null);
    assert.ok(typeof demo.loadMs === 'number');
    assert.deepEqual(demo.submodels.map((s) => s.name), ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']);
    for (const s of demo.submodels) {
      assert.deepEqual(s.providers, ['cpu'], s.name);
      assert.equal(s.fromOptimizedCache, false, `${s.name}: the first load optimises`);
    }
    assert.equal((await fetch(`${api.server.url}/healthz`)).status, 200);
  });

  test('a generation on another model adds it to what the engine holds', async () => {
    const { generate } = await api.data<{ generate: { id: string } }>(`mutation { generate(input: { modelId: "other", prompt: "x", steps: 1 }) { id } }`);
    assert.ok(generate.id);
    const { system } = await pollUntil(
      () => api.data<EngineData>(ENGINE),
      (d) => d.system.engine?.models.some((m) => m.modelId === 'other' && m.state === 'READY') ?? false,
      'the other model to load',
    );
    assert.deepEqual(system.engine!.models.map((m) => m.modelId).sort(), ['demo', 'other']);
  });

  test('after a restart the preload loads the optimised graphs the first start saved', async () => {
    await api.restart();
    const { system } = await ready('the preload after the restart');
    const demo = system.engine!.models.find((m) => m.modelId === 'demo')!;
    for (const s of demo.submodels) assert.equal(s.fromOptimizedCache, true, s.name);
  });

  test('a preload id that is not a model, and a provider this build lacks, stop the start with what to do', async () => {
    const start = (env: Partial<typeof api.config>, db: string) =>
      startServer({ ...api.config, port: 0, ...env }, { database: { kind: 'pglite', dataDir: join(api.tmp, db) } });
    await assert.rejects(start({ preload: ['nope'] }, 'db-preload'), (error: Error) => error instanceof StartError && /SDQL_PRELOAD names model "nope", which is not a model folder/.test(error.message));
    await assert.rejects(
      start({ executionProviders: [ABSENT_PROVIDER, 'cpu'] }, 'db-provider'),
      (error: Error) => error instanceof StartError && new RegExp(`^execution provider unavailable: ${ABSENT_PROVIDER}: not in this onnxruntime-node build for ${process.platform}/${process.arch}`).test(error.message),
    );
    await assert.rejects(
      start({ submodelProviders: { vae_decoder: [ABSENT_PROVIDER] } }, 'db-placement'),
      (error: Error) => error instanceof StartError && error.message.includes(`${ABSENT_PROVIDER}: not in this onnxruntime-node build`),
    );
  });
});
