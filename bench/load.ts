// Load (issue 10): a server with a tiny fixture model takes 200 concurrent `generate` requests while
// 100 graphql-ws subscribers follow generations and a reader issues `{ system { version } }` back to
// back. Checked: nothing is lost (every generation SUCCEEDED, every subscriber got its final event).
// Measured: the reader's p99 round trip under that load, as a ratio to its p99 on the same server
// idle, measured first in the same run. The clients run in two forked processes (lib/load-clients.ts)
// so that neither their work nor each other's counts against the server's event loop.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeNodeId } from '../src/graphql/ids.ts';
import { startTestServer } from '../test/helpers/api.ts';
import type { BenchRow } from './index.ts';
import type { FloodOrder, FloodReport, ReaderOrder, ReaderReport } from './lib/load-clients.ts';
import { cachedFixture, median } from './lib/common.ts';

const GENERATIONS = 200;
const SUBSCRIBERS = 100;
const IDLE_READS = 300;
/** Two steps of the default fixture (64×64): the queue, the events and the database are what is loaded, not the engine. */
const INPUT = { modelId: 'tiny', prompt: 'load', steps: 2 };
const MODELS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'out', 'load', 'models');

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];

function client(role: 'reader' | 'flood'): ChildProcess {
  return fork(fileURLToPath(new URL('./lib/load-clients.ts', import.meta.url)), [role], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

async function next<T>(child: ChildProcess, accept: (message: T) => boolean = () => true): Promise<T> {
  for (;;) {
    const [message] = (await once(child, 'message')) as [T & { type?: string; message?: string }];
    if (message.type === 'error') throw new Error(message.message);
    if (accept(message)) return message;
  }
}

export async function benchLoad(): Promise<BenchRow[]> {
  await cachedFixture(join(MODELS_DIR, 'tiny'), {});
  // SDQL_MAX_QUEUED: one owner queues all 200 at once.
  const api = await startTestServer({ modelsDir: MODELS_DIR, env: { SDQL_MAX_QUEUED: String(GENERATIONS) } });
  const reader = client('reader');
  const floodClient = client('flood');
  try {
    const { url } = api.server;
    const { jobs } = api.server.app;
    // The model loaded and every path warm before anything is timed.
    const warm = await api.data<{ generate: { id: string } }>(`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, { input: INPUT });
    await jobs.awaitEnd(decodeNodeId(warm.generate.id).id, 60_000);

    reader.send({ type: 'read', url, count: IDLE_READS } satisfies ReaderOrder);
    const idle = await next<ReaderReport>(reader);

    const started = performance.now();
    reader.send({ type: 'read', url } satisfies ReaderOrder);
    floodClient.send({ url, input: INPUT, generations: GENERATIONS, subscribers: SUBSCRIBERS } satisfies FloodOrder);
    const submitted = await next<Extract<FloodReport, { type: 'submitted' }>>(floodClient);
    const ids = submitted.ids.map((id) => decodeNodeId(id).id);
    await Promise.all(ids.map((id) => jobs.awaitEnd(id, 600_000)));
    const followed = await next<Extract<FloodReport, { type: 'followed' }>>(floodClient);
    const seconds = (performance.now() - started) / 1000;
    reader.send({ type: 'stop' } satisfies ReaderOrder);
    const loaded = await next<ReaderReport>(reader);

    const statuses = await api.server.app.db.prisma.generation.groupBy({ by: ['status'], where: { id: { in: ids } }, _count: true });
    const succeeded = statuses.find((s) => s.status === 'SUCCEEDED')?._count ?? 0;
    const finals = followed.finals.filter((s) => s === 'SUCCEEDED').length;
    const lost = [
      submitted.refused.length && `${submitted.refused.length} generate requests refused (${submitted.refused[0]})`,
      succeeded !== GENERATIONS && `${GENERATIONS - succeeded} generations did not succeed (${JSON.stringify(statuses)})`,
      finals !== SUBSCRIBERS && `${SUBSCRIBERS - finals} subscribers did not get SUCCEEDED as their final event`,
      idle.errors + loaded.errors && `${idle.errors + loaded.errors} reader queries failed`,
    ].filter(Boolean);
    if (lost.length) throw new Error(`lost under load: ${lost.join('; ')}`);

    const idleP99 = percentile(idle.latenciesMs, 99);
    const loadedP99 = percentile(loaded.latenciesMs, 99);
    return [
      { metric: 'generations succeeded', value: `${succeeded}/${GENERATIONS}`, note: `${INPUT.steps} steps each, all submitted at once` },
      { metric: 'subscribers with their final event', value: `${finals}/${SUBSCRIBERS}`, note: 'graphql-ws, a socket each' },
      { metric: 'reader p99 under load / idle', value: loadedP99 / idleP99, unit: '×', note: `{ system { version } } back to back; ${loaded.latenciesMs.length} reads under load, ${IDLE_READS} idle` },
      { metric: 'reader p99 idle', value: idleP99, unit: 'ms', note: `median ${median(idle.latenciesMs).toFixed(2)} ms` },
      { metric: 'reader p99 under load', value: loadedP99, unit: 'ms', note: `median ${median(loaded.latenciesMs).toFixed(2)} ms, max ${Math.max(...loaded.latenciesMs).toFixed(1)} ms` },
      { metric: 'load drained in', value: seconds, unit: 's', note: `${(GENERATIONS / seconds).toFixed(1)} generations/s` },
    ];
  } finally {
    reader.kill();
    floodClient.kill();
    await api.close();
  }
}
