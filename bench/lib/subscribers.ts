// Entry of the subscriber process bench/api.ts forks: many graphql-ws clients, each on its own socket,
// follow one generation. They live in their own process so that their work (receiving and parsing
// every event) does not count against the server's event loop.
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

/** Parent → child: subscribe `count` clients to a generation's progress. */
export interface SubscribeOrder {
  url: string;
  generationId: string;
  count: number;
}

/** One event as a client received it; `at` is epoch milliseconds (performance.timeOrigin + now). */
export interface ReceivedEvent {
  status: string;
  step: number;
  previewChars: number;
  at: number;
}

/** Child → parent: `ready` once every client has its first event (the current state), then `done`. */
export type SubscriberReport = { type: 'ready' } | { type: 'done'; clients: ReceivedEvent[][] } | { type: 'error'; message: string };

export const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { generationId status step totalSteps imageIndex etaMs preview { dataUrl width height } error } }`;

interface ProgressData {
  generationProgress: { status: string; step: number; preview: { dataUrl: string } | null };
}

async function follow({ url, generationId, count }: SubscribeOrder, send: (report: SubscriberReport) => void): Promise<void> {
  const clients: Client[] = [];
  try {
    let waiting = count;
    const streams = Array.from({ length: count }, () => {
      const client = createClient({ url: `${url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
      clients.push(client);
      const events: ReceivedEvent[] = [];
      return new Promise<ReceivedEvent[]>((resolve, reject) => {
        client.subscribe<ProgressData>(
          { query: PROGRESS, variables: { id: generationId } },
          {
            next: ({ data, errors }) => {
              if (errors?.length || !data) return reject(new Error(JSON.stringify(errors)));
              const { status, step, preview } = data.generationProgress;
              events.push({ status, step, previewChars: preview?.dataUrl.length ?? 0, at: performance.timeOrigin + performance.now() });
              if (events.length === 1 && --waiting === 0) send({ type: 'ready' });
            },
            error: reject,
            complete: () => resolve(events),
          },
        );
      });
    });
    send({ type: 'done', clients: await Promise.all(streams) });
  } finally {
    await Promise.all(clients.map((c) => c.dispose()));
  }
}

// Only when forked as the entry: bench/api.ts imports this module for its query and types.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const send = (report: SubscriberReport) => process.send!(report);
  process.on('message', (order: SubscribeOrder) => {
    follow(order, send).catch((error: Error) => send({ type: 'error', message: error.message }));
  });
}
