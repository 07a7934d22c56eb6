// The panel against the server's committed schema: a schema change that breaks a document the panel
// sends fails here (and in .ci/run). The typed documents are written by the repository's
// `npm run codegen`, whose test (test/clients/photoshop-types.test.ts) fails when they are stale.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { buildSchema, parse, validate } from 'graphql';
import { loadOperations, SCHEMA_FILE, validateOperations } from '../scripts/operations.ts';
import * as documents from '../src/api/generated/graphql.ts';

const schema = buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));

test('every document the panel sends validates against schema/schema.graphql', () => {
  validateOperations();
  const sent = Object.entries(documents).filter(([name]) => name.endsWith('Document'));
  assert.ok(sent.length >= 8, 'the generated module exports the documents');
  for (const [name, document] of sent) {
    const errors = validate(schema, parse(String(document)));
    assert.deepEqual(errors.map((e) => e.message), [], name);
  }
});

test('a document the schema does not have fails validation (the check can fail)', () => {
  const errors = validate(schema, parse('query { models { id noSuchField } }'));
  assert.equal(errors.length, 1);
  assert.ok(loadOperations().length > 0);
});
