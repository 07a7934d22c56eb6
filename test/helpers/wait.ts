// Waiting in tests without clocks: for an event, with a deadline that fails the test saying what did
// not happen. A deadline only ever fails a test that would otherwise hang; nothing here measures time.

/** Long enough for any event of the suite on a loaded machine; a test that waits longer is stuck. */
export const DEADLINE_MS = 60_000;

/** Settles as `promise` does, or rejects after `timeoutMs` with "`what` did not happen within … s". */
export function withDeadline<T>(promise: Promise<T>, what: string, timeoutMs = DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Calls `probe` back to back (each call is a round trip: a request, a query) until `done` accepts
 * its value, which it returns; fails at the deadline with `what` and the last value.
 */
export async function pollUntil<T>(probe: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = DEADLINE_MS): Promise<T> {
  let expired = false;
  const timer = setTimeout(() => (expired = true), timeoutMs);
  try {
    for (;;) {
      const value = await probe();
      if (done(value)) return value;
      if (expired) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s; last: ${JSON.stringify(value)}`);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The events of a stream as they arrive, and a promise for the first one that matches: one that has
 * arrived already, or the next that does. A stream that ends or fails first rejects the waiters.
 */
export class EventLog<T> {
  readonly events: T[] = [];
  private readonly waiters = new Set<{ match: (event: T) => boolean; resolve: (event: T) => void; reject: (why: string) => void }>();
  private ended: string | undefined;

  push(event: T): void {
    this.events.push(event);
    for (const waiter of this.waiters) if (waiter.match(event)) waiter.resolve(event);
  }

  /** No more events: waiters still waiting fail with `reason`. */
  end(reason: Error): void {
    this.ended ??= reason.message;
    for (const waiter of this.waiters) waiter.reject(this.ended);
  }

  /** The first event that `match` accepts (any event if none is given), waiting for it up to the deadline. */
  next(what: string, match: (event: T) => boolean = () => true, timeoutMs = DEADLINE_MS): Promise<T> {
    const seen = this.events.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.ended) return Promise.reject(this.failure(what, this.ended));
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        match,
        resolve: (event: T) => (settle(), resolve(event)),
        reject: (why: string) => (settle(), reject(this.failure(what, why))),
      };
      const timer = setTimeout(() => waiter.reject(`did not happen within ${timeoutMs / 1000} s`), timeoutMs);
      const settle = () => (clearTimeout(timer), this.waiters.delete(waiter));
      this.waiters.add(waiter);
    });
  }

  /** Why `what` failed, with the last events received (shortened: previews are long). */
  private failure(what: string, why: string): Error {
    return new Error(`${what}: ${why}; ${this.events.length} events, the last: ${JSON.stringify(this.events.slice(-5)).slice(0, 1000)}`);
  }
}
