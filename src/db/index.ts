// The database: Prisma on PGlite (embedded, in SDQL_DATA_DIR/db) or on Postgres (DATABASE_URL),
// migrated before it is handed out. Drivers are imported on demand so that start-up loads one.
import type { PGlite } from '@electric-sql/pglite';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { redactUrl, type Config } from '../config.ts';
import { log } from '../log.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { DatabaseUnavailableError } from './errors.ts';
import { PrismaClient } from './generated/client.ts';
import { migrate, type SqlSession } from './migrate.ts';

export { DatabaseUnavailableError } from './errors.ts';
export { holdProcessLock, type ProcessLock, type ProcessLockMode } from './process-lock.ts';
export { databaseReachable, retryWhileUnreachable, waitForDatabase } from './reconnect.ts';
export { Prisma, PrismaClient } from './generated/client.ts';
export type { Generation, GenerationStatus, Image, Lora, Model, Scope, Token } from './generated/client.ts';

/** Where the database lives. A PGlite `dataDir` of 'memory://' keeps it in memory (tests). */
export type DatabaseTarget = { kind: 'pglite'; dataDir: string } | { kind: 'postgres'; url: string };

interface DatabaseBase {
  readonly prisma: PrismaClient;
  /** Human-readable location, password redacted. */
  readonly location: string;
  /** Disconnects Prisma and closes the driver; idempotent. */
  close(): Promise<void>;
}

/** The queue and anything else that needs the same database uses `pglite` or `connectionString`. */
export type Database =
  | (DatabaseBase & {
      readonly kind: 'pglite';
      /** PGlite has one connection: share this instance, never open the folder a second time. */
      readonly pglite: PGlite;
    })
  | (DatabaseBase & { readonly kind: 'postgres'; readonly connectionString: string });

export function databaseTarget(config: Pick<Config, 'databaseUrl' | 'dataDir'>): DatabaseTarget {
  return config.databaseUrl ? { kind: 'postgres', url: config.databaseUrl } : { kind: 'pglite', dataDir: join(config.dataDir, 'db') };
}

const CONNECT_TIMEOUT_MS = 5000;

/** Opens the database and applies pending migrations. Throws DatabaseUnavailableError with a one-line reason. */
export async function openDatabase(target: DatabaseTarget): Promise<Database> {
  return target.kind === 'pglite' ? openPGlite(target.dataDir) : openPostgres(target.url);
}

async function openPGlite(dataDir: string): Promise<Database> {
  const inMemory = dataDir.startsWith('memory://');
  let unlock = () => {};
  let pglite: PGlite | undefined;
  try {
    if (!inMemory) {
      mkdirSync(dataDir, { recursive: true });
      unlock = lockDataDir(dataDir);
    }
    const [{ PGlite }, { pg_trgm }] = await Promise.all([import('@electric-sql/pglite'), import('@electric-sql/pglite/contrib/pg_trgm')]);
    const started = performance.now();
    pglite = await PGlite.create(dataDir, { extensions: { pg_trgm } });
    log.debug('embedded database open', { dataDir, ms: Math.round(performance.now() - started) });
    const db = pglite;
    const session: SqlSession = {
      query: async (sql, params) => (await db.query<never>(sql, params)).rows,
      exec: async (sql) => void (await db.exec(sql)),
    };
    await migrate(session);
    const { PrismaPGlite } = await import('pglite-prisma-adapter');
    const prisma = new PrismaClient({ adapter: new PrismaPGlite(db) });
    return {
      kind: 'pglite',
      pglite: db,
      prisma,
      location: inMemory ? 'in memory (PGlite)' : `${dataDir} (PGlite)`,
      close: once(async () => {
        await prisma.$disconnect();
        await db.close();
        unlock();
      }),
    };
  } catch (error) {
    await pglite?.close().catch(() => {});
    unlock();
    if (error instanceof DatabaseUnavailableError) throw error;
    throw new DatabaseUnavailableError(`cannot open the embedded database in ${dataDir}: ${(error as Error).message}`, { cause: error });
  }
}

async function openPostgres(url: string): Promise<Database> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // An error event after connecting (server restart) must not crash the process; queries report it.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    throw new DatabaseUnavailableError(`cannot connect to ${redactUrl(url)}: ${connectionFailure(error, url)}`, { cause: error });
  }
  try {
    await migrate({
      query: async (sql, params) => (await client.query(sql, params)).rows,
      exec: async (sql) => void (await client.query(sql)),
    });
  } catch (error) {
    throw new DatabaseUnavailableError(`cannot migrate ${redactUrl(url)}: ${(error as Error).message}`, { cause: error });
  } finally {
    await client.end().catch(() => {});
  }
  const { PrismaPg } = await import('@prisma/adapter-pg');
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS }) });
  return {
    kind: 'postgres',
    connectionString: url,
    prisma,
    location: redactUrl(url),
    close: once(() => prisma.$disconnect()),
  };
}

/** Says in a few words why a connection failed, and what to check. */
function connectionFailure(error: unknown, url: string): string {
  const e = error as { code?: string; message?: string };
  const { hostname, port, username, pathname } = new URL(url);
  const database = decodeURIComponent(pathname.slice(1)) || username;
  switch (e.code) {
    case 'ECONNREFUSED':
      return `connection refused by ${hostname}:${port || 5432} (is Postgres running and listening there?)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host "${hostname}" not found`;
    case 'ETIMEDOUT':
      return `no answer from ${hostname}:${port || 5432}`;
    case '28P01':
      return `password authentication failed for user "${decodeURIComponent(username)}"`;
    case '3D000':
      return `database "${database}" does not exist (create it, e.g. \`createdb -h ${hostname} ${database}\`)`;
  }
  if (/timeout/i.test(e.message ?? '')) return `no answer from ${hostname}:${port || 5432} within ${CONNECT_TIMEOUT_MS / 1000} s`;
  return e.message || String(error);
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
