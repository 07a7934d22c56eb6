// Every element of the schema a client can see is described, so that GraphiQL's explorer and
// schema/schema.graphql document the whole API: each undocumented one is named.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSchema, isEnumType, isInputObjectType, isInterfaceType, isObjectType, isSpecifiedScalarType, type GraphQLSchema } from 'graphql';
import { schema } from '../../src/graphql/index.ts';

/** Coordinates (Type, Type.field, Type.field(arg:), Enum.VALUE) of the elements without a description. */
function undescribed(schema: GraphQLSchema): string[] {
  const missing: string[] = [];
  const check = (coordinate: string, description: string | null | undefined) => {
    if (!description?.trim()) missing.push(coordinate);
  };
  for (const type of Object.values(schema.getTypeMap())) {
    if (type.name.startsWith('__') || isSpecifiedScalarType(type)) continue;
    check(type.name, type.description);
    if (isObjectType(type) || isInterfaceType(type)) {
      for (const field of Object.values(type.getFields())) {
        check(`${type.name}.${field.name}`, field.description);
        for (const arg of field.args) check(`${type.name}.${field.name}(${arg.name}:)`, arg.description);
      }
    } else if (isInputObjectType(type)) {
      for (const field of Object.values(type.getFields())) check(`${type.name}.${field.name}`, field.description);
    } else if (isEnumType(type)) {
      for (const value of type.getValues()) check(`${type.name}.${value.name}`, value.description);
    }
  }
  return missing;
}

test('every type, field, argument, input field and enum value of the schema has a description', () => {
  assert.deepEqual(undescribed(schema), []);
});

test('the check names what is undescribed', () => {
  const sdl = buildSchema(`
    """Root."""
    type Query {
      """Described."""
      a(x: Int, """Described.""" y: Int): Thing
      b: Color
    }
    type Thing { """Described.""" c: String }
    """Colors."""
    enum Color { """Described.""" RED GREEN }
    """Input."""
    input Filter { d: String }
    """Scalar."""
    scalar Unused
  `);
  // An input type not reached from Query is still in the type map when declared.
  assert.deepEqual(undescribed(sdl).sort(), ['Color.GREEN', 'Filter.d', 'Query.a(x:)', 'Query.b', 'Thing'].sort());
});
