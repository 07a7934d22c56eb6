// The `sdql` command as users run it, in child processes.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, skipWithoutPostgres } from '../helpers/db.ts';

const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
import { DEADLINE_MS, withDeadline } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/sdql.js', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'sdql-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs sdql with a clean environment (no DATABASE_URL etc. leaking in unless given); fails if it does not exit by itself. */
function sdql(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    cwd: tmp,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    timeout: DEADLINE_MS,
  });
  assert.equal(result.error, undefined, `sdql ${args.join(' ')} did not exit by itself within ${DEADLINE_MS / 1000} s: ${result.error?.message}`);
  return result;
}

test('--help lists the commands; an unknown command is an error', () => {
  const help = sdql(['--help']);
  assert.equal(help.status, 0);
  for (const command of ['serve', 'models', 'generate']) assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
  const unknown = sdql(['frobnicate']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.equal(sdql(['generate', '--help']).status, 0);
  const serveHelp = sdql(['serve', '--help']);
  for (const name of ['PORT', 'HOST', 'SDQL_DATA_DIR', 'SDQL_MODELS_DIR', 'SDQL_LORAS_DIR', 'DATABASE_URL', 'LOG_LEVEL']) assert.match(serveHelp.stdout, new RegExp(`\\b${name}\\b`));
});

test('invalid settings and flags are reported in one line with the fix', () => {
  const port = sdql(['serve', '--port', 'eighty']);
  assert.equal(port.status, 2);
  assert.match(port.stderr, /^sdql serve: --port must be a port number from 0 to 65535, got "eighty"\n/);
  const env = sdql(['serve'], { DATABASE_URL: 'mysql://root@localhost/x' });
  assert.equal(env.status, 2);
  assert.match(env.stderr, /DATABASE_URL must be a Postgres URL like postgresql:\/\/user:password@localhost:5432\/sdql/);
  const flag = sdql(['serve', '--no-such-flag']);
  assert.equal(flag.status, 2);
  assert.match(flag.stderr, /no-such-flag/);
});

test('an unreachable DATABASE_URL stops `sdql serve` with a one-line reason', () => {
  const result = sdql(['serve', '--port', '0', '--models-dir', join(tmp, 'm1')], { DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/sdql' });
  assert.equal(result.status, 1);
  assert.equal(result.stderr, 'sdql serve: cannot connect to postgresql://postgres@127.0.0.1:1/sdql: connection refused by 127.0.0.1:1 (is Postgres running and listening there?)\n');
});

test('models create-demo writes a demo model, LoRA and embedding and says their images are noise; models list shows them', () => {
  const models = join(tmp, 'models');
  const created = sdql(['models', 'create-demo', join(models, 'demo')]);
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout, /images they make are noise/);
  assert.ok(existsSync(join(models, 'demo', 'model_index.json')));
  assert.ok(existsSync(join(models, 'embeddings', 'demo-embedding.safetensors')), 'the embedding beside the model');
  const again = sdql(['models', 'create-demo', join(models, 'demo')]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /is not empty/);

  writeFileSync(join(models, 'loras', 'junk.safetensors'), 'junk');
  const list = sdql(['models', 'list'], { SDQL_MODELS_DIR: models });
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /^demo\s+UNKNOWN\s+64x64\s+fp32\s+yes\s+yes\s+[\d.]+ MB\s+ok$/m);
  assert.match(list.stdout, /^demo-lora\s+sd_v1\s+4\s+4\s+[\d.]+ MB$/m);
  assert.match(list.stdout, /^junk\s+-\s+-\s+-\s+0\.0 MB\s+error: not a valid safetensors file/m);
  const json = JSON.parse(sdql(['models', 'list', '--json', '--models-dir', models]).stdout) as { models: { id: string }[] };
  assert.deepEqual(
    json.models.map((m) => m.id),
    ['demo'],
  );
});

/** `sdql serve` in a child process with `env`: its JSON log lines, its URL once ready, and its stop. */
function serve(env: Record<string, string>) {
  const child = spawn(process.execPath, [BIN, 'serve'], { cwd: tmp, env: { PATH: process.env.PATH ?? '', PORT: '0', ...env } });
  let out = '';
  // Every line is one JSON object: stdout is not a terminal.
  const entries = () => out.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const ready = out.endsWith('\n') && entries().find((e) => e.msg === 'sdql is ready');
      if (ready) resolve(ready.url as string);
    });
    child.on('exit', (code) => reject(new Error(`sdql serve exited with ${code}: ${out}`)));
  });
  return {
    entries,
    ready: () => withDeadline(ready, 'the "sdql is ready" line'),
    /** SIGTERM, then its exit code. */
    stop: () => (child.kill('SIGTERM'), withDeadline(exited, 'the exit of sdql serve after SIGTERM')),
    kill: () => child.kill('SIGKILL'),
  };
}

test('`sdql serve` becomes healthy, then stops gracefully on SIGTERM', async () => {
  const db = await createTestDatabase();
  const env: Record<string, string> = { SDQL_DATA_DIR: join(tmp, 'data'), SDQL_MODELS_DIR: join(tmp, 'models2') };
  if (db.target.kind === 'postgres') env.DATABASE_URL = db.target.url;
  const server = serve(env);
  try {
    const url = await server.ready();
    assert.equal((await fetch(url.replace('/graphql', '/healthz'))).status, 200);
    assert.equal(await server.stop(), 0);
    const lines = server.entries();
    assert.deepEqual(lines.find((e) => e.msg === 'shutting down')?.signal, 'SIGTERM');
    assert.equal(lines.at(-1)?.msg, 'stopped');
    assert.ok(!existsSync(join(tmp, 'data', 'db.lock')));
  } finally {
    server.kill();
    await db.drop();
  }
});

test('a second `sdql serve` on one Postgres without REDIS_URL is refused; with REDIS_URL both serve', { skip: skipWithoutPostgres }, async () => {
  const db = await createTestDatabase();
  assert.ok(db.target.kind === 'postgres');
  const databaseUrl = db.target.url;
  const env = (name: string, more: Record<string, string> = {}) => ({ DATABASE_URL: databaseUrl, SDQL_DATA_DIR: join(tmp, `data-${name}`), SDQL_MODELS_DIR: join(tmp, 'models3'), ...more });
  const first = serve(env('a'));
  try {
    await first.ready();
    const second = sdql(['serve', '--port', '0'], env('b'));
    assert.equal(second.status, 1);
    assert.match(
      second.stderr,
      /^sdql serve: sdql pid \d+ on .+ already uses postgresql:\/\/.+; without REDIS_URL, progress events and cancels cannot pass between processes: give every process the same REDIS_URL, or run only one\n$/,
    );
    // A process with Redis cannot join one without: the first would never hear its events.
    const withRedis = sdql(['serve', '--port', '0'], env('c', { REDIS_URL: redisUrl }));
    assert.equal(withRedis.status, 1);
    assert.match(withRedis.stderr, /uses postgresql:\/\/.+ without REDIS_URL, .* restart it with this REDIS_URL\n$/);
    assert.equal(await first.stop(), 0);
  } finally {
    first.kill();
  }
  // The lock went with the first process: two with Redis share the database.
  const both = [serve(env('d', { REDIS_URL: redisUrl })), serve(env('e', { REDIS_URL: redisUrl }))];
  try {
    for (const server of both) await server.ready();
    for (const server of both) assert.equal(await server.stop(), 0);
  } finally {
    for (const server of both) server.kill();
    await db.drop();
  }
});
