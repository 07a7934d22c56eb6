// Expected errors carry `extensions.code` so clients can act on them; anything else is a bug, which
// clients see only as "Unexpected error." while the log keeps the details.
import { AuthScopeFailureType, type AuthFailure } from '@pothos/plugin-scope-auth';
import { GraphQLError } from 'graphql';
import { AuthError, type Viewer } from '../auth/index.ts';
import { DiffusionError } from '../diffusion/index.ts';
import { QuotaExceededError } from '../jobs/request.ts';
import { log } from '../log.ts';

export type ErrorCode =
  /** An argument is invalid or does not fit the rest of the request. */
  | 'BAD_USER_INPUT'
  /** No object has the given id. */
  | 'NOT_FOUND'
  /** The request is valid but the object's state does not allow it now. */
  | 'CONFLICT'
  /** The model folder cannot be used (see the model's `error`). */
  | 'MODEL_INVALID'
  /** No valid token came with the request (SDQL_AUTH=tokens). */
  | 'UNAUTHENTICATED'
  /** The token lacks the scope the field needs. */
  | 'FORBIDDEN'
  /** The owner has SDQL_MAX_QUEUED generations and upscales queued already. */
  | 'QUOTA_EXCEEDED'
  | 'INTERNAL_SERVER_ERROR';

/** An error the client caused or can act on. */
export function userError(code: ErrorCode, message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { ...extensions, code } });
}

export const notFound = (kind: string, id: string) => userError('NOT_FOUND', `no ${kind} has the id "${id}"`, { id });

/** The scopes a failed check asked for, as the Scope enum names them. */
function missingScopes(failure: AuthFailure): string[] {
  if (failure.kind === AuthScopeFailureType.AuthScope) return failure.scope === 'owner' ? [] : [failure.scope.toUpperCase()];
  return 'failures' in failure ? failure.failures.flatMap(missingScopes) : [];
}

/** scope-auth's refusal: FORBIDDEN, naming the scope the field needs. */
export function forbidden(viewer: Viewer, field: string, failure: AuthFailure): GraphQLError {
  const scopes = [...new Set(missingScopes(failure))];
  const needs = scopes.length ? `needs a token with the ${scopes.join(' or ')} scope` : 'is not allowed to this token';
  return userError('FORBIDDEN', `${field} ${needs} (this is token "${viewer.name}")`, scopes.length ? { scopes } : {});
}

/** graphql-yoga's maskError: keeps expected errors, maps engine errors to their code, masks and logs the rest. */
export function maskError(error: unknown, message: string): Error {
  const original = error instanceof GraphQLError ? error.originalError : error;
  if (error instanceof GraphQLError && (!original || original instanceof GraphQLError)) return error;
  const where = error instanceof GraphQLError ? { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path } : {};
  if ((original instanceof DiffusionError && original.code !== 'ABORTED') || original instanceof AuthError || original instanceof QuotaExceededError) {
    return new GraphQLError(original.message, { ...where, extensions: { code: original.code } });
  }
  log.error('unexpected error in a GraphQL operation', { err: original, path: error instanceof GraphQLError ? error.path?.join('.') : undefined });
  return new GraphQLError(message, { ...where, extensions: { code: 'INTERNAL_SERVER_ERROR' } });
}

/** graphql-js reports variables it cannot coerce (a wrong type, an unknown enum value) without a code. */
export function withInputErrorCode(error: GraphQLError): GraphQLError {
  const fromCoercion = !error.originalError || error.originalError instanceof GraphQLError;
  if (error.extensions.code !== undefined || !fromCoercion || !error.message.startsWith('Variable "')) return error;
  return new GraphQLError(error.message, { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path, extensions: { ...error.extensions, code: 'BAD_USER_INPUT' } });
}
