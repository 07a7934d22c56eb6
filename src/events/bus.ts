// The event bus: in memory for one process, or through Redis (REDIS_URL) so that API and worker
// processes on several machines see each other's events. Publishers and subscribers are the same
// either way; payloads are plain JSON so they cross processes. The typed publish/subscribe is
// @graphql-yoga/subscription's, which knows nothing of GraphQL despite its name.
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import { createPubSub, type PubSub } from '@graphql-yoga/subscription';
import { setMaxListeners } from 'node:events';
import { Redis } from 'ioredis';

/** Topic name → published arguments: [payload], or [id, payload] for per-object topics. */
export type Topics = { [topic: string]: [unknown] | [string, unknown] };

export interface EventBus<T extends Topics> extends PubSub<T> {
  close(): Promise<void>;
}

const REDIS_CONNECT_TIMEOUT_MS = 5000;

export class EventBusError extends Error {
  override name = 'EventBusError';
}

/**
 * The in-process bus when `redisUrl` is null; EventBusError when Redis cannot be reached. On Redis,
 * every channel starts with `prefix`, so that other users of the same Redis neither see sdql's
 * events nor inject their own.
 */
export async function createEventBus<T extends Topics>(redisUrl: string | null, prefix = 'sdql:'): Promise<EventBus<T>> {
  if (!redisUrl) {
    // One listener per subscriber: many clients may watch one generation, which is no leak.
    const eventTarget = new EventTarget();
    setMaxListeners(0, eventTarget);
    return { ...createPubSub<T>({ eventTarget }), close: async () => {} };
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
    ...createPubSub<T>({ eventTarget: prefixed(createRedisEventTarget({ publishClient, subscribeClient }), prefix) }),
    close: async () => {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}

/** The same event target with `prefix` before every event type (a Redis channel name). */
function prefixed(target: EventTarget, prefix: string): EventTarget {
  return {
    addEventListener: (type, listener, options) => target.addEventListener(prefix + type, listener, options),
    removeEventListener: (type, listener, options) => target.removeEventListener(prefix + type, listener, options),
    dispatchEvent: (event) => target.dispatchEvent(new CustomEvent(prefix + event.type, { detail: (event as CustomEvent).detail })),
  };
}
