// The breaking-change guard: the schema may break a client of the last release only where the
// element was deprecated (`@deprecated(reason:)`) in that release and schema/CHANGELOG.md's
// "Unreleased" section lists the change. test/graphql/compatibility.test.ts runs it; so does
// `node --import tsx scripts/schema-compat.ts`, which prints what it finds.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { diff, CriticalityLevel, type Change } from '@graphql-inspector/core';
import {
  buildSchema,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isObjectType,
  isUnionType,
  type GraphQLSchema,
} from 'graphql';

export const RELEASED_FILE = fileURLToPath(new URL('../schema/released.graphql', import.meta.url));
export const CHANGELOG_FILE = fileURLToPath(new URL('../schema/CHANGELOG.md', import.meta.url));

export interface Verdict {
  change: Change;
  /** Why it is refused; undefined when it is allowed. */
  refused?: string;
}

/** Every breaking change from `released` to `current`, each with why it is refused, if it is. */
export async function breakingChanges(released: string, current: string, changelog: string): Promise<Verdict[]> {
  const before = buildSchema(released);
  const changes = await diff(before, buildSchema(current));
  const listed = unreleasedSection(changelog);
  return changes
    .filter((c) => c.criticality.level === CriticalityLevel.Breaking)
    .map((change) => {
      const path = change.path ?? '';
      if (!isDeprecated(before, path)) return { change, refused: `\`${path}\` was not deprecated in the released schema` };
      if (!listed.includes(`\`${path}\``)) return { change, refused: `\`${path}\` is not listed under "## Unreleased" in schema/CHANGELOG.md` };
      return { change };
    });
}

/** The text between "## Unreleased" and the next "## " heading. */
function unreleasedSection(changelog: string): string {
  const start = changelog.search(/^## Unreleased\b/m);
  if (start < 0) return '';
  const rest = changelog.slice(start).split('\n').slice(1).join('\n');
  const end = rest.search(/^## /m);
  return end < 0 ? rest : rest.slice(0, end);
}

/**
 * Whether the element at an inspector path (`Type`, `Type.field`, `Type.field.arg`, `Enum.VALUE`)
 * or an element that holds it was deprecated. A type cannot carry @deprecated: it counts as
 * deprecated when every field, argument and input field that refers to it is.
 */
function isDeprecated(schema: GraphQLSchema, path: string): boolean {
  const [typeName, member, argName] = path.split('.');
  const type = schema.getType(typeName);
  if (!type) return false;
  if (member !== undefined) {
    if (isObjectType(type) || isInterfaceType(type)) {
      const field = type.getFields()[member];
      if (field?.deprecationReason != null) return true;
      if (argName !== undefined && field?.args.find((a) => a.name === argName)?.deprecationReason != null) return true;
    } else if (isInputObjectType(type)) {
      if (type.getFields()[member]?.deprecationReason != null) return true;
    } else if (isEnumType(type)) {
      if (type.getValue(member)?.deprecationReason != null) return true;
    }
  }
  return isTypeDeprecated(schema, typeName);
}

function isTypeDeprecated(schema: GraphQLSchema, typeName: string): boolean {
  const references: boolean[] = [];
  for (const type of Object.values(schema.getTypeMap())) {
    if (type.name.startsWith('__')) continue;
    if (isObjectType(type) || isInterfaceType(type)) {
      if (type.getInterfaces().some((i) => i.name === typeName)) references.push(false);
      for (const field of Object.values(type.getFields())) {
        if (getNamedType(field.type).name === typeName) references.push(field.deprecationReason != null);
        for (const arg of field.args) {
          if (getNamedType(arg.type).name === typeName) references.push(field.deprecationReason != null || arg.deprecationReason != null);
        }
      }
    } else if (isInputObjectType(type)) {
      for (const field of Object.values(type.getFields())) {
        if (getNamedType(field.type).name === typeName) references.push(field.deprecationReason != null);
      }
    } else if (isUnionType(type) && type.getTypes().some((t) => t.name === typeName)) {
      references.push(false);
    }
  }
  return references.length > 0 && references.every(Boolean);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { printSortedSchema } = await import('../src/graphql/print-schema.ts');
  const verdicts = await breakingChanges(readFileSync(RELEASED_FILE, 'utf8'), printSortedSchema(), readFileSync(CHANGELOG_FILE, 'utf8'));
  for (const { change, refused } of verdicts) console.log(`${refused ? 'REFUSED' : 'allowed'}  ${change.message}${refused ? `: ${refused}` : ''}`);
  const refusedCount = verdicts.filter((v) => v.refused).length;
  console.log(`${verdicts.length} breaking change(s) against schema/released.graphql, ${refusedCount} refused`);
  process.exitCode = refusedCount ? 1 : 0;
}
