// Entry of the client processes bench/load.ts forks, so that the clients' work does not run on the
// server's event loop, nor the flood's on the reader's:
// - `reader`: issues `{ system { version } }` back to back and records each round trip;
// - `flood`: sends the `generate` requests all at once, then follows some of them with graphql-ws
//   subscribers (a socket each) until each gets its final event.
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

/** Parent → reader: read until `stop`, or `count` times. */
export type ReaderOrder = { type: 'read'; url: string; count?: number } | { type: 'stop' };
/** Reader → parent: the round trips in milliseconds, once stopped (or done counting). */
export interface ReaderReport {
  latenciesMs: number[];
  errors: number;
}

/** Parent → flood. */
export interface FloodOrder {
  url: string;
  input: Record<string, unknown>;
  generations: number;
  subscribers: number;
}
/** Flood → parent: `submitted` once every request has answered, then `followed`. */
export type FloodReport =
  | { type: 'submitted'; ids: string[]; refused: string[] }
  | { type: 'followed'; finals: (string | null)[] }
  | { type: 'error'; message: string };

const VERSION = '{ system { version } }';
const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const STATUS = `subscription($id: ID!) { generationProgress(id: $id) { status } }`;

interface Answer {
  data?: { system?: { version: string }; generate?: { id: string } };
  errors?: { message: string }[];
}

async function post(url: string, query: string, variables?: Record<string, unknown>): Promise<Answer> {
  const response = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
  return (await response.json()) as Answer;
}

async function read(url: string, count: number, stopped: () => boolean): Promise<ReaderReport> {
  const report: ReaderReport = { latenciesMs: [], errors: 0 };
  while (report.latenciesMs.length < count && !stopped()) {
    const started = performance.now();
    const { data } = await post(url, VERSION).catch(() => ({ data: undefined }));
    report.latenciesMs.push(performance.now() - started);
    if (!data?.system?.version) report.errors++;
  }
  return report;
}

/** The last status each subscriber saw before its stream ended (null: it failed). */
function follow(url: string, id: string, clients: Client[]): Promise<string | null> {
  const client = createClient({ url: `${url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
  clients.push(client);
  let last: string | null = null;
  return new Promise((resolve) => {
    client.subscribe<{ generationProgress: { status: string } }>(
      { query: STATUS, variables: { id } },
      { next: ({ data }) => (last = data?.generationProgress.status ?? null), error: () => resolve(null), complete: () => resolve(last) },
    );
  });
}

async function flood({ url, input, generations, subscribers }: FloodOrder, send: (report: FloodReport) => void): Promise<void> {
  const answers = await Promise.all(Array.from({ length: generations }, (_, i) => post(url, GENERATE, { input: { ...input, seed: i } })));
  const ids = answers.flatMap((a) => (a.data?.generate ? [a.data.generate.id] : []));
  send({ type: 'submitted', ids, refused: answers.flatMap((a) => (a.errors ?? []).map((e) => e.message)) });
  const clients: Client[] = [];
  try {
    send({ type: 'followed', finals: await Promise.all(ids.slice(0, subscribers).map((id) => follow(url, id, clients))) });
  } finally {
    await Promise.all(clients.map((c) => c.dispose()));
  }
}

// Only when forked as the entry: bench/load.ts imports this module for its types.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const role = process.argv[2];
  let stopped = false;
  process.on('message', (order: ReaderOrder | FloodOrder) => {
    if (role === 'flood') {
      flood(order as FloodOrder, (r) => process.send!(r)).catch((error: Error) => process.send!({ type: 'error', message: error.message } satisfies FloodReport));
    } else if ((order as ReaderOrder).type === 'stop') {
      stopped = true;
    } else {
      const { url, count } = order as Extract<ReaderOrder, { type: 'read' }>;
      stopped = false;
      void read(url, count ?? Infinity, () => stopped).then((report) => process.send!(report));
    }
  });
}
