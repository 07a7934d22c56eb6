// Applies prisma/migrations at start-up, keeping `_prisma_migrations` exactly as Prisma Migrate does
// (same table, same SHA-256 checksums, same advisory lock), so `prisma migrate deploy` and
// `prisma migrate status` agree with what ran here. Unlike Prisma, each migration runs in one
// transaction with its bookkeeping: a failure leaves nothing half-applied and nothing to resolve.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { log } from '../log.ts';

/** One connection: statements run in order, and a transaction or session lock spans calls. */
export interface SqlSession {
  query<T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs a script of several statements. */
  exec(sql: string): Promise<void>;
}

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations', import.meta.url));

/** Prisma Migrate's advisory lock key: holding it also keeps `prisma migrate deploy` out meanwhile. */
const PRISMA_MIGRATE_LOCK = 72707369;

// Prisma's own definition (schema-engine, postgres flavour).
const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)`;

export interface Migration {
  name: string;
  script: string;
  checksum: string;
}

export const checksum = (script: string) => createHash('sha256').update(script).digest('hex');

/** The migrations of `dir` in the order Prisma applies them (by folder name). */
export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const lock = join(dir, 'migration_lock.toml');
  if (existsSync(lock) && !/provider\s*=\s*"postgresql"/.test(readFileSync(lock, 'utf8'))) {
    throw new Error(`${lock} names another provider than postgresql`);
  }
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'migration.sql')))
    .map((e) => e.name)
    .sort()
    .map((name) => {
      const script = readFileSync(join(dir, name, 'migration.sql'), 'utf8');
      return { name, script, checksum: checksum(script) };
    });
}

/** Prisma accepts a script whose line endings git changed. */
function sameScript(migration: Migration, recorded: string): boolean {
  const { script } = migration;
  return [script, script.replaceAll('\r\n', '\n'), script.replaceAll('\n', '\r\n')].some((s) => checksum(s) === recorded);
}

interface MigrationRow extends Record<string, unknown> {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  logs: string | null;
}

/** Applies the migrations not yet applied; returns their names. Safe to run from several processes at once. */
export async function migrate(session: SqlSession, migrations = readMigrations()): Promise<string[]> {
  const [{ locked }] = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [PRISMA_MIGRATE_LOCK]);
  if (!locked) {
    log.info('waiting for another process to finish migrating the database');
    await session.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]);
  }
  try {
    await session.exec(CREATE_MIGRATIONS_TABLE);
    const rows = await session.query<MigrationRow>(
      'SELECT migration_name, checksum, finished_at, rolled_back_at, logs FROM _prisma_migrations WHERE rolled_back_at IS NULL',
    );
    const failed = rows.filter((r) => r.finished_at === null);
    if (failed.length) {
      const names = failed.map((r) => r.migration_name).join(', ');
      throw new Error(
        `the database records failed migrations (${names}); fix them and mark them with \`npx prisma migrate resolve\` before starting sdql`,
      );
    }
    const applied = new Map(rows.map((r) => [r.migration_name, r.checksum]));
    for (const m of migrations) {
      const recorded = applied.get(m.name);
      if (recorded !== undefined && !sameScript(m, recorded)) {
        log.warn('an applied migration was edited afterwards; the database keeps what ran', { migration: m.name });
      }
    }
    const pending = migrations.filter((m) => !applied.has(m.name));
    for (const m of pending) await apply(session, m);
    return pending.map((m) => m.name);
  } finally {
    await session.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]);
  }
}

async function apply(session: SqlSession, m: Migration): Promise<void> {
  const started = performance.now();
  await session.exec('BEGIN');
  try {
    const id = randomUUID();
    await session.query(
      'INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) VALUES ($1, $2, $3, now(), 0)',
      [id, m.checksum, m.name],
    );
    await session.exec(m.script);
    await session.query('UPDATE _prisma_migrations SET applied_steps_count = 1, finished_at = clock_timestamp() WHERE id = $1', [id]);
    await session.exec('COMMIT');
  } catch (error) {
    await session.exec('ROLLBACK');
    throw new Error(`migration ${m.name} failed and was rolled back: ${(error as Error).message}`, { cause: error });
  }
  log.info('applied database migration', { migration: m.name, ms: Math.round(performance.now() - started) });
}
