/**
 * A small typed client for sdql, for scripts: submit a generation, follow it step by step over
 * graphql-ws, fetch its images. Needs only `graphql-ws`, `ws` and the global fetch (Node 20+).
 *
 * Its types and documents are generated (`npm run codegen`) from schema/schema.graphql and the
 * operations in ./operations into ./generated/graphql.ts, so they follow the schema field for field.
 *
 * Ids are the schema's global ids (`Generation.id`, `Image.id`, `generationId`, `modelId`, …):
 * opaque strings that say their type, to pass back as they come (`node(id:)` refetches any of them).
 * Where a script names a model or a LoRA, `modelId` and `LoraInput.id` also take the plain name
 * (`modelId: 'sd15'`, the folder name; a LoRA's `tagName`).
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import {
  CancelGenerationDocument,
  CancelUpscaleDocument,
  GenerateDocument,
  GenerationDocument,
  GenerationProgressDocument,
  UpscaleByIdDocument,
  UpscaleDocument,
  UpscaleProgressDocument,
  type GenerateInput,
  type GenerationFieldsFragment,
  type GenerationProgressSubscription,
  type GenerationStatus,
  type ImageFieldsFragment,
  type TypedDocumentString,
  type UpscaleFieldsFragment,
  type UpscaleInput,
  type UpscaleProgressSubscription,
} from './generated/graphql.ts';

export type { GenerateInput, GenerationStatus, ImageInput, LoraInput, PromptSyntax, ScheduleType, Scheduler, UpscaleInput } from './generated/graphql.ts';
/** Every field of the schema's Generation but `model` (see `modelId`). */
export type Generation = GenerationFieldsFragment;
/** Every field of the schema's Image but `generation` (the image comes with it). */
export type Image = ImageFieldsFragment;
export type GenerationProgress = GenerationProgressSubscription['generationProgress'];
/** Every field of the schema's Upscale, with its result image. */
export type Upscale = UpscaleFieldsFragment;
export type UpscaleProgress = UpscaleProgressSubscription['upscaleProgress'];

/** Statuses after which a generation never changes again. */
export const TERMINAL_STATUSES: readonly GenerationStatus[] = ['SUCCEEDED', 'FAILED', 'CANCELED'];

/** The typed documents this client sends, for callers with a transport of their own (`String(document)` is its text). */
export const operations = {
  generate: GenerateDocument,
  generation: GenerationDocument,
  cancel: CancelGenerationDocument,
  progress: GenerationProgressDocument,
  upscale: UpscaleDocument,
  getUpscale: UpscaleByIdDocument,
  cancelUpscale: CancelUpscaleDocument,
  upscaleProgress: UpscaleProgressDocument,
} as const;

/** An error as GraphQL responses carry it. */
export interface GraphQLErrorBody {
  message: string;
  path?: readonly (string | number)[];
  extensions?: { code?: string; [key: string]: unknown };
}

/** What the server refused or failed to do: the first GraphQL error's `extensions.code` and message, with all of them. */
export class SdqlError extends Error {
  override name = 'SdqlError';
  /** BAD_USER_INPUT, NOT_FOUND, CONFLICT, MODEL_INVALID, UNAUTHENTICATED, FORBIDDEN, QUOTA_EXCEEDED, …; undefined when the server gave none. */
  readonly code: string | undefined;
  readonly errors: readonly GraphQLErrorBody[];

  constructor(errors: readonly GraphQLErrorBody[]) {
    super(errors[0]?.message ?? 'sdql returned an error without a message');
    this.code = errors[0]?.extensions?.code;
    this.errors = errors;
  }
}

export interface SdqlClientOptions {
  /** The server (`http://127.0.0.1:4000`) or its GraphQL endpoint (`…/graphql`). */
  url: string;
  /**
   * An API token (`sdql_…`), for a server with SDQL_AUTH=tokens: sent as `Authorization: Bearer` over
   * HTTP and as `authorization` in the graphql-ws connectionParams. Image URLs need none (they are signed).
   */
  token?: string;
}

export interface SdqlClient {
  /** Queues a generation; it comes back QUEUED. */
  generate(input: GenerateInput): Promise<Generation>;
  /**
   * Follows a generation over graphql-ws: `onEvent` sees its state now, each step, and its final
   * state, which the promise resolves with (SUCCEEDED, FAILED or CANCELED alike).
   */
  progress(id: string, onEvent?: (event: GenerationProgress) => void): Promise<GenerationProgress>;
  /** A generation by id; NOT_FOUND when there is none. */
  generation(id: string): Promise<Generation>;
  /** Cancels a queued generation at once or a running one at its next step; CONFLICT once it has ended. */
  cancel(id: string): Promise<Generation>;
  /** Queues an upscale of an image (`lanczos` or an `upscalers` id); it comes back QUEUED. */
  upscale(input: UpscaleInput): Promise<Upscale>;
  /** Follows an upscale as `progress` follows a generation: its state now, an event per tile, its final state. */
  upscaleProgress(id: string, onEvent?: (event: UpscaleProgress) => void): Promise<UpscaleProgress>;
  /** An upscale by id, with its result image once SUCCEEDED; NOT_FOUND when there is none. */
  getUpscale(id: string): Promise<Upscale>;
  /** Cancels a queued upscale at once or a running one after its tile; CONFLICT once it has ended. */
  cancelUpscale(id: string): Promise<Upscale>;
  /** The image file's bytes (PNG unless the image says otherwise). */
  download(image: Pick<Image, 'url'>): Promise<Uint8Array>;
  /** Closes the WebSocket, if one is open. */
  close(): Promise<void>;
}

export function createSdqlClient({ url, token }: SdqlClientOptions): SdqlClient {
  const endpoint = new URL(url);
  if (!endpoint.pathname.endsWith('/graphql')) endpoint.pathname = `${endpoint.pathname.replace(/\/$/, '')}/graphql`;
  let ws: Client | undefined;
  const authorization = token ? `Bearer ${token}` : undefined;

  async function request<T, V extends Record<string, unknown>>(document: TypedDocumentString<T, V>, variables: V): Promise<T> {
    const body = encodeRequest(String(document), variables);
    const response = await fetch(endpoint, {
      method: 'POST',
      // fetch writes a multipart body's content-type itself, with the boundary; the server runs a
      // multipart request only with a header that no cross-site form can send.
      headers: {
        accept: 'application/graphql-response+json, application/json',
        ...(authorization ? { authorization } : {}),
        ...(typeof body === 'string' ? { 'content-type': 'application/json' } : { 'graphql-require-preflight': '1' }),
      },
      body,
    });
    const text = await response.text();
    let result: { data?: T | null; errors?: GraphQLErrorBody[] };
    try {
      result = JSON.parse(text);
    } catch {
      throw new SdqlError([{ message: `HTTP ${response.status} from ${endpoint.href}: ${text.slice(0, 200)}` }]);
    }
    if (result.errors?.length) throw new SdqlError(result.errors);
    if (!response.ok || result.data == null) throw new SdqlError([{ message: `HTTP ${response.status} from ${endpoint.href} without data` }]);
    return result.data;
  }

  /** Follows a progress subscription until its final status. */
  function follow<S, E extends { status: GenerationStatus }>(
    document: TypedDocumentString<S, { id: string }>,
    event: (data: S) => E,
    what: string,
    id: string,
    onEvent?: (event: E) => void,
  ): Promise<E> {
    ws ??= createClient({
      url: endpoint.href.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      lazy: true,
      // A refused token closes the socket with 4401 (Unauthorized), which graphql-ws never retries.
      connectionParams: authorization ? { authorization } : undefined,
    });
    const client = ws;
    return new Promise((resolve, reject) => {
      let final: E | undefined;
      const unsubscribe = client.subscribe<S>(
        { query: String(document), variables: { id } },
        {
          next: (result) => {
            if (result.errors?.length) return fail(new SdqlError(result.errors));
            const e = event(result.data!);
            onEvent?.(e);
            if (TERMINAL_STATUSES.includes(e.status)) final = e;
          },
          error: (error) => fail(Array.isArray(error) ? new SdqlError(error) : toError(error)),
          complete: () => (final ? resolve(final) : reject(new SdqlError([{ message: `the progress of ${what} ${id} ended before a final status` }]))),
        },
      );
      function fail(error: Error) {
        unsubscribe();
        reject(error);
      }
    });
  }

  return {
    generate: async (input) => (await request(GenerateDocument, { input })).generate,
    generation: async (id) => {
      const { generation } = await request(GenerationDocument, { id });
      // The server answers a missing id with a NOT_FOUND error, which request throws.
      if (!generation) throw new SdqlError([{ message: `no generation ${id}`, extensions: { code: 'NOT_FOUND' } }]);
      return generation;
    },
    cancel: async (id) => (await request(CancelGenerationDocument, { id })).cancelGeneration,
    progress: (id, onEvent) => follow(GenerationProgressDocument, (d) => d.generationProgress, 'generation', id, onEvent),
    upscale: async (input) => (await request(UpscaleDocument, { input })).upscale,
    upscaleProgress: (id, onEvent) => follow(UpscaleProgressDocument, (d) => d.upscaleProgress, 'upscale', id, onEvent),
    getUpscale: async (id) => {
      const { upscale } = await request(UpscaleByIdDocument, { id });
      if (!upscale) throw new SdqlError([{ message: `no upscale ${id}`, extensions: { code: 'NOT_FOUND' } }]);
      return upscale;
    },
    cancelUpscale: async (id) => (await request(CancelUpscaleDocument, { id })).cancelUpscale,
    download: async (image) => {
      // The server gives absolute URLs; a relative one is relative to the endpoint.
      const response = await fetch(new URL(image.url, endpoint));
      if (!response.ok) throw new Error(`HTTP ${response.status} for ${response.url}`);
      return new Uint8Array(await response.arrayBuffer());
    },
    close: async () => {
      await ws?.dispose();
      ws = undefined;
    },
  };
}

/** JSON, or a GraphQL multipart request when the variables hold files (Blobs). */
function encodeRequest(query: string, variables: Record<string, unknown>): string | FormData {
  const files: [path: string, file: Blob][] = [];
  const json = JSON.stringify({ query, variables: withoutFiles(variables, 'variables', files) });
  if (files.length === 0) return json;
  const form = new FormData();
  form.set('operations', json);
  form.set('map', JSON.stringify(Object.fromEntries(files.map(([path], i) => [i, [path]]))));
  files.forEach(([, file], i) => form.set(String(i), file));
  return form;
}

/** The value with each Blob replaced by null, as the multipart spec wants, and its path noted. */
function withoutFiles(value: unknown, path: string, files: [string, Blob][]): unknown {
  if (value instanceof Blob) {
    files.push([path, value]);
    return null;
  }
  if (Array.isArray(value)) return value.map((item, i) => withoutFiles(item, `${path}.${i}`, files));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, withoutFiles(item, `${path}.${key}`, files)]));
}

function toError(error: unknown): Error {
  if (error instanceof Error) return error;
  // graphql-ws reports a closed socket with its CloseEvent; 4401 is a missing or refused token.
  const close = error as { code?: number; reason?: string };
  if (close.code === 4401) return new SdqlError([{ message: close.reason || 'the server refused the token', extensions: { code: 'UNAUTHENTICATED' } }]);
  return new Error(`the WebSocket to sdql closed${close.code ? ` (${close.code}${close.reason ? `: ${close.reason}` : ''})` : ''}`);
}
