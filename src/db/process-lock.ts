// Progress events and cancels travel between processes only through Redis: without REDIS_URL, a
// second process on one Postgres would silently lose them (its subscribers never hear of the other's
// generations). So every long-running process holds an advisory lock on its Postgres database for its
// lifetime — exclusive without Redis, shared with it — and a process whose lock conflicts refuses to
// start. The lock belongs to its connection: a process that dies, however, lets go of it.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'pg';
import { redactUrl } from '../config.ts';
import { log } from '../log.ts';
import { DatabaseUnavailableError } from './errors.ts';

/** The lock's two int4 keys: 'SDQL' in ASCII, and 1 for "a process that serves or works". */
const KEYS = [0x5344514c, 1] as const;
const CONNECT_TIMEOUT_MS = 5000;
const MAX_RECONNECT_WAIT_MS = 10_000;

export type ProcessLockMode = 'exclusive' | 'shared';

/** Holds the lock until released; a lost connection is reconnected and the lock taken again. */
export interface ProcessLock {
  release(): Promise<void>;
}

/** Takes the lock on the database of `url`; throws DatabaseUnavailableError, with the fix, when it conflicts. */
export async function holdProcessLock(url: string, mode: ProcessLockMode): Promise<ProcessLock> {
  let released = false;
  let client = await lockedClient(url, mode);
  const reacquire = async () => {
    for (let waitMs = 250; !released; waitMs = Math.min(waitMs * 2, MAX_RECONNECT_WAIT_MS)) {
      try {
        const again = await lockedClient(url, mode);
        if (released) return void (await again.end());
        client = again;
        client.once('end', () => void reacquire());
        log.info('took the database lock again', { mode });
        return;
      } catch (error) {
        log.warn('lost the database lock; trying to take it again', { mode, waitMs, err: error });
        await sleep(waitMs, undefined, { ref: false });
      }
    }
  };
  client.once('end', () => void reacquire());
  return {
    release: async () => {
      released = true;
      await client.end().catch(() => {});
    },
  };
}

async function lockedClient(url: string, mode: ProcessLockMode): Promise<Client> {
  const { default: pg } = await import('pg');
  // The name other processes see in pg_stat_activity when this one holds the lock they want.
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: `sdql pid ${process.pid} on ${hostname()}`.slice(0, 63) });
  client.on('error', () => {}); // a broken connection ends it: 'end' takes the lock again
  try {
    await client.connect();
    const lock = mode === 'exclusive' ? 'pg_try_advisory_lock' : 'pg_try_advisory_lock_shared';
    const { rows } = await client.query<{ locked: boolean }>(`SELECT ${lock}($1, $2) AS locked`, [...KEYS]);
    if (rows[0].locked) return client;
    const holders = await client.query<{ name: string }>(
      `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted`,
      [...KEYS],
    );
    throw new DatabaseUnavailableError(conflict(url, mode, holders.rows));
  } catch (error) {
    await client.end().catch(() => {});
    if (error instanceof DatabaseUnavailableError) throw error;
    throw new DatabaseUnavailableError(`cannot lock ${redactUrl(url)} for this process: ${(error as Error).message}`, { cause: error });
  }
}

function conflict(url: string, mode: ProcessLockMode, holders: { name: string }[]): string {
  const names = holders.map((h) => h.name || 'unnamed').join(', ') || 'another sdql process';
  const where = redactUrl(url);
  return mode === 'exclusive'
    ? `${names} already uses ${where}; without REDIS_URL, progress events and cancels cannot pass between processes: give every process the same REDIS_URL, or run only one`
    : `${names} uses ${where} without REDIS_URL, so its events and cancels stay in it and this process's would be lost to it: restart it with this REDIS_URL`;
}
