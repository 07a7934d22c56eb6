/** The readyState values of the WebSocket standard. */
const READY_STATES = { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 } as const;

/**
 * UXP's WebSocket has no static CONNECTING/OPEN/CLOSING/CLOSED, which graphql-ws reads (to accept the
 * implementation and to check `readyState`): this gives the constructor them, leaving everything
 * else to the original. A Proxy rather than a subclass, since a host object may refuse `extends`.
 */
export function withReadyStates<T extends abstract new (...args: never[]) => unknown>(socket: T): T & typeof READY_STATES {
  const has = (key: PropertyKey) => key in READY_STATES && typeof (socket as Record<PropertyKey, unknown>)[key] === 'number';
  if (Object.keys(READY_STATES).every(has)) return socket as T & typeof READY_STATES;
  return new Proxy(socket, {
    get: (target, key, receiver) => (key in READY_STATES && !has(key) ? READY_STATES[key as keyof typeof READY_STATES] : Reflect.get(target, key, receiver)),
    has: (target, key) => key in READY_STATES || Reflect.has(target, key),
  }) as T & typeof READY_STATES;
}
