// Events for subscriptions: in memory for one process, or through Redis (REDIS_URL) so that
// API and worker processes on several machines see each other's events. Publishers and
// subscribers are the same either way; payloads are plain JSON so they cross processes.
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { createPubSub, type PubSub } from 'graphql-yoga';
import { setMaxListeners } from 'node:events';
import { Redis } from 'ioredis';
import type { JobTopics } from '../jobs/index.ts';

/** Topic name → published arguments ([payload], or [id, payload] for per-object topics). */
export type Topics = JobTopics & {
  modelsChanged: [{ scannedAt: string }];
};

export type SdqlPubSub = PubSub<Topics>;

export interface EventBus {
  pubsub: SdqlPubSub;
  close(): Promise<void>;
}

const REDIS_CONNECT_TIMEOUT_MS = 5000;

export class EventBusError extends Error {
  override name = 'EventBusError';
}

export async function createEventBus(redisUrl: string | null): Promise<EventBus> {
  if (!redisUrl) {
    // One listener per subscriber: many clients may watch one generation, which is no leak.
    const eventTarget = new EventTarget();
    setMaxListeners(0, eventTarget);
    return { pubsub: createPubSub<Topics>({ eventTarget }), close: async () => {} };
  }
  const options = { lazyConnect: true, connectTimeout: REDIS_CONNECT_TIMEOUT_MS, maxRetriesPerRequest: 1 };
  const publishClient = new Redis(redisUrl, options);
  const subscribeClient = new Redis(redisUrl, options);
  const clients = [publishClient, subscribeClient];
  try {
    await Promise.all(clients.map((c) => c.connect()));
  } catch (error) {
    clients.forEach((c) => c.disconnect());
    throw new EventBusError(`cannot reach Redis at REDIS_URL: ${(error as Error).message}`);
  }
  return {
    pubsub: createPubSub<Topics>({ eventTarget: createRedisEventTarget({ publishClient, subscribeClient }) }),
    close: async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}
