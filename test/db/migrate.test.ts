import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import pg from 'pg';
import { DatabaseUnavailableError, openDatabase, type DatabaseTarget } from '../../src/db/index.ts';
import { checksum, migrate, readMigrations, type Migration, type SqlSession } from '../../src/db/migrate.ts';
import { configureLogging } from '../../src/log.ts';
import { createTestDatabase, skipWithoutPostgres, type TestDatabase } from '../helpers/db.ts';
import { pollUntil, withDeadline } from '../helpers/wait.ts';

/** Prisma Migrate's advisory lock key (src/db/migrate.ts). */
const PRISMA_MIGRATE_LOCK = 72707369;

const dropLater: TestDatabase[] = [];
after(async () => {
  for (const d of dropLater) await d.drop();
});

async function freshDatabase(): Promise<DatabaseTarget> {
  const d = await createTestDatabase();
  dropLater.push(d);
  return d.target;
}

/** A plain connection to `target`, without migrating it. */
async function connect(target: DatabaseTarget): Promise<SqlSession & { close(): Promise<void> }> {
  if (target.kind === 'pglite') {
    const db = await PGlite.create(target.dataDir, { extensions: { pg_trgm } });
    return {
      query: async (sql, params) => (await db.query<never>(sql, params)).rows,
      exec: async (sql) => void (await db.exec(sql)),
      close: () => db.close(),
    };
  }
  const client = new pg.Client({ connectionString: target.url });
  await client.connect();
  return {
    query: async (sql, params) => (await client.query(sql, params)).rows,
    exec: async (sql) => void (await client.query(sql)),
    close: () => client.end(),
  };
}

const migration = (name: string, script: string): Migration => ({ name, script, checksum: checksum(script) });

interface Row extends Record<string, unknown> {
  id: string;
  checksum: string;
  finished_at: Date | null;
  migration_name: string;
  logs: string | null;
  rolled_back_at: Date | null;
  started_at: Date;
  applied_steps_count: number;
}

test('applies every migration once and records it as Prisma Migrate does', async () => {
  const session = await connect(await freshDatabase());
  try {
    const migrations = readMigrations();
    assert.ok(migrations.length > 0);
    assert.deepEqual(await migrate(session, migrations), migrations.map((m) => m.name));
    const rows = await session.query<Row>('SELECT * FROM _prisma_migrations ORDER BY started_at');
    assert.equal(rows.length, migrations.length);
    for (const [i, m] of migrations.entries()) {
      const row = rows[i];
      assert.equal(row.migration_name, m.name);
      // Prisma's checksum: SHA-256 of the file, lowercase hex.
      assert.match(row.checksum, /^[0-9a-f]{64}$/);
      assert.equal(row.checksum, checksum(m.script));
      assert.match(row.id, /^[0-9a-f-]{36}$/);
      assert.ok(row.finished_at instanceof Date && row.finished_at >= row.started_at);
      assert.equal(row.applied_steps_count, 1);
      assert.equal(row.logs, null);
      assert.equal(row.rolled_back_at, null);
    }
    // The table's shape is Prisma's own, so `prisma migrate deploy` reads it.
    const columns = await session.query<{ column_name: string; data_type: string; is_nullable: string }>(
      "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position",
    );
    assert.deepEqual(
      columns.map((c) => `${c.column_name} ${c.data_type} ${c.is_nullable}`),
      [
        'id character varying NO',
        'checksum character varying NO',
        'finished_at timestamp with time zone YES',
        'migration_name character varying NO',
        'logs text YES',
        'rolled_back_at timestamp with time zone YES',
        'started_at timestamp with time zone NO',
        'applied_steps_count integer NO',
      ],
    );

    // Running again changes nothing.
    assert.deepEqual(await migrate(session, migrations), []);
    assert.equal((await session.query('SELECT 1 FROM _prisma_migrations')).length, migrations.length);
  } finally {
    await session.close();
  }
});

test('a failing migration is rolled back whole and not recorded; later ones do not run', async () => {
  const session = await connect(await freshDatabase());
  try {
    const list = [
      migration('1_ok', 'CREATE TABLE first_table (id int);'),
      migration('2_bad', 'CREATE TABLE half_done (id int);\nSELECT no_such_column FROM first_table;'),
      migration('3_after', 'CREATE TABLE after_bad (id int);'),
    ];
    await assert.rejects(migrate(session, list), /migration 2_bad failed and was rolled back: .*no_such_column/);
    const tables = (await session.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")).map(
      (r) => r.table_name,
    );
    assert.ok(tables.includes('first_table'));
    assert.ok(!tables.includes('half_done'));
    assert.ok(!tables.includes('after_bad'));
    assert.deepEqual((await session.query<Row>('SELECT migration_name FROM _prisma_migrations')).map((r) => r.migration_name), ['1_ok']);

    // Fixed, it applies on the next start.
    list[1] = migration('2_bad', 'CREATE TABLE half_done (id int);');
    assert.deepEqual(await migrate(session, list), ['2_bad', '3_after']);
  } finally {
    await session.close();
  }
});

test('refuses to start over a migration Prisma recorded as failed', async () => {
  const session = await connect(await freshDatabase());
  try {
    await migrate(session, [migration('1_ok', 'SELECT 1;')]);
    await session.query(
      "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) VALUES ('00000000-0000-0000-0000-000000000000', 'x', '2_failed', now(), 0)",
    );
    await assert.rejects(migrate(session, [migration('1_ok', 'SELECT 1;')]), /failed migrations \(2_failed\).*prisma migrate resolve/);
  } finally {
    await session.close();
  }
});

test('warns when an applied migration was edited afterwards, accepting changed line endings', async () => {
  const lines: string[] = [];
  configureLogging({ write: (line) => lines.push(line), json: true });
  const session = await connect(await freshDatabase());
  try {
    await migrate(session, [migration('1_a', 'SELECT 1;\nSELECT 2;\n')]);
    await migrate(session, [migration('1_a', 'SELECT 1;\r\nSELECT 2;\r\n')]);
    assert.equal(lines.filter((l) => l.includes('edited')).length, 0);
    await migrate(session, [migration('1_a', 'SELECT 3;\n')]);
    assert.equal(lines.filter((l) => l.includes('edited') && l.includes('1_a')).length, 1);
  } finally {
    configureLogging({ write: (line) => process.stdout.write(`${line}\n`) });
    await session.close();
  }
});

test('two processes migrating one Postgres at once: the advisory lock lets one apply each migration', { skip: skipWithoutPostgres }, async () => {
  const target = await freshDatabase();
  const [a, b, gate] = await Promise.all([connect(target), connect(target), connect(target)]);
  try {
    // The migration waits inside for an advisory lock the test holds (the gate), so that one process
    // is certainly inside it while the other arrives.
    const GATE = 4242;
    await gate.query('SELECT pg_advisory_lock($1)', [GATE]);
    const list = [migration('1_gated', `SELECT pg_advisory_xact_lock(${GATE}); CREATE TABLE once_only (id int);`)];
    const results = Promise.all([migrate(a, list), migrate(b, list)]);
    const waitingFor = () =>
      gate.query<{ key: number }>(
        `SELECT objid::int AS key FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      );
    // One process is inside the migration (waiting at the gate) while the other waits for Prisma Migrate's lock.
    const waiting = await pollUntil(waitingFor, (rows) => rows.length === 2, 'one migration inside and the other waiting for the lock');
    assert.deepEqual(waiting.map((r) => r.key).sort(), [GATE, PRISMA_MIGRATE_LOCK].sort());
    await gate.query('SELECT pg_advisory_unlock($1)', [GATE]);
    assert.deepEqual((await withDeadline(results, 'both migrations')).flat(), ['1_gated']);
    assert.equal((await a.query('SELECT 1 FROM _prisma_migrations')).length, 1);
  } finally {
    await Promise.all([a.close(), b.close(), gate.close()]);
  }
  // And the real thing: two databases opened at once migrate it once.
  const fresh = await freshDatabase();
  const [x, y] = await Promise.all([openDatabase(fresh), openDatabase(fresh)]);
  try {
    const rows = await x.prisma.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM _prisma_migrations');
    assert.equal(rows[0].n, readMigrations().length);
  } finally {
    await Promise.all([x.close(), y.close()]);
  }
});

test('the embedded database keeps its data across restarts and is locked while open', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdql-pglite-'));
  const target: DatabaseTarget = { kind: 'pglite', dataDir: join(dir, 'db') };
  try {
    const first = await openDatabase(target);
    try {
      await first.prisma.model.create({ data: { id: 'kept', name: 'kept' } });
      await assert.rejects(openDatabase(target), (error: Error) => {
        assert.ok(error instanceof DatabaseUnavailableError);
        assert.match(error.message, new RegExp(`in use by another process \\(pid ${process.pid}\\)`));
        return true;
      });
    } finally {
      await first.close();
    }
    const second = await openDatabase(target);
    try {
      assert.equal((await second.prisma.model.findUnique({ where: { id: 'kept' } }))?.name, 'kept');
    } finally {
      await second.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unusable DATABASE_URL fails at once with a one-line reason', async () => {
  const cases: [string, RegExp][] = [
    ['postgresql://postgres@127.0.0.1:1/sdql', /^cannot connect to postgresql:\/\/postgres@127\.0\.0\.1:1\/sdql: connection refused by 127\.0\.0\.1:1/],
    ['postgresql://u:secret@no-such-host.invalid/sdql', /^cannot connect to postgresql:\/\/u:\*\*\*\*@no-such-host\.invalid\/sdql: host "no-such-host\.invalid" not found$/],
  ];
  if (process.env.DATABASE_URL) {
    const url = new URL(process.env.DATABASE_URL);
    url.pathname = '/sdql_no_such_database';
    cases.push([url.toString(), /database "sdql_no_such_database" does not exist/]);
  }
  for (const [url, expected] of cases) {
    const refused = assert.rejects(openDatabase({ kind: 'postgres', url }), (error: Error) => {
      assert.ok(error instanceof DatabaseUnavailableError, String(error));
      assert.match(error.message, expected);
      assert.ok(!error.message.includes('\n'));
      assert.ok(!error.message.includes('secret'));
      return true;
    });
    await withDeadline(refused, `openDatabase(${url}) failing`);
  }
});

test('a server that accepts the connection and never answers is given up after one attempt, saying so', async () => {
  const sockets: Socket[] = [];
  const silent = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as AddressInfo;
  try {
    const refused = assert.rejects(openDatabase({ kind: 'postgres', url: `postgresql://postgres@127.0.0.1:${port}/sdql` }), (error: Error) => {
      assert.ok(error instanceof DatabaseUnavailableError, String(error));
      assert.equal(error.message, `cannot connect to postgresql://postgres@127.0.0.1:${port}/sdql: no answer from 127.0.0.1:${port} within 5 s`);
      return true;
    });
    await withDeadline(refused, 'openDatabase giving up on a silent server');
    assert.equal(sockets.length, 1, 'one connection attempt');
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});
