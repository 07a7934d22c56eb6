// The schema through yoga.fetch, in process: queries, expected errors with their codes, masking.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { GraphQLError } from 'graphql';
import { createApp, type App } from '../../src/app/index.ts';
import { loadConfig } from '../../src/config.ts';
import { DiffusionError } from '../../src/diffusion/errors.ts';
import { LIMITS } from '../../src/diffusion/index.ts';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';
import { maskError } from '../../src/graphql/errors.ts';
import { printSortedSchema, SCHEMA_FILE } from '../../src/graphql/print-schema.ts';
import { configureLogging } from '../../src/log.ts';
import { createGraphQLHandler, type Yoga } from '../../src/server/graphql.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';

let tmp: string;
let testDb: TestDatabase;
let services: App;
let yoga: Yoga;
const logLines: string[] = [];

before(async () => {
  configureLogging({ json: true, write: (line) => logLines.push(line) });
  tmp = mkdtempSync(join(tmpdir(), 'sdql-graphql-'));
  const config = loadConfig({ 'data-dir': join(tmp, 'data'), 'models-dir': join(tmp, 'models') }, {});
  await createFixturePipeline(join(config.modelsDir, 'demo'));
  cpSync(join(config.modelsDir, 'demo'), join(config.modelsDir, 'broken'), { recursive: true });
  rmSync(join(config.modelsDir, 'broken', 'vae_decoder'), { recursive: true });
  mkdirSync(config.lorasDir);
  testDb = await createTestDatabase();
  services = await createApp(config, { database: testDb.target });
  yoga = createGraphQLHandler(services);
});

after(async () => {
  await services?.lifecycle.shutdown();
  await testDb?.drop();
  rmSync(tmp, { recursive: true, force: true });
  configureLogging({ write: (line) => process.stdout.write(`${line}\n`) });
});

async function graphql(query: string, variables?: Record<string, unknown>) {
  const response = await yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: { code?: string } }[] };
}

test('schema/schema.graphql is the printed, sorted schema (else run `npm run schema`)', () => {
  assert.ok(readFileSync(SCHEMA_FILE, 'utf8') === printSortedSchema(), 'schema/schema.graphql is stale: run `npm run schema`');
});

test('models lists every folder, broken ones with their error', async () => {
  const { data, errors } = await graphql(
    '{ models { name family supported error nativeWidth nativeHeight vaeScaleFactor canImg2img canInpaint precision predictionType sizeBytes } }',
  );
  assert.equal(errors, undefined);
  const models = data!.models as Record<string, unknown>[];
  assert.deepEqual(
    models.map((m) => m.name),
    ['broken', 'demo'],
  );
  assert.deepEqual(models[1], {
    name: 'demo',
    family: 'UNKNOWN',
    supported: true,
    error: null,
    nativeWidth: 64,
    nativeHeight: 64,
    vaeScaleFactor: 8,
    canImg2img: true,
    canInpaint: true,
    precision: 'FP32',
    predictionType: 'epsilon',
    sizeBytes: services.registry.model('demo')!.sizeBytes,
  });
  assert.match(models[0].error as string, /missing vae_decoder\/model\.onnx/);
  assert.equal(models[0].supported, false);
});

test('model(id) answers the model, its hash lazily, and NOT_FOUND for an unknown id', async () => {
  const { data, errors } = await graphql('query ($id: ID!) { model(id: $id) { id sha256 shortHash } }', { id: 'demo' });
  assert.equal(errors, undefined);
  const model = data!.model as { sha256: string; shortHash: string };
  assert.match(model.sha256, /^[0-9a-f]{64}$/);
  assert.equal(model.shortHash, model.sha256.slice(0, 10));

  const missing = await graphql('{ model(id: "nope") { id } }');
  assert.equal(missing.data!.model, null);
  assert.equal(missing.errors?.[0].extensions?.code, 'NOT_FOUND');
  assert.match(missing.errors![0].message, /"nope"/);
  const lora = await graphql('{ lora(id: "nope") { id } }');
  assert.equal(lora.errors?.[0].extensions?.code, 'NOT_FOUND');
});

test('an invalid document gets the standard validation error', async () => {
  const { data, errors } = await graphql('{ models { noSuchField } }');
  assert.equal(data, undefined);
  assert.equal(errors?.[0].message, 'Cannot query field "noSuchField" on type "Model".');
  assert.equal(errors?.[0].extensions?.code, 'GRAPHQL_VALIDATION_FAILED');
});

test('system tells the version and the database', async () => {
  const { data } = await graphql('{ system { version database modelsDir lorasDir } }');
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.deepEqual(data!.system, {
    version: pkg.version,
    database: testDb.target.kind === 'pglite' ? 'EMBEDDED' : 'POSTGRES',
    modelsDir: services.config.modelsDir,
    lorasDir: services.config.lorasDir,
  });
});

test('system.limits states the limits the engine enforces', async () => {
  const fields = Object.keys(LIMITS).filter((key) => !['maxSeed', 'maxGuidanceScale', 'maxClipSkip'].includes(key));
  const { data } = await graphql(`{ system { limits { ${fields.join(' ')} } } }`);
  assert.deepEqual((data as { system: { limits: unknown } }).system.limits, Object.fromEntries(fields.map((key) => [key, LIMITS[key as keyof typeof LIMITS]])));
});

test('an unexpected error is masked for the client and logged in full', async () => {
  const original = services.registry.modelSha256;
  services.registry.modelSha256 = async () => {
    throw new Error('disk on fire at /secret/path');
  };
  try {
    await services.db.prisma.model.update({ where: { id: 'demo' }, data: { unetSha256: null } });
    const { data, errors } = await graphql('{ model(id: "demo") { name sha256 } }');
    assert.deepEqual(data!.model, { name: 'demo', sha256: null });
    assert.equal(errors?.[0].message, 'Unexpected error.');
    assert.equal(errors?.[0].extensions?.code, 'INTERNAL_SERVER_ERROR');
    assert.ok(!JSON.stringify(errors).includes('secret'));
    assert.ok(logLines.some((l) => l.includes('disk on fire at /secret/path') && l.includes('"level":"error"')));
  } finally {
    services.registry.modelSha256 = original;
  }
});

test('maskError keeps expected errors and maps the engine\'s', () => {
  const expected = new GraphQLError('no', { extensions: { code: 'NOT_FOUND' } });
  assert.equal(maskError(expected, 'Unexpected error.'), expected);
  const wrapped = new GraphQLError('steps must be …', { originalError: new DiffusionError('BAD_USER_INPUT', 'steps must be from 1 to 150, got 0'), path: ['generate'] });
  const mapped = maskError(wrapped, 'Unexpected error.') as GraphQLError;
  assert.equal(mapped.message, 'steps must be from 1 to 150, got 0');
  assert.equal(mapped.extensions.code, 'BAD_USER_INPUT');
  assert.deepEqual(mapped.path, ['generate']);
});

test('DateTime writes UTC and reads RFC 3339 with an offset; SafeInt writes BIGINT columns as numbers', async () => {
  const { data } = await graphql('{ model(id: "demo") { sizeBytes scannedAt } }');
  const model = data!.model as { sizeBytes: unknown; scannedAt: string };
  const row = await services.db.prisma.model.findUniqueOrThrow({ where: { id: 'demo' } });
  assert.equal(typeof row.sizeBytes, 'bigint');
  assert.equal(model.sizeBytes, Number(row.sizeBytes));
  assert.equal(model.scannedAt, row.scannedAt.toISOString());

  const filter = 'query ($after: DateTime) { generations(first: 1, filter: { createdAfter: $after }) { edges { node { id } } } }';
  assert.deepEqual((await graphql(filter, { after: '2000-01-01T01:00:00+01:00' })).errors, undefined);
  const dateOnly = await graphql(filter, { after: '2000-01-01' });
  assert.equal(dateOnly.errors?.[0].extensions?.code, 'BAD_USER_INPUT');
  assert.match(dateOnly.errors![0].message, /DateTime cannot represent an invalid date-time-string 2000-01-01/);
});
