import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { configureLogging, log, withLogFields } from '../../src/log.ts';

const lines: string[] = [];
const capture = (options: Parameters<typeof configureLogging>[0]) => {
  lines.length = 0;
  configureLogging({ write: (line) => lines.push(line), ...options });
};
after(() => configureLogging({ write: (line) => process.stdout.write(`${line}\n`), level: 'info' }));

test('JSON lines carry time, level, message and fields, errors and bigints included', () => {
  capture({ json: true, level: 'info' });
  const error = Object.assign(new Error('boom'), { code: 'E_BOOM' });
  log.child({ component: 'test' }).warn('something happened', { err: error, seed: 4294967296n });
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]) as Record<string, unknown>;
  assert.match(entry.time as string, /^\d{4}-\d\d-\d\dT/);
  assert.equal(entry.level, 'warn');
  assert.equal(entry.msg, 'something happened');
  assert.equal(entry.component, 'test');
  assert.equal(entry.seed, '4294967296');
  assert.deepEqual({ ...(entry.err as object), stack: undefined }, { name: 'Error', message: 'boom', code: 'E_BOOM', stack: undefined });
  assert.match((entry.err as { stack: string }).stack, /boom/);
});

test('LOG_LEVEL filters lower levels', () => {
  capture({ json: true, level: 'warn' });
  log.debug('d');
  log.info('i');
  log.warn('w');
  log.error('e');
  assert.deepEqual(
    lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['w', 'e'],
  );
  capture({ json: true, level: 'silent' });
  log.error('e');
  assert.equal(lines.length, 0);
});

test('withLogFields adds its fields to every line logged inside, across awaits', async () => {
  capture({ json: true, level: 'info' });
  await withLogFields({ requestId: 'r-1' }, async () => {
    await nextTurn();
    log.info('inside');
  });
  log.info('outside');
  assert.deepEqual(
    lines.map((l) => (JSON.parse(l) as { requestId?: string }).requestId),
    ['r-1', undefined],
  );
});

test('on a terminal, lines are short and readable', () => {
  capture({ json: false, level: 'info' });
  log.info('server ready', { url: 'http://127.0.0.1:4000/graphql', ms: 12, note: 'two words' });
  assert.match(lines[0], /^\d\d:\d\d:\d\d\.\d{3} INFO {2}server ready url=http:\/\/127\.0\.0\.1:4000\/graphql ms=12 note="two words"$/);
});
