// Global object identification (the Relay convention): every object with an identity implements
// `Node`, and its `id` is Pothos' global id, base64 of `Typename:localId`, so that an id says the
// type it belongs to. The queries and inputs that take the id of one type accept the global id or,
// during 0.x, the plain local id (a model's folder name, a LoRA's file name, a database uuid).
import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';
import { isObjectType, type GraphQLResolveInfo } from 'graphql';
import { notFound, userError } from './errors.ts';

/** The object types that implement Node (what the arguments below may name). */
export type NodeType = 'Generation' | 'Image' | 'Model' | 'Lora' | 'Embedding' | 'Upscale' | 'UpscaleImage';

/** `Typename:localId` of a string that is exactly a global id (canonical base64), else undefined. */
function readGlobalId(id: string): { typename: string; id: string } | undefined {
  try {
    const decoded = decodeGlobalID(id);
    return encodeGlobalID(decoded.typename, decoded.id) === id ? decoded : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The local id an argument names: a global id of `type` (or of one of them), or a plain local id. A
 * global id of another type is BAD_USER_INPUT, so that a client that mixes ids up hears why.
 */
export function localId(type: NodeType | readonly NodeType[], id: string | number): string {
  const raw = String(id);
  const global = readGlobalId(raw);
  if (!global) return raw;
  const types: readonly string[] = typeof type === 'string' ? [type] : type;
  if (!types.includes(global.typename)) throw userError('BAD_USER_INPUT', `"${raw}" is a global id of type ${global.typename}, not ${types.join(' or ')}`, { id: raw });
  return global.id;
}

/** For the builder's `decodeGlobalID`: `node(id:)` and `nodes(ids:)` take global ids only. */
export function decodeNodeId(id: string): { typename: string; id: string } {
  const global = readGlobalId(id);
  if (!global) throw userError('BAD_USER_INPUT', `"${id}" is not a global id (the \`id\` of a Node)`, { id });
  return global;
}

/** Whether a global id's type is one `node(id:)` can load. */
export function isNodeType(typename: string, info: GraphQLResolveInfo): boolean {
  const type = info.schema.getType(typename);
  return isObjectType(type) && type.getInterfaces().some((i) => i.name === 'Node');
}

export function checkNodeType(typename: string, info: GraphQLResolveInfo): void {
  if (!isNodeType(typename, info)) throw userError('BAD_USER_INPUT', `${typename} is not a type of Node, so no global id names it`);
}

export const notFoundNode = (id: { typename: string; id: string }) => {
  throw notFound(id.typename, encodeGlobalID(id.typename, id.id));
};
