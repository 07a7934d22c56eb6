// The panel's GraphQL client: queries and mutations over fetch (multipart when images go up),
// subscriptions over graphql-ws on the wrapped WebSocket, with reconnect and keep-alive.
import { createClient, type Client } from 'graphql-ws';
import type { TypedDocumentString } from './generated/graphql.ts';
import { withReadyStates } from './websocket.ts';

export interface Connection {
  /** The server's origin, e.g. http://127.0.0.1:4000. */
  url: string;
  /** Sent as `Authorization: Bearer …` and as graphql-ws `connectionParams.authorization` when set. */
  token?: string;
}

/** Why a request failed, in words a user can act on, and of which kind (the panel shows each its own way). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly kind: 'unreachable' | 'unauthorized' | 'graphql' | 'http',
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface SubscriptionSink<T> {
  next(value: T): void;
  error(error: ApiError): void;
  complete(): void;
}

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

type WebSocketConstructor = abstract new (url: string, protocols?: string | string[]) => unknown;

export interface ApiOptions {
  fetch?: typeof fetch;
  WebSocket?: WebSocketConstructor;
  /** Called when the subscription socket opens or closes, for the status line. */
  onSocket?: (state: 'connected' | 'closed', reason?: string) => void;
}

/** Keep-alive pings every 10 s find a dead connection on networks that drop idle sockets silently. */
const KEEP_ALIVE_MS = 10_000;

export class SdqlApi {
  private readonly fetch: typeof fetch;
  private readonly ws: Client;

  constructor(
    readonly connection: Connection,
    options: ApiOptions = {},
  ) {
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    const origin = connection.url.replace(/\/+$/, '');
    this.ws = createClient({
      url: `${origin.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: withReadyStates(options.WebSocket ?? globalThis.WebSocket),
      connectionParams: () => (connection.token ? { authorization: `Bearer ${connection.token}` } : {}),
      // Connected while the panel is open, so that the status line knows when the server goes away.
      lazy: false,
      onNonLazyError: () => {},
      keepAlive: KEEP_ALIVE_MS,
      // Reconnects for as long as the panel is open, backing off to 10 s between tries.
      retryAttempts: Number.MAX_SAFE_INTEGER,
      retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** retries))),
      shouldRetry: (event) => !isUnauthorized(event),
      on: {
        connected: () => options.onSocket?.('connected'),
        closed: (event) => options.onSocket?.('closed', closeReason(event)),
      },
    });
  }

  get origin(): string {
    return this.connection.url.replace(/\/+$/, '');
  }

  /** The headers of every HTTP request (the token, when set). */
  headers(): Record<string, string> {
    return this.connection.token ? { authorization: `Bearer ${this.connection.token}` } : {};
  }

  /**
   * Runs a query or mutation. `files` maps variable paths (`input.initImage.file`) to Blobs sent as a
   * GraphQL multipart request (graphql-multipart-request-spec), the variable itself null.
   */
  async request<R, V>(document: TypedDocumentString<R, V>, variables: V, files: Record<string, Blob> = {}): Promise<R> {
    const query = document.toString();
    const paths = Object.keys(files);
    let init: RequestInit;
    if (paths.length) {
      const form = new FormData();
      form.append('operations', JSON.stringify({ query, variables }));
      form.append('map', JSON.stringify(Object.fromEntries(paths.map((path, i) => [String(i), [`variables.${path}`]]))));
      paths.forEach((path, i) => form.append(String(i), files[path], `${path.replace(/\W+/g, '-')}.png`));
      // graphql-yoga's CSRF prevention lets a multipart request through only with this header.
      init = { method: 'POST', headers: { ...this.headers(), 'graphql-require-preflight': '1' }, body: form };
    } else {
      init = {
        method: 'POST',
        headers: { ...this.headers(), 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
        body: JSON.stringify({ query, variables }),
      };
    }
    let response: Response;
    try {
      response = await this.fetch(`${this.origin}/graphql`, init);
    } catch (error) {
      throw unreachable(this.origin, error);
    }
    let body: GraphQLResponse<R>;
    try {
      body = (await response.json()) as GraphQLResponse<R>;
    } catch {
      throw new ApiError(`${this.origin} answered HTTP ${response.status} without GraphQL: is it an sdql server?`, 'http');
    }
    const first = body.errors?.[0];
    if (first) {
      const code = first.extensions?.code;
      if (response.status === 401 || code === 'UNAUTHENTICATED') throw this.refused(first.message);
      throw new ApiError(first.message, 'graphql', code);
    }
    if (!response.ok || !body.data) throw new ApiError(`${this.origin} answered HTTP ${response.status}`, 'http');
    return body.data;
  }

  /** A refused token (or none where one is needed), with what to do about it. */
  refused(reason: string): ApiError {
    const what = this.connection.token ? 'the server refused the token' : 'the server needs a token';
    return new ApiError(
      `${what} (${reason}): paste a valid one in the token field; whoever runs the server makes one with \`sdql tokens create <name> --scopes GENERATE\``,
      'unauthorized',
      'UNAUTHENTICATED',
    );
  }

  /** Follows a subscription; returns a function that stops it. */
  subscribe<R, V extends Record<string, unknown>>(document: TypedDocumentString<R, V>, variables: V, sink: SubscriptionSink<R>): () => void {
    return this.ws.subscribe<R>(
      { query: document.toString(), variables },
      {
        next: (result) => {
          const first = result.errors?.[0];
          if (first) sink.error(new ApiError(first.message, 'graphql', first.extensions?.code as string | undefined));
          else if (result.data) sink.next(result.data);
        },
        error: (error) => sink.error(isUnauthorized(error) ? this.refused(closeReason(error) ?? 'closed the connection') : unreachable(this.origin, error)),
        complete: () => sink.complete(),
      },
    );
  }

  /**
   * Bytes of an image of the server (its `url`, relative or absolute). Without the token: with tokens
   * on, the server signs image URLs (`?exp=…&sig=…`) so that they work where no header can be sent,
   * and a header would make a browser's request need a CORS preflight that image paths do not answer.
   */
  async image(url: string): Promise<Uint8Array> {
    let response: Response;
    try {
      response = await this.fetch(new URL(url, `${this.origin}/`).toString());
    } catch (error) {
      throw unreachable(this.origin, error);
    }
    if (!response.ok) throw new ApiError(`the image ${url} could not be read: HTTP ${response.status}${response.status === 403 ? ' (its signature expired: refresh the history)' : ''}`, 'http');
    return new Uint8Array(await response.arrayBuffer());
  }

  dispose(): Promise<void> {
    return Promise.resolve(this.ws.dispose());
  }
}

function isUnauthorized(event: unknown): boolean {
  // 4401/4403: graphql-ws's Unauthorized and Forbidden close codes.
  const code = (event as { code?: number } | undefined)?.code;
  return code === 4401 || code === 4403;
}

function closeReason(event: unknown): string | undefined {
  const reason = (event as { reason?: string } | undefined)?.reason;
  return reason || undefined;
}

function unreachable(origin: string, error: unknown): ApiError {
  const detail = error instanceof Error ? error.message : closeReason(error);
  return new ApiError(
    `cannot reach ${origin}${detail ? ` (${detail})` : ''}: is \`sdql serve\` running there, and is the address in the plugin's network permissions (see the panel's README)?`,
    'unreachable',
  );
}
