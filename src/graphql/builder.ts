// The one Pothos schema builder. Types live in one file per domain (models.ts, loras.ts, system.ts,
// …), each adding its objects, queries, mutations and subscriptions with builder.queryFields,
// builder.mutationFields and builder.subscriptionFields; index.ts imports them all.
import SchemaBuilder from '@pothos/core';
import DataloaderPlugin from '@pothos/plugin-dataloader';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import { mayAccess } from '../auth/index.ts';
import type PrismaTypes from '../db/generated/pothos-types.ts';
import { getDatamodel } from '../db/generated/pothos-types.ts';
import type { Context } from './context.ts';
import { forbidden } from './errors.ts';
import { checkNodeType, decodeNodeId, isNodeType, notFoundNode } from './ids.ts';

export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  // Fields are non-null unless they say `nullable: true`.
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    SafeInt: { Input: number; Output: number | bigint };
    JSON: { Input: unknown; Output: unknown };
    /** An upload of a GraphQL multipart request (defined with the image inputs). */
    File: { Input: File; Output: never };
  };
  /** What a field may require of the viewer (`authScopes`): a GENERATE (or ADMIN) token, an ADMIN token, or owning a generation. */
  AuthScopes: { generate: boolean; admin: boolean; owner: string };
}>({
  // Scope checks run before any other plugin's resolver wrapper. Dataloader batches per-row lookups
  // of one operation into one query (e.g. queue positions).
  plugins: [ScopeAuthPlugin, PrismaPlugin, RelayPlugin, DataloaderPlugin],
  defaultFieldNullability: false,
  scopeAuth: {
    authorizeOnSubscribe: true,
    authScopes: ({ viewer }) => ({ generate: viewer.canGenerate, admin: viewer.admin, owner: (owner) => mayAccess(viewer, owner) }),
    unauthorizedError: (_parent, ctx, info, { failure }) => forbidden(ctx.viewer, `${info.parentType.name}.${info.fieldName}`, failure),
  },
  prisma: {
    client: (ctx) => ctx.db.prisma,
    dmmf: getDatamodel(),
    filterConnectionTotalCount: true,
  },
  relay: {
    // node(id:) and nodes(ids:) take global ids only; each type's own query takes its plain id too (ids.ts).
    decodeGlobalID: decodeNodeId,
    nodeTypeOptions: { description: 'An object with an identity: its global `id` refetches it with `node(id:)`.' },
    idFieldOptions: { description: 'Global id: opaque, says its type, stable across restarts. `node(id:)` refetches the object with it.' },
    nodeQueryOptions: {
      description: 'The object of a global id. BAD_USER_INPUT when the id is not the `id` of a Node; NOT_FOUND when no object has it (any more).',
      args: { id: { description: 'The `id` of a Node.' } },
      resolve: async (_root, { id }, _ctx, info, resolveNode) => {
        checkNodeType(id.typename, info);
        return (await resolveNode(id)) ?? notFoundNode(id);
      },
    },
    nodesQueryOptions: {
      description:
        'The objects of several global ids, in their order. An item is null, with its error at its index, where `node(id:)` would fail; ' +
        'a string that is no global id at all fails the whole list (BAD_USER_INPUT).',
      args: { ids: { description: 'The `id`s of Nodes, of any types.' } },
      resolve: (_root, { ids }, _ctx, info, resolveNodes) => {
        const known = ids.filter((id) => isNodeType(id.typename, info));
        const loaded = resolveNodes(known);
        return ids.map(async (id) => {
          checkNodeType(id.typename, info);
          return (await loaded)[known.indexOf(id)] ?? notFoundNode(id);
        });
      },
    },
    pageInfoTypeOptions: { description: 'Where a page of a connection lies in the whole list (Relay cursor connections).' },
    hasNextPageFieldOptions: { description: 'Whether items follow this page (when paging forward with `first`).' },
    hasPreviousPageFieldOptions: { description: 'Whether items precede this page (when paging backward with `last`).' },
    startCursorFieldOptions: { description: "The first edge's cursor; null for an empty page." },
    endCursorFieldOptions: { description: "The last edge's cursor, for `after` to fetch the next page; null for an empty page." },
    defaultConnectionTypeOptions: { description: 'A page of a list (Relay cursor connection).' },
    defaultEdgeTypeOptions: { description: 'An item of a page, with its cursor.' },
    edgesFieldOptions: { description: 'The items of this page, in order.' },
    pageInfoFieldOptions: { description: 'Cursors and whether more items lie either side.' },
    cursorFieldOptions: { description: 'Opaque: pass it as `after` or `before` to page from this item.' },
    nodeFieldOptions: { description: 'The item.' },
    firstArgOptions: { description: 'Page forward: at most this many items (≥ 0) after `after`, or from the start.' },
    afterArgOptions: { description: 'A cursor: the page starts after this item.' },
    lastArgOptions: { description: 'Page backward: at most this many items (≥ 0) before `before`, or up to the end.' },
    beforeArgOptions: { description: 'A cursor: the page ends before this item.' },
  },
});
