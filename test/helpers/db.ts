// A throwaway database per test file: a new database on the Postgres server of DATABASE_URL when it
// is set (CI runs the suite both ways), else PGlite in memory. Dropped by `drop()`.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { DatabaseTarget } from '../../src/db/index.ts';

export const usingPostgres = Boolean(process.env.DATABASE_URL);

/** For tests that only mean something on a real Postgres server. */
export const skipWithoutPostgres: string | false = usingPostgres ? false : 'skipped: needs Postgres (set DATABASE_URL, as .ci/run does)';

export interface TestDatabase {
  target: DatabaseTarget;
  drop(): Promise<void>;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const base = process.env.DATABASE_URL;
  if (!base) return { target: { kind: 'pglite', dataDir: 'memory://' }, drop: async () => {} };
  const url = new URL(base);
  // Named after the database of DATABASE_URL, so whoever drops that one can find these too.
  const name = `${decodeURIComponent(url.pathname.slice(1)) || 'sdql'}`.slice(0, 40) + `_t${randomBytes(4).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  url.pathname = `/${name}`;
  return {
    target: { kind: 'postgres', url: url.toString() },
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => {}),
  };
}
