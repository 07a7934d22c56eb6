// The documents the panel sends (operations/*.graphql), checked against the server's committed schema.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSchema, parse, validate, type DocumentNode, type GraphQLSchema } from 'graphql';

const root = fileURLToPath(new URL('..', import.meta.url));
export const SCHEMA_FILE = join(root, '..', '..', 'schema', 'schema.graphql');
export const OPERATIONS_DIR = join(root, 'operations');

export function loadSchema(): GraphQLSchema {
  return buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));
}

/** Every operation file, parsed, with its name. */
export function loadOperations(): { location: string; document: DocumentNode }[] {
  return readdirSync(OPERATIONS_DIR)
    .filter((name) => name.endsWith('.graphql'))
    .sort()
    .map((name) => ({ location: `operations/${name}`, document: parse(readFileSync(join(OPERATIONS_DIR, name), 'utf8')) }));
}

/** Throws naming every document and error that does not validate against schema/schema.graphql. */
export function validateOperations(): void {
  const schema = loadSchema();
  const operations = loadOperations();
  // Fragments may be used across files: validate all the documents together.
  const all: DocumentNode = { kind: parse('{ a }').kind, definitions: operations.flatMap((o) => o.document.definitions) };
  const errors = validate(schema, all);
  if (errors.length) {
    throw new Error(`the panel's GraphQL documents do not validate against ${SCHEMA_FILE}:\n${errors.map((e) => `  ${e.message}`).join('\n')}`);
  }
}
