// The breaking-change guard (scripts/schema-compat.ts): schema/schema.graphql against the schema of
// the last release, schema/released.graphql; and the guard itself, fed breaking changes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { breakingChanges, CHANGELOG_FILE, RELEASED_FILE } from '../../scripts/schema-compat.ts';
import { printSortedSchema } from '../../src/graphql/print-schema.ts';

test('the schema breaks nothing of the last release that was not deprecated there first and listed in schema/CHANGELOG.md', async () => {
  const verdicts = await breakingChanges(readFileSync(RELEASED_FILE, 'utf8'), printSortedSchema(), readFileSync(CHANGELOG_FILE, 'utf8'));
  assert.deepEqual(verdicts.filter((v) => v.refused).map((v) => `${v.change.message}: ${v.refused}`), []);
});

const released = /* GraphQL */ `
  type Query {
    model(id: ID!, legacy: Boolean @deprecated(reason: "Ignored.")): Model
    models: [Model!]! @deprecated(reason: "Use modelPage.")
    oldScan: Scan @deprecated(reason: "Gone.")
  }
  type Model {
    name: String!
    size: Int @deprecated(reason: "Use sizeBytes.")
    sizeBytes: Int
    precision: Precision
  }
  type Scan { at: String }
  enum Precision { FP32 FP16 BF16 @deprecated(reason: "Never produced.") }
`;
const changelog = (...paths: string[]) => `# Changelog\n\n## Unreleased\n\n${paths.map((p) => `- Removed \`${p}\`.`).join('\n')}\n\n## 0.1.0\n\n- \`Model.name\`\n`;

async function refusals(current: string, log: string) {
  return (await breakingChanges(released, current, log)).map((v) => [v.change.path, v.refused ?? 'allowed']);
}

test('a breaking change to an element that was not deprecated fails, even when listed', async () => {
  const current = released.replace('    name: String!\n', '');
  assert.deepEqual(await refusals(current, changelog('Model.name')), [['Model.name', '`Model.name` was not deprecated in the released schema']]);
  const typeChanged = released.replace('name: String!', 'name: Int!');
  assert.deepEqual(await refusals(typeChanged, changelog('Model.name')), [['Model.name', '`Model.name` was not deprecated in the released schema']]);
});

test('removing a deprecated field, argument or enum value passes only when the Unreleased section lists it', async () => {
  const current = released
    .replace('    size: Int @deprecated(reason: "Use sizeBytes.")\n', '')
    .replace(', legacy: Boolean @deprecated(reason: "Ignored.")', '')
    .replace(' BF16 @deprecated(reason: "Never produced.")', '');
  const paths = ['Model.size', 'Query.model.legacy', 'Precision.BF16'];
  const verdicts = await refusals(current, changelog(...paths));
  assert.deepEqual(verdicts.map(([p]) => p).sort(), [...paths].sort());
  assert.ok(verdicts.every(([, v]) => v === 'allowed'), JSON.stringify(verdicts));
  // Listed only under a released version, or not at all: refused.
  const unlisted = await refusals(current, changelog('Model.size', 'Query.model.legacy'));
  assert.deepEqual(unlisted.filter(([, v]) => v !== 'allowed'), [['Precision.BF16', '`Precision.BF16` is not listed under "## Unreleased" in schema/CHANGELOG.md']]);
});

test('a type may go once every field and argument that refers to it was deprecated', async () => {
  const withoutScan = released.replace('    oldScan: Scan @deprecated(reason: "Gone.")\n', '').replace('  type Scan { at: String }\n', '');
  const verdicts = await refusals(withoutScan, changelog('Query.oldScan', 'Scan'));
  assert.deepEqual(verdicts.sort(), [['Query.oldScan', 'allowed'], ['Scan', 'allowed']]);
  // Model is still referred to by model(id:), which is not deprecated.
  const withoutModel = released.replace(/ {4}model\(.*\n/, '').replace(/ {4}models:.*\n/, '').replace(/ {2}type Model \{[^}]*\}\n/, '');
  const refused = await refusals(withoutModel, changelog('Query.model', 'Query.models', 'Model'));
  assert.deepEqual(refused.filter(([, v]) => v !== 'allowed').map(([p]) => p).sort(), ['Model', 'Query.model']);
});

test('adding types, fields, optional arguments, enum values and descriptions is not breaking', async () => {
  const current = released
    .replace('type Scan { at: String }', '"""A scan."""\n  type Scan { at: String, count: Int }')
    .replace('model(id: ID!,', 'model(id: ID!, withHash: Boolean,')
    .replace('FP16 BF16', 'FP16 FP8 BF16');
  assert.deepEqual(await refusals(current, ''), []);
});
