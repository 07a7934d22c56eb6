import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { configureLogging, log, withLogFields } from '../../src/log.ts';

const lines: string[] = [];
const capture = (options: Parameters<typeof configureLogging>[0]) => {
  lines.length = 0;
  configureLogging({ write: (line) => lines.push(line), ...options });
};
const entries = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
after(() => configureLogging({ write: undefined, level: 'info' }));

test('JSON lines carry time, level, message and fields', () => {
  capture({ json: true, level: 'info' });
  log.child({ component: 'test' }).warn('something happened', { generationId: 'g-1', ms: 12 });
  assert.equal(lines.length, 1);
  assert.doesNotMatch(lines[0], /\n/);
  const { time, ...entry } = entries()[0];
  assert.match(time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(entry, { level: 'warn', msg: 'something happened', component: 'test', generationId: 'g-1', ms: 12 });
});

test('errors are serialized with their code and their cause chain', () => {
  capture({ json: true, level: 'info' });
  const root = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
  log.error('request failed', { err: new Error('query failed', { cause: new Error('pool closed', { cause: root }) }) });
  const { err } = entries()[0] as { err: { type: string; message: string; stack: string; cause: { message: string; cause: { message: string; code: string } } } };
  assert.equal(err.type, 'Error');
  assert.equal(err.message, 'query failed');
  assert.match(err.stack, /^Error: query failed\n {4}at /);
  assert.equal(err.cause.message, 'pool closed');
  assert.deepEqual({ message: err.cause.cause.message, code: err.cause.cause.code }, { message: 'connection refused', code: 'ECONNREFUSED' });
});

test('LOG_LEVEL filters lower levels', () => {
  capture({ json: true, level: 'warn' });
  log.debug('d');
  log.info('i');
  log.warn('w');
  log.error('e');
  assert.deepEqual(entries().map((e) => [e.level, e.msg]), [['warn', 'w'], ['error', 'e']]);
  capture({ json: true, level: 'debug' });
  log.debug('d');
  assert.deepEqual(entries().map((e) => [e.level, e.msg]), [['debug', 'd']]);
  capture({ json: true, level: 'silent' });
  log.error('e');
  assert.equal(lines.length, 0);
});

test('withLogFields adds its fields to every line logged inside, across awaits', async () => {
  capture({ json: true, level: 'info' });
  await withLogFields({ requestId: 'r-1' }, async () => {
    await nextTurn();
    log.info('inside', { operation: 'only on this line' });
    log.info('inside');
    await withLogFields({ operation: 'Generate' }, async () => log.info('nested', { requestId: 'explicit' }));
  });
  log.info('outside');
  assert.deepEqual(
    entries().map(({ msg, requestId, operation }) => ({ msg, requestId, operation })),
    [
      { msg: 'inside', requestId: 'r-1', operation: 'only on this line' },
      { msg: 'inside', requestId: 'r-1', operation: undefined },
      { msg: 'nested', requestId: 'explicit', operation: 'Generate' },
      { msg: 'outside', requestId: undefined, operation: undefined },
    ],
  );
});

test('tokens, cookies and authorization headers are redacted', () => {
  capture({ json: true, level: 'info' });
  log.info('incoming', {
    authorization: 'Bearer secret-1',
    token: 'secret-2',
    headers: { authorization: 'Bearer secret-3', cookie: 'session=secret-4', 'x-api-key': 'secret-5', accept: 'application/json' },
    req: { headers: { authorization: 'Bearer secret-6' }, url: '/graphql' },
    created: { token: 'secret-7', scopes: ['READ'] },
  });
  assert.doesNotMatch(lines[0], /secret/);
  const entry = entries()[0];
  assert.equal(entry.authorization, '[Redacted]');
  assert.deepEqual(entry.headers, { authorization: '[Redacted]', cookie: '[Redacted]', 'x-api-key': '[Redacted]', accept: 'application/json' });
  assert.deepEqual(entry.req, { headers: { authorization: '[Redacted]' }, url: '/graphql' });
  assert.deepEqual(entry.created, { token: '[Redacted]', scopes: ['READ'] });
});

test('on a terminal, lines are short and readable', () => {
  capture({ json: false, level: 'info' });
  withLogFields({ requestId: 'r-2' }, () => log.info('server ready', { url: 'http://127.0.0.1:4000/graphql', ms: 12 }));
  assert.deepEqual(lines.length, 1);
  assert.match(lines[0], /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: server ready \{"requestId":"r-2","url":"http:\/\/127\.0\.0\.1:4000\/graphql","ms":12\}$/);
});

test('a process that exits right after logging has written every line', () => {
  const script = `import { log } from './src/log.ts';
for (let i = 0; i < 1000; i++) log.info('line', { i });
process.exit(0);`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], { encoding: 'utf8', env: { ...process.env, LOG_LEVEL: undefined } });
  assert.equal(child.status, 0, child.stderr);
  const written = child.stdout.trimEnd().split('\n').map((line) => (JSON.parse(line) as { i: number }).i);
  assert.deepEqual(written, Array.from({ length: 1000 }, (_, i) => i));
});
