// When the database stops answering (Postgres restarting, a network cut), work that must reach it
// waits and tries again instead of failing: a generation that will run again, or whose images are
// made, must never be reported FAILED because of an outage. Whether the database is down is asked
// of the database (a trivial query) rather than read from error codes, which differ between the
// socket, pg and Prisma's adapter for the same outage.
import { setTimeout as sleep } from 'node:timers/promises';
import { log } from '../log.ts';
import type { PrismaClient } from './generated/client.ts';

/** The first wait after the database stopped answering; each next one doubles, up to MAX_WAIT_MS. */
const FIRST_WAIT_MS = 250;
const MAX_WAIT_MS = 10_000;

/** Whether the database answers a trivial query now. */
export async function databaseReachable(prisma: PrismaClient): Promise<boolean> {
  try {
    await prisma.$queryRaw`SELECT 1`;
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves once the database answers, asking again after 0.25 s, 0.5 s, 1 s … up to 10 s between
 * tries, with a warning for each wait; rejects when `signal` aborts (the process is stopping).
 */
export async function waitForDatabase(prisma: PrismaClient, what: string, signal?: AbortSignal): Promise<void> {
  const started = performance.now();
  for (let attempt = 1, waitMs = FIRST_WAIT_MS; !(await databaseReachable(prisma)); attempt++, waitMs = Math.min(waitMs * 2, MAX_WAIT_MS)) {
    log.warn('the database does not answer; waiting to try again', { what, attempt, waitMs });
    await sleep(waitMs, undefined, { signal });
  }
  if (performance.now() - started > FIRST_WAIT_MS) log.info('the database answers again', { what, waitedMs: Math.round(performance.now() - started) });
}

/**
 * Runs `op`; when it fails while the database does not answer, waits for the database (as
 * waitForDatabase) and runs it again, as often as it takes. A failure while the database answers
 * is given one more try (a connection that broke under that one query), then thrown. `op` must be
 * safe to repeat: its first run may have reached the database before its connection broke.
 */
export async function retryWhileUnreachable<T>(prisma: PrismaClient, what: string, op: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  let retriedWhileReachable = false;
  for (;;) {
    try {
      return await op();
    } catch (error) {
      if (signal?.aborted) throw error;
      if (await databaseReachable(prisma)) {
        if (retriedWhileReachable) throw error;
        retriedWhileReachable = true;
      } else {
        log.warn('lost the database', { what, err: error });
        await waitForDatabase(prisma, what, signal);
        retriedWhileReachable = false;
      }
    }
  }
}
