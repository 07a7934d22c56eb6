// `sdql worker`: a process that only runs generations, beside API servers, on a shared Postgres
// (DATABASE_URL) with events through Redis (REDIS_URL). Put one on each GPU host.
import { startWorker } from '../app/worker.ts';
import { ConfigError } from '../config.ts';
import { optionsHelp, runUntilSignal } from './long-running.ts';

export const WORKER_HELP = `Usage: sdql worker [options]

Runs queued generations without serving HTTP, until SIGINT or SIGTERM (a generation in progress
goes back to the queue). Needs the Postgres of the API servers (DATABASE_URL) and their Redis
(REDIS_URL), which carries progress and cancels between them: without it, only one process may use
the database. Model folders must be in SDQL_MODELS_DIR under the same ids as on the API servers.

${optionsHelp()}`;

export function workerCommand(argv: string[]): Promise<number> {
  return runUntilSignal('worker', WORKER_HELP, argv, async (config) => {
    if (!config.databaseUrl) throw new ConfigError('sdql worker needs DATABASE_URL: the embedded database belongs to the one `sdql serve` process');
    const app = await startWorker(config);
    return { close: () => app.lifecycle.shutdown() };
  });
}
