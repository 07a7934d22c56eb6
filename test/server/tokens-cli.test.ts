// Tokens as an operator meets them: `sdql serve` beyond loopback prints the admin token at its first
// start only, and `sdql tokens create|list|revoke` manage tokens on the database of a stopped
// server (or a shared Postgres), in child processes.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { bearer } from '../helpers/api.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { DEADLINE_MS, withDeadline } from '../helpers/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/sdql.js', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'sdql-tokens-'));
let db: TestDatabase;
let env: Record<string, string>;

before(async () => {
  db = await createTestDatabase();
  await createFixturePipeline(join(tmp, 'models', 'demo'));
  env = { PATH: process.env.PATH ?? '', SDQL_DATA_DIR: join(tmp, 'data'), SDQL_MODELS_DIR: join(tmp, 'models'), PORT: '0' };
  if (db.target.kind === 'postgres') env.DATABASE_URL = db.target.url;
});
after(async () => {
  await db?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

/** `sdql serve` until it is ready (and, with `adminLine`, has printed its admin token): its stdout lines, its endpoint, and how to stop it. */
async function serve(extra: Record<string, string>, { adminLine = false } = {}) {
  const child = spawn(process.execPath, [BIN, 'serve'], { cwd: tmp, env: { ...env, ...extra } });
  let out = '';
  const lines = () => out.split('\n').filter(Boolean);
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const line = out.endsWith('\n') && lines().find((l) => l.includes('"sdql is ready"'));
      if (line && (!adminLine || lines().some((l) => l.startsWith('admin token: ')))) resolve(JSON.parse(line).url as string);
    });
    child.on('exit', (code) => reject(new Error(`sdql serve exited with ${code}: ${out}`)));
  });
  const url = await withDeadline(ready, `the "sdql is ready"${adminLine ? ' and "admin token:"' : ''} lines`).catch((error: Error) => {
    child.kill('SIGKILL');
    throw error;
  });
  return {
    lines,
    endpoint: `http://127.0.0.1:${new URL(url).port}/graphql`,
    /** SIGTERM, then the exit: every line it wrote is in `lines()` by then. */
    stop: async () => {
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      assert.equal(await withDeadline(exited, 'the exit of sdql serve'), 0);
    },
  };
}

function sdql(args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: tmp, env, timeout: DEADLINE_MS });
  assert.equal(result.error, undefined, `sdql ${args.join(' ')} did not exit by itself: ${result.error?.message}`);
  return result;
}

async function version(endpoint: string, token?: string): Promise<number> {
  const response = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(token) }, body: JSON.stringify({ query: '{ system { version } }' }) });
  return response.status;
}

test('beyond loopback the first start prints an admin token once; `sdql tokens` manages tokens', async () => {
  // HOST=0.0.0.0 with SDQL_AUTH=auto: tokens.
  const first = await serve({ HOST: '0.0.0.0' }, { adminLine: true });
  const printed = first.lines().filter((l) => l.startsWith('admin token: '));
  assert.equal(printed.length, 1, first.lines().join('\n'));
  assert.match(printed[0], /^admin token: sdql_[\w-]{43}$/);
  const adminToken = printed[0].slice('admin token: '.length);
  assert.ok(!first.lines().some((l) => l !== printed[0] && l.includes(adminToken.slice(5))), 'the token is nowhere else in the output');
  assert.equal(await version(first.endpoint), 401);
  assert.equal(await version(first.endpoint, adminToken), 200);
  await first.stop();

  const created = sdql(['tokens', 'create', 'ci', '--scopes', 'read,generate']);
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout, /^sdql_[\w-]{43}\n$/);
  assert.match(created.stderr, /shown only this once/);
  const ciToken = created.stdout.trim();
  const list = sdql(['tokens', 'list']);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /^NAME\s+SCOPES\s+CREATED\s+LAST USED\nadmin\s+ADMIN\s+\S+Z\s+\S+Z\nci\s+READ,GENERATE\s+\S+Z\s+-\n$/);
  assert.ok(!list.stdout.includes(ciToken.slice(5)));
  const json = JSON.parse(sdql(['tokens', 'list', '--json']).stdout) as { name: string }[];
  assert.deepEqual(json.map((t) => t.name), ['admin', 'ci']);

  const second = await serve({ SDQL_AUTH: 'tokens' });
  assert.equal(await version(second.endpoint, adminToken), 200);
  assert.equal(await version(second.endpoint, ciToken), 200);
  await second.stop();
  assert.deepEqual(second.lines().filter((l) => l.includes('admin token')), [], 'an admin token exists: nothing printed');

  const revoked = sdql(['tokens', 'revoke', 'ci']);
  assert.equal(revoked.status, 0, revoked.stderr);
  assert.match(revoked.stderr, /Revoked token "ci"/);
  const again = sdql(['tokens', 'revoke', 'ci']);
  assert.equal(again.status, 1);
  assert.equal(again.stderr, 'sdql tokens revoke: no token is named "ci"\n');
  const badScope = sdql(['tokens', 'create', 'x', '--scopes', 'root']);
  assert.equal(badScope.status, 2);
  assert.match(badScope.stderr, /--scopes must list some of READ, GENERATE, ADMIN.*got ROOT/);

  const third = await serve({ SDQL_AUTH: 'tokens' });
  assert.equal(await version(third.endpoint, ciToken), 401, 'the revoked token is refused');
  await third.stop();
});

test('`sdql tokens` refuses the embedded database of a running server, and says why', { skip: Boolean(process.env.DATABASE_URL) && 'the embedded database only' }, async () => {
  const running = await serve({ SDQL_AUTH: 'tokens' });
  try {
    const refused = sdql(['tokens', 'list']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^sdql tokens list: .*in use by another process/);
  } finally {
    await running.stop();
  }
});
