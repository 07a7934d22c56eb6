// `sdql worker`: a process that only runs generations, beside API servers, on a shared Postgres
// (DATABASE_URL) with events through Redis (REDIS_URL). Put one on each GPU host.
import { parseArgs } from 'node:util';
import { startWorker } from '../app/worker.ts';
import { configArgs, configHelp, ConfigError, HELP_COLUMN, loadConfig } from '../config.ts';
import { DatabaseUnavailableError } from '../db/index.ts';
import { StartError } from '../lifecycle.ts';
import { configureLogging, log } from '../log.ts';

export const WORKER_HELP = `Usage: sdql worker [options]

Runs queued generations without serving HTTP, until SIGINT or SIGTERM (a generation in progress
goes back to the queue). Needs the Postgres of the API servers (DATABASE_URL) and, so that their
subscribers see progress and cancels reach it at once, their Redis (REDIS_URL). Model folders must
be in SDQL_MODELS_DIR under the same ids as on the API servers.

Options (each also read from the environment variable named; flags win):
${configHelp()}
${'  -h, --help'.padEnd(HELP_COLUMN)}this help
`;

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...configArgs(), help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(WORKER_HELP);
    return 0;
  }
  const config = loadConfig(values);
  configureLogging({ level: config.logLevel });
  if (!config.databaseUrl) throw new ConfigError('sdql worker needs DATABASE_URL: the embedded database belongs to the one `sdql serve` process');
  if (!config.redisUrl) log.warn('REDIS_URL is unset: API servers will not see this worker\'s progress, and cancels reach it only at its next heartbeat');

  let app;
  try {
    app = await startWorker(config);
  } catch (error) {
    if (error instanceof DatabaseUnavailableError || error instanceof StartError) {
      process.stderr.write(`sdql worker: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  log.info('shutting down', { signal });
  await app.lifecycle.shutdown();
  return 0;
}
