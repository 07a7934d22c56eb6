// GraphQL over HTTP (queries, mutations, SSE subscriptions, GraphiQL) through graphql-yoga, and over
// WebSocket (the graphql-ws protocol) on the same path, both through yoga's envelop so that they share
// the context, error masking and logging.
import { randomUUID } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import { getOperationAST, GraphQLError, type DocumentNode, type ExecutionArgs } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import type { Viewer } from '../auth/index.ts';
import type { Context, Services } from '../graphql/context.ts';
import { maskError, withInputErrorCode } from '../graphql/errors.ts';
import { schema } from '../graphql/index.ts';
import { log, withLogFields } from '../log.ts';
import { connectionAuthorization, connectionViewer, unauthenticated, useTokens } from './auth.ts';
import { GRAPHIQL_OPTIONS, graphiqlPage } from './graphiql.ts';
import { imagePath } from './images.ts';
import { MAX_MESSAGE_BYTES, queryLimitPlugins } from './limits.ts';
import type { OriginPolicy } from './origins.ts';

export const GRAPHQL_PATH = '/graphql';

/** Set per HTTP request by the server (absent through yoga.fetch in tests). */
export interface ServerContext {
  requestId?: string;
  /** Who asks: set from the request's token (HTTP) or the connection's (graphql-ws). */
  viewer?: Viewer;
}

export type Yoga = YogaServerInstance<ServerContext, Context>;

/** One line per operation: its name, kind, duration and error codes. */
const operationLog: Plugin<Context> = {
  onExecute({ args }) {
    const started = performance.now();
    const operation = getOperationAST(args.document, args.operationName);
    return {
      onExecuteDone({ result, setResult }) {
        if ('errors' in result && result.errors?.length) setResult({ ...result, errors: result.errors.map(withInputErrorCode) });
        const errors = 'errors' in result ? (result.errors ?? []) : [];
        log.info('graphql operation', {
          operation: operation?.name?.value ?? null,
          kind: operation?.operation,
          owner: (args.contextValue as Context).viewer?.name,
          ms: Math.round(performance.now() - started),
          ...(errors.length ? { errors: errors.map((e) => e.extensions?.code ?? 'UNKNOWN') } : {}),
        });
      },
    };
  },
  onSubscribe({ args }) {
    const operation = getOperationAST(args.document, args.operationName);
    log.info('graphql subscription', { operation: operation?.name?.value ?? null });
  },
};

export interface GraphQLHandlerOptions {
  /** Origins whose pages may call the API (CORS); empty: no CORS headers at all. */
  corsOrigins?: string[];
  /** What absolute URLs start with; null: URLs are paths on this server. */
  baseUrl?: string | null;
}

/** Headers that make a request non-simple, so that browsers preflight it (CSRF prevention). */
const PREFLIGHT_HEADERS = ['graphql-require-preflight', 'apollo-require-preflight', 'x-graphql-yoga-csrf'];

export function createGraphQLHandler(services: Services, { corsOrigins = [], baseUrl = null }: GraphQLHandlerOptions = {}): Yoga {
  const imageUrl = (image: { id: string; format: string }) => `${baseUrl ?? ''}${services.auth.signImagePath(imagePath(image))}`;
  return createYoga<ServerContext, Context>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    graphiql: GRAPHIQL_OPTIONS,
    renderGraphiQL: graphiqlPage,
    landingPage: false,
    maskedErrors: { maskError },
    cors: corsOrigins.length ? { origin: corsOrigins, credentials: true } : false,
    context: ({ requestId, viewer }) => {
      // Every transport sets the viewer before executing anything; this only guards against one that would not.
      if (!viewer) throw unauthenticated(false);
      return { ...services, requestId: requestId ?? randomUUID(), viewer, imageUrl };
    },
    // A form or a multipart upload from another site is a "simple" request that browsers send
    // without asking: such content types must come with a header no form can set.
    plugins: [useCSRFPrevention({ requestHeaders: PREFLIGHT_HEADERS }), useTokens(services.auth), ...queryLimitPlugins(), operationLog],
    logging: {
      debug: (...args) => log.debug(args.map(String).join(' ')),
      info: (...args) => log.info(args.map(String).join(' ')),
      warn: (...args) => log.warn(args.map(String).join(' ')),
      error: (...args) => log.error(args.map(String).join(' ')),
    },
  });
}

interface WsRoot {
  execute: (args: ExecutionArgs) => unknown;
  subscribe: (args: ExecutionArgs) => unknown;
}

/** Serves graphql-ws on the HTTP server's GraphQL path; returns what closes every socket. */
export function attachWebSockets(http: HttpServer, yoga: Yoga, policy: OriginPolicy, services: Pick<Services, 'auth'>): () => Promise<void> {
  const wss = new WebSocketServer({
    server: http,
    path: GRAPHQL_PATH,
    // Browsers let any page open a WebSocket anywhere: the Origin and Host headers are the guard.
    verifyClient: ({ req }, done) => {
      const refusal = policy.refusal(req.headers);
      if (refusal) log.warn('WebSocket refused', { reason: refusal });
      done(!refusal, 403, refusal ?? undefined);
    },
    maxPayload: MAX_MESSAGE_BYTES,
  });
  // Each connection's credentials, checked again for every operation so that a revoked token stops at once.
  const credentials = new WeakMap<object, unknown>();
  const server = useServer(
    {
      onConnect: async (ctx) => {
        const authorization = connectionAuthorization(ctx.connectionParams) ?? ctx.extra.request.headers.authorization;
        const viewer = await connectionViewer(services.auth, authorization, (code, reason) => ctx.extra.socket.close(code, reason));
        credentials.set(ctx.extra.socket, authorization);
        return viewer !== undefined;
      },
      execute: (args) => withLogFields({ requestId: (args.contextValue as Context).requestId }, () => (args.rootValue as WsRoot).execute(args)) as never,
      subscribe: (args) => withLogFields({ requestId: (args.contextValue as Context).requestId }, () => (args.rootValue as WsRoot).subscribe(args)) as never,
      onSubscribe: async (ctx, _id, payload) => {
        const viewer = await services.auth.authenticate(credentials.get(ctx.extra.socket));
        if (!viewer) return [unauthenticated(true)];
        const requestId = randomUUID();
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
          requestId,
          viewer,
        });
        let document: DocumentNode;
        try {
          document = parse(payload.query);
        } catch (error) {
          if (error instanceof GraphQLError) return [error];
          throw error;
        }
        const args: ExecutionArgs = {
          schema,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe } satisfies WsRoot,
        };
        const errors = validate(args.schema, args.document);
        return errors.length ? errors : args;
      },
    },
    wss,
  );
  return async () => {
    await server.dispose();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  };
}
