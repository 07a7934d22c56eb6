// The migrated database has exactly what schema.prisma describes: every table, column (type,
// nullability, database-side default), enum, index (columns, order, method, operator class, name)
// and foreign key (columns, target, actions, name). The expectation comes from Prisma's own reading
// of the schema (its DMMF), so a model changed without a migration fails here.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDatabase, type Database } from '../../src/db/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { readDatamodel, type Datamodel, type DmmfField } from './dmmf.ts';

let testDb: TestDatabase;
let db: Database;
let datamodel: Datamodel;

before(async () => {
  datamodel = readDatamodel();
  testDb = await createTestDatabase();
  db = await openDatabase(testDb.target);
});

after(async () => {
  await db?.close();
  await testDb?.drop();
});

const query = <T>(sql: string) => db.prisma.$queryRawUnsafe<T[]>(sql);

// Prisma's PostgreSQL types for scalars without @db.* attributes.
const SCALAR_UDT: Record<string, string> = {
  String: 'text',
  Int: 'int4',
  BigInt: 'int8',
  Float: 'float8',
  Boolean: 'bool',
  DateTime: 'timestamp',
  Json: 'jsonb',
  Decimal: 'numeric',
  Bytes: 'bytea',
};
const NATIVE_UDT: Record<string, string> = {
  Text: 'text',
  VarChar: 'varchar',
  Char: 'bpchar',
  Uuid: 'uuid',
  Integer: 'int4',
  SmallInt: 'int2',
  BigInt: 'int8',
  DoublePrecision: 'float8',
  Real: 'float4',
  Timestamp: 'timestamp',
  Timestamptz: 'timestamptz',
  Date: 'date',
  JsonB: 'jsonb',
  Json: 'json',
};
/** Defaults Prisma Client fills in, which leave the column without a database default. */
const CLIENT_SIDE_DEFAULTS = new Set(['uuid', 'cuid', 'nanoid', 'ulid']);
const ACTION: Record<string, string> = { NoAction: 'a', Restrict: 'r', Cascade: 'c', SetNull: 'n', SetDefault: 'd' };

const tableOf = (model: string) => {
  const m = datamodel.models.find((x) => x.name === model)!;
  return m.dbName ?? m.name;
};
const columnOf = (model: string, field: string) => {
  const f = datamodel.models.find((x) => x.name === model)!.fields.find((x) => x.name === field)!;
  return f.dbName ?? f.name;
};

function expectedUdt(field: DmmfField): string {
  if (field.kind === 'enum') {
    const e = datamodel.enums.find((x) => x.name === field.type)!;
    return e.dbName ?? e.name;
  }
  if (field.nativeType) {
    const udt = NATIVE_UDT[field.nativeType[0]];
    assert.ok(udt, `test/db/schema.test.ts has no mapping for @db.${field.nativeType[0]}: add it`);
    return udt;
  }
  const udt = SCALAR_UDT[field.type];
  assert.ok(udt, `test/db/schema.test.ts has no mapping for ${field.type}: add it`);
  return udt;
}

const hasDatabaseDefault = (field: DmmfField) => {
  if (!field.hasDefaultValue) return false;
  const d = field.default as { name?: string } | undefined;
  return !(d && typeof d === 'object' && !Array.isArray(d) && d.name && CLIENT_SIDE_DEFAULTS.has(d.name));
};

test('the database has exactly the tables of schema.prisma', async () => {
  const rows = await query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> '_prisma_migrations'",
  );
  assert.deepEqual(rows.map((r) => r.table_name).sort(), datamodel.models.map((m) => m.dbName ?? m.name).sort());
});

test('every enum has its values, in order', async () => {
  const rows = await query<{ name: string; labels: string[] }>(
    `SELECT t.typname AS name, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text[] AS labels
     FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = current_schema() GROUP BY t.typname`,
  );
  const actual = Object.fromEntries(rows.map((r) => [r.name, r.labels]));
  const expected = Object.fromEntries(datamodel.enums.map((e) => [e.dbName ?? e.name, e.values.map((v) => v.dbName ?? v.name)]));
  assert.deepEqual(actual, expected);
});

test('every column has its type, nullability and database default', async () => {
  const rows = await query<{ table_name: string; column_name: string; udt_name: string; is_nullable: string; column_default: string | null; datetime_precision: number | null }>(
    `SELECT table_name, column_name, udt_name, is_nullable, column_default, datetime_precision
     FROM information_schema.columns WHERE table_schema = current_schema() AND table_name <> '_prisma_migrations'`,
  );
  const actual = rows
    .map((r) => ({
      column: `${r.table_name}.${r.column_name}`,
      type: r.udt_name,
      nullable: r.is_nullable === 'YES',
      hasDefault: r.column_default !== null,
      ...(r.udt_name === 'timestamp' || r.udt_name === 'timestamptz' ? { precision: Number(r.datetime_precision) } : {}),
    }))
    .sort((a, b) => a.column.localeCompare(b.column));
  const expected = datamodel.models
    .flatMap((m) =>
      m.fields
        .filter((f) => f.kind === 'scalar' || f.kind === 'enum')
        .map((f) => {
          const udt = expectedUdt(f);
          return {
            column: `${m.dbName ?? m.name}.${f.dbName ?? f.name}`,
            type: f.isList ? `_${udt}` : udt,
            // Prisma leaves list columns nullable.
            nullable: f.isList || !f.isRequired,
            hasDefault: hasDatabaseDefault(f),
            ...(udt === 'timestamp' || udt === 'timestamptz' ? { precision: Number(f.nativeType?.[1][0] ?? 3) } : {}),
          };
        }),
    )
    .sort((a, b) => a.column.localeCompare(b.column));
  assert.deepEqual(actual, expected);
});

test('every index and key has its columns, order, method, operator classes and name', async () => {
  const rows = await query<{ table: string; name: string; unique: boolean; primary: boolean; method: string; columns: string[]; opclasses: string[]; desc: boolean[] }>(
    `SELECT t.relname AS table, i.relname AS name, ix.indisunique AS unique, ix.indisprimary AS primary, am.amname AS method,
       ARRAY(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS columns,
       ARRAY(SELECT o.opcname FROM unnest(ix.indclass::oid[]) WITH ORDINALITY c(oid, n)
             JOIN pg_opclass o ON o.oid = c.oid ORDER BY c.n)::text[] AS opclasses,
       ARRAY(SELECT (opt & 1) = 1 FROM unnest(ix.indoption::int2[]) WITH ORDINALITY d(opt, n) ORDER BY d.n)::bool[] AS desc
     FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid
     JOIN pg_am am ON am.oid = i.relam JOIN pg_namespace ns ON ns.oid = t.relnamespace
     WHERE ns.nspname = current_schema() AND t.relname <> '_prisma_migrations'`,
  );
  const actual = rows
    .map((r) => ({
      name: r.name,
      table: r.table,
      kind: r.primary ? 'id' : r.unique ? 'unique' : 'normal',
      method: r.method,
      columns: r.columns,
      desc: r.desc,
      // Only operator classes the schema names; the default ones depend on the column type.
      opclasses: r.opclasses.map((o) => (o.endsWith('_trgm_ops') || !o.endsWith('_ops') ? o : null)),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const expected = datamodel.indexes
    .map((ix) => {
      const table = tableOf(ix.model);
      const columns = ix.fields.map((f) => columnOf(ix.model, f.name));
      const suffix = ix.type === 'id' ? 'pkey' : ix.type === 'unique' ? 'key' : 'idx';
      return {
        // Prisma's default constraint names: Table_pkey, Table_col1_col2_key / _idx (at most 63 bytes).
        name: ix.dbName ?? (ix.type === 'id' ? `${table}_pkey` : `${table}_${columns.join('_')}_${suffix}`.slice(0, 63)),
        table,
        kind: ix.type,
        method: (ix.algorithm ?? 'BTree').toLowerCase(),
        columns,
        desc: ix.fields.map((f) => f.sortOrder?.toLowerCase() === 'desc'),
        opclasses: ix.fields.map((f) => f.operatorClass ?? null),
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  assert.deepEqual(actual, expected);
});

test('every relation has its foreign key, actions and name', async () => {
  const rows = await query<{ name: string; table: string; ref_table: string; columns: string[]; ref_columns: string[]; on_delete: string; on_update: string }>(
    `SELECT c.conname AS name, t.relname AS table, ft.relname AS ref_table,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS columns,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS ref_columns,
       c.confdeltype::text AS on_delete, c.confupdtype::text AS on_update
     FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class ft ON ft.oid = c.confrelid
     JOIN pg_namespace ns ON ns.oid = t.relnamespace
     WHERE c.contype = 'f' AND ns.nspname = current_schema()`,
  );
  const actual = rows.sort((a, b) => a.name.localeCompare(b.name));
  const expected = datamodel.models
    .flatMap((m) =>
      m.fields
        .filter((f) => f.kind === 'object' && f.relationFromFields?.length)
        .map((f) => {
          const table = m.dbName ?? m.name;
          const columns = f.relationFromFields!.map((name) => columnOf(m.name, name));
          // Prisma's defaults: Restrict (required) or SetNull (optional) on delete, Cascade on update.
          const onDelete = f.relationOnDelete ?? (f.isRequired ? 'Restrict' : 'SetNull');
          return {
            name: `${table}_${columns.join('_')}_fkey`,
            table,
            ref_table: tableOf(f.type),
            columns,
            ref_columns: f.relationToFields!.map((name) => columnOf(f.type, name)),
            on_delete: ACTION[onDelete],
            on_update: ACTION[f.relationOnUpdate ?? 'Cascade'],
          };
        }),
    )
    .sort((a, b) => a.name.localeCompare(b.name));
  assert.deepEqual(actual, expected);
});
