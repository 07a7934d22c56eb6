// schema.prisma as Prisma reads it: the DMMF datamodel, obtained by running `prisma generate` with a
// generator that writes it out (dmmf-generator.mjs), offline like every generate here.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prismaGenerate, SCHEMA_PATH } from '../../src/db/generate.ts';

export interface DmmfField {
  name: string;
  dbName?: string | null;
  kind: 'scalar' | 'enum' | 'object' | 'unsupported';
  type: string;
  isList: boolean;
  isRequired: boolean;
  hasDefaultValue: boolean;
  default?: unknown;
  nativeType?: [string, string[]] | null;
  relationFromFields?: string[];
  relationToFields?: string[];
  relationOnDelete?: string;
  relationOnUpdate?: string;
}

export interface DmmfModel {
  name: string;
  dbName: string | null;
  fields: DmmfField[];
}

export interface DmmfIndex {
  model: string;
  type: 'id' | 'normal' | 'unique' | 'fulltext';
  dbName?: string;
  algorithm?: string;
  fields: { name: string; sortOrder?: string; operatorClass?: string }[];
}

export interface Datamodel {
  enums: { name: string; dbName?: string | null; values: { name: string; dbName?: string | null }[] }[];
  models: DmmfModel[];
  indexes: DmmfIndex[];
}

export function readDatamodel(): Datamodel {
  const dir = mkdtempSync(join(tmpdir(), 'sdql-dmmf-'));
  try {
    const generator = fileURLToPath(new URL('./dmmf-generator.mjs', import.meta.url));
    const output = join(dir, 'dmmf.json');
    const schema = readFileSync(SCHEMA_PATH, 'utf8').replace(/^generator \w+ \{[\s\S]*?^\}/gm, '');
    const schemaPath = join(dir, 'schema.prisma');
    writeFileSync(schemaPath, `${schema}\ngenerator dmmf {\n  provider = ${JSON.stringify(`node ${generator}`)}\n  output = ${JSON.stringify(output)}\n}\n`);
    prismaGenerate(schemaPath);
    return JSON.parse(readFileSync(output, 'utf8')) as Datamodel;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
