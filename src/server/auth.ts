// Tokens on the wire. HTTP (and SSE) requests carry `Authorization: Bearer sdql_…`, checked before the
// document is parsed, so that nothing of the schema answers without one; graphql-ws carries it as
// connectionParams.authorization (or the upgrade request's Authorization header), checked when the
// connection opens and again for each operation, so that a revoked token stops at once. GraphiQL's
// page itself loads without a token; its requests need one.
import { GraphQLError } from 'graphql';
import { CloseCode } from 'graphql-ws';
import type { Plugin } from 'graphql-yoga';
import type { Auth, Viewer } from '../auth/index.ts';

/** What a refused request is told: how to send a token, or that the one sent is not (or no longer) valid. */
function refusal(sent: boolean): string {
  return sent
    ? 'the token is not valid: it is unknown or was revoked'
    : 'this server needs a token: send `Authorization: Bearer sdql_…` (or `authorization` in graphql-ws connectionParams); see the README, "Security"';
}

export function unauthenticated(sent: boolean): GraphQLError {
  return new GraphQLError(refusal(sent), {
    extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'www-authenticate': 'Bearer realm="sdql"' } } },
  });
}

/** The viewer of each HTTP request, put on the server context before parsing; UNAUTHENTICATED (401) without a valid token. */
export function useTokens(auth: Auth): Plugin<object, { viewer?: Viewer }> {
  return {
    async onParams({ request, context }) {
      const authorization = request.headers.get('authorization') ?? undefined;
      const viewer = await auth.authenticate(authorization);
      if (!viewer) throw unauthenticated(authorization !== undefined);
      context.viewer = viewer;
    },
  };
}

/**
 * The credentials of a graphql-ws connection: `authorization` in its connectionParams, in any case
 * (GraphiQL and other clients pass their header editor's `Authorization`), also under `headers`.
 */
export function connectionAuthorization(params: Readonly<Record<string, unknown>> | undefined): unknown {
  const find = (object: unknown) =>
    object && typeof object === 'object' ? Object.entries(object).find(([key]) => key.toLowerCase() === 'authorization')?.[1] : undefined;
  return find(params) ?? find(params?.headers);
}

/** graphql-ws's onConnect: the connection's viewer, or the socket closed with 4401 and the reason (at most 123 bytes, as WebSocket allows). */
export async function connectionViewer(
  auth: Auth,
  authorization: unknown,
  close: (code: number, reason: string) => void,
): Promise<Viewer | undefined> {
  const viewer = await auth.authenticate(authorization);
  if (!viewer) close(CloseCode.Unauthorized, authorization === undefined ? 'Unauthorized: send a token as connectionParams.authorization' : 'Unauthorized: the token is unknown or revoked');
  return viewer;
}
