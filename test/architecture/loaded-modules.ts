// Run as a child process by loaded-modules.test.ts: starts `sdql worker` or `sdql serve` (as the
// composition root builds them, on an embedded database and a fixture model) and prints every
// module the process loaded, as JSON: ESM through a load hook, CommonJS from require's cache.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';

const loaded = new Set<string>();
const { port1, port2 } = new MessageChannel();
port1.on('message', (url: string) => loaded.add(url));
port1.unref();
const hooks = `let port;
export function initialize(data) { port = data.port; }
export async function load(url, context, next) { port.postMessage(url); return next(url, context); }`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, { data: { port: port2 }, transferList: [port2] });

const which = process.argv[2];
const tmp = mkdtempSync(join(tmpdir(), 'sdql-modules-'));
try {
  const { createFixturePipeline } = await import('../../src/diffusion/fixtures/index.ts');
  const { loadConfig } = await import('../../src/config.ts');
  const { configureLogging } = await import('../../src/log.ts');
  configureLogging({ level: 'silent' });
  await createFixturePipeline(join(tmp, 'models', 'demo'));
  const config = loadConfig({ port: '0', 'data-dir': join(tmp, 'data'), 'models-dir': join(tmp, 'models') }, {});
  const database = { kind: 'pglite' as const, dataDir: join(tmp, 'db') };
  if (which === 'worker') {
    const { startWorker } = await import('../../src/app/worker.ts');
    await (await startWorker(config, { database })).lifecycle.shutdown();
  } else {
    const { startServer } = await import('../../src/app/serve.ts');
    await (await startServer(config, { database })).close();
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const required = Object.keys(createRequire(import.meta.url).cache).map((path) => `file://${path}`);
process.stdout.write(JSON.stringify([...loaded, ...required]));
