import { GraphQLError, Kind } from 'graphql';
import { builder } from './builder.ts';

builder.scalarType('DateTime', {
  description: 'A point in time, as an ISO 8601 string in UTC (2026-01-31T12:00:00.000Z).',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => {
    const date = typeof value === 'string' ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) throw new GraphQLError(`DateTime must be an ISO 8601 string, got ${JSON.stringify(value)}`);
    return date;
  },
});

const checkSafe = (value: unknown): number => {
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new GraphQLError(`SafeInt must be an integer within ±(2^53 - 1), got ${String(value)}`);
  return n;
};

builder.scalarType('SafeInt', {
  description: 'An integer within ±(2^53 - 1), as a JSON number: sizes in bytes, seeds and other values beyond Int’s 32 bits.',
  serialize: checkSafe,
  parseValue: checkSafe,
  parseLiteral: (ast) => {
    if (ast.kind !== Kind.INT) throw new GraphQLError('SafeInt must be an integer literal');
    return checkSafe(Number(ast.value));
  },
});
