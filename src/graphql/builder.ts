// The one Pothos schema builder. Types live in one file per domain (models.ts, loras.ts, system.ts,
// …), each adding its objects, queries, mutations and subscriptions with builder.queryFields,
// builder.mutationFields and builder.subscriptionFields; index.ts imports them all.
import SchemaBuilder from '@pothos/core';
import DataloaderPlugin from '@pothos/plugin-dataloader';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import type PrismaTypes from '../db/generated/pothos-types.ts';
import { getDatamodel } from '../db/generated/pothos-types.ts';
import type { Context } from './context.ts';

export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  // Fields are non-null unless they say `nullable: true`.
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    SafeInt: { Input: number; Output: number | bigint };
    /** An upload of a GraphQL multipart request (defined with the image inputs). */
    File: { Input: File; Output: never };
  };
}>({
  // Dataloader batches per-row lookups of one operation into one query (e.g. queue positions).
  plugins: [PrismaPlugin, RelayPlugin, DataloaderPlugin],
  defaultFieldNullability: false,
  prisma: {
    client: (ctx) => ctx.db.prisma,
    dmmf: getDatamodel(),
    filterConnectionTotalCount: true,
  },
  relay: {
    // Ids are plain database ids, fetched by each type's own query (model(id), generation(id), …).
    nodeQueryOptions: false,
    nodesQueryOptions: false,
  },
});
