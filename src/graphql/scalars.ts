import { GraphQLDateTime, GraphQLJSON, GraphQLSafeInt } from 'graphql-scalars';
import { builder } from './builder.ts';

builder.addScalarType('DateTime', GraphQLDateTime, {
  description: 'A point in time: an RFC 3339 date-time with its offset (2026-01-31T12:00:00.000Z or 2026-01-31T13:00:00+01:00); results are in UTC.',
  specifiedByURL: 'https://datatracker.ietf.org/doc/html/rfc3339#section-5.6',
});

builder.addScalarType('SafeInt', GraphQLSafeInt, {
  description: 'An integer within ±(2^53 - 1), as a JSON number: sizes in bytes, seeds and other values beyond Int’s 32 bits.',
  // Prisma reads BIGINT columns (seeds, sizes) as bigint, which graphql-scalars' SafeInt refuses.
  serialize: (value) => GraphQLSafeInt.serialize(typeof value === 'bigint' ? Number(value) : value),
});

builder.addScalarType('JSON', GraphQLJSON, {
  description: 'Any JSON value (object, array, string, number, boolean or null), sent as it is rather than as a string.',
  specifiedByURL: 'https://www.rfc-editor.org/rfc/rfc8259',
});
