// `sdql worker` runs generations only: it must start without loading GraphQL, the schema or HTTP.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const child = fileURLToPath(new URL('./loaded-modules.ts', import.meta.url));

async function modulesLoadedBy(command: 'worker' | 'serve'): Promise<string[]> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, command], { timeout: 120_000 });
  return JSON.parse(stdout) as string[];
}

const SERVING = [/\/node_modules\/graphql-yoga\//, /\/node_modules\/graphql\//, /\/node_modules\/@pothos\//, /\/node_modules\/graphql-ws\//, /\/src\/graphql\//, /\/src\/server\//];
const servingModules = (modules: string[]) => modules.filter((url) => SERVING.some((pattern) => pattern.test(url)));

test('sdql worker starts without loading graphql-yoga, the schema or the HTTP server', async () => {
  const modules = await modulesLoadedBy('worker');
  assert.ok(modules.some((url) => url.endsWith('/src/jobs/worker.ts')), 'the worker itself was loaded');
  assert.deepEqual(servingModules(modules), []);
});

test('sdql serve, by contrast, loads them (the check above sees what it looks for)', async () => {
  const modules = await modulesLoadedBy('serve');
  for (const pattern of [/\/node_modules\/graphql-yoga\//, /\/src\/graphql\/index\.ts$/, /\/src\/server\/index\.ts$/]) {
    assert.ok(modules.some((url) => pattern.test(url)), `serve loaded nothing matching ${pattern}`);
  }
});
