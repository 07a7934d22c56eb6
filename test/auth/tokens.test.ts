// The token store on a real database: the first-start admin token, hashes only, authentication.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Tokens } from '../../src/auth/index.ts';
import { openDatabase, type Database } from '../../src/db/index.ts';
import { configureLogging } from '../../src/log.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';

let testDb: TestDatabase;
let db: Database;
const logLines: string[] = [];

before(async () => {
  configureLogging({ json: true, write: (line) => logLines.push(line) });
  testDb = await createTestDatabase();
  db = await openDatabase(testDb.target);
});
after(async () => {
  await db?.close();
  await testDb?.drop();
});

test('ensureAdmin creates `admin` once; a token without ADMIN in its way is reported', async () => {
  const tokens = new Tokens(db.prisma);
  await tokens.create('admin', ['READ']);
  assert.equal(await tokens.ensureAdmin(), undefined);
  assert.match(logLines.join('\n'), /no token has the ADMIN scope and the name \\?"admin\\?" is taken/);
  await tokens.revoke('admin');

  const token = await tokens.ensureAdmin();
  assert.match(token ?? '', /^sdql_[\w-]{43}$/);
  assert.equal(await tokens.ensureAdmin(), undefined, 'not again');
  const viewer = await tokens.authenticate(token!);
  assert.deepEqual(viewer, { name: 'admin', admin: true, canGenerate: true });
  assert.ok((await tokens.list())[0].lastUsedAt, 'authenticating records the use');
  assert.equal(await tokens.authenticate(`${token!.slice(0, -1)}x`), undefined);

  const reader = await tokens.create('reader', ['READ']);
  assert.deepEqual(await tokens.authenticate(reader.token), { name: 'reader', admin: false, canGenerate: false });
  const rows = await db.prisma.token.findMany();
  assert.ok(rows.every((r) => /^[0-9a-f]{64}$/.test(r.hash) && !JSON.stringify(r).includes(reader.token.slice(5))), 'only SHA-256 hashes are stored');
  await tokens.revoke('reader');
  assert.equal(await tokens.authenticate(reader.token), undefined);
});
