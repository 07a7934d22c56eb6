// What one request may ask of the server, so that no document can exhaust its memory or stall the
// clients around it: graphql-armor's checks, run while parsing and validating (before anything
// executes), and the size of a request body or a WebSocket message.
import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import type { GraphQLError, ValidationContext } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/** Largest request body: room for an init image as a base64 data URL or a multipart upload (LIMITS.maxImageBytes). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** A graphql-ws message carries what an HTTP body does. */
export const MAX_MESSAGE_BYTES = MAX_REQUEST_BYTES;

/** Limits of one document. GraphiQL's introspection and every query of the README and clients/ fit. */
export const QUERY_LIMITS = {
  /** Lexical tokens: bounds parsing and validation time. */
  tokens: 2000,
  /** Nesting of fields (introspection aside): Generation.images ↔ Image.generation cannot fan out. */
  depth: 8,
  aliases: 15,
  directives: 50,
  /** graphql-armor's cost: 2 an object, 1 a scalar, × 1.5 per level (a full page of the history with its images costs 7,500). */
  cost: 15000,
} as const;

/** A refusal says which limit and carries a code clients can act on. */
const withCode = (_context: unknown, error: GraphQLError) => {
  (error.extensions as Record<string, unknown>).code = 'QUERY_TOO_COMPLEX';
};
/** Parsing throws its refusal (both transports answer a syntax error). */
const whileParsing = { onReject: [withCode], propagateOnRejection: true, exposeLimits: true };
/** Validation reports its refusals like any other validation error, rather than throwing out of validate(). */
const whileValidating = {
  onReject: [withCode, (context: ValidationContext | null, error: GraphQLError) => context?.reportError(error)],
  propagateOnRejection: false,
  exposeLimits: true,
};

export function queryLimitPlugins(): Plugin[] {
  return [
    maxTokensPlugin({ n: QUERY_LIMITS.tokens, ...whileParsing }),
    maxDepthPlugin({ n: QUERY_LIMITS.depth, ignoreIntrospection: true, flattenFragments: true, ...whileValidating }),
    maxAliasesPlugin({ n: QUERY_LIMITS.aliases, ...whileValidating }),
    maxDirectivesPlugin({ n: QUERY_LIMITS.directives, ...whileValidating }),
    costLimitPlugin({ maxCost: QUERY_LIMITS.cost, ignoreIntrospection: true, flattenFragments: true, ...whileValidating }),
  ] as Plugin[];
}
