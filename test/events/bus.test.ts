// The event bus in memory and through Redis: what one publishes, subscribers get; on Redis, only
// on channels with the deployment's prefix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { createEventBus, EventBusError } from '../../src/events/bus.ts';
import { skipWithoutPostgres } from '../helpers/db.ts';

type TestTopics = { generation: [string, { step: number }]; queue: [{ id: string }] };
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

test('in memory: subscribers of a topic and id get what is published to them only', async () => {
  const bus = await createEventBus<TestTopics>(null);
  const mine = bus.subscribe('generation', 'a')[Symbol.asyncIterator]();
  const next = mine.next();
  bus.publish('generation', 'b', { step: 9 });
  bus.publish('generation', 'a', { step: 1 });
  assert.deepEqual((await next).value, { step: 1 });
  await mine.return?.();
  await bus.close();
});

test('an unreachable Redis is an EventBusError that names REDIS_URL', async () => {
  await assert.rejects(createEventBus('redis://127.0.0.1:1'), (error) => error instanceof EventBusError && /REDIS_URL/.test(error.message));
});

// Redis runs where Postgres does for the multi-process tests (.ci/run starts both).
test('on Redis, channels carry the prefix: other prefixes and bare channels do not reach subscribers', { skip: skipWithoutPostgres }, async () => {
  const prefix = `sdql-test-${process.pid}:`;
  const bus = await createEventBus<TestTopics>(redisUrl, prefix);
  const other = await createEventBus<TestTopics>(redisUrl, `${prefix}other:`);
  const raw = new Redis(redisUrl);
  try {
    const events = bus.subscribe('queue')[Symbol.asyncIterator]();
    const first = events.next();
    // Subscribing is asynchronous on Redis: wait until the prefixed channel has its subscriber.
    const channel = `${prefix}queue`;
    for (let tries = 0; Number(((await raw.pubsub('NUMSUB', channel)) as [string, number])[1]) === 0; tries++) assert.ok(tries < 500, `no subscriber on ${channel}`);
    await raw.publish('queue', JSON.stringify({ id: 'injected without prefix' }));
    other.publish('queue', { id: 'another deployment' });
    bus.publish('queue', { id: 'ours' });
    assert.deepEqual((await first).value, { id: 'ours' });
    await events.return?.();
  } finally {
    raw.disconnect();
    await Promise.all([bus.close(), other.close()]);
  }
});
