// What `sdql serve` and `sdql worker` share: settings from flags and the environment, a start-up
// failure said in one line, then running until SIGINT or SIGTERM and a graceful stop.
import { parseArgs } from 'node:util';
import { configArgs, configHelp, HELP_COLUMN, loadConfig, type Config } from '../config.ts';
import { DatabaseUnavailableError } from '../db/index.ts';
import { StartError } from '../lifecycle.ts';
import { configureLogging, log } from '../log.ts';

/** The help's tail: every setting's flag, and --help. */
export const optionsHelp = () => `Options (each also read from the environment variable named; flags win):
${configHelp()}
${'  -h, --help'.padEnd(HELP_COLUMN)}this help
`;

export async function runUntilSignal(
  command: string,
  help: string,
  argv: string[],
  start: (config: Config) => Promise<{ close(): Promise<void> }>,
): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...configArgs(), help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(help);
    return 0;
  }
  const config = loadConfig(values);
  configureLogging({ level: config.logLevel });
  let running;
  try {
    running = await start(config);
  } catch (error) {
    if (error instanceof StartError || error instanceof DatabaseUnavailableError) {
      process.stderr.write(`sdql ${command}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  log.info('shutting down', { signal });
  // A second signal means "now".
  const force = () => process.exit(1);
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  await running.close();
  log.info('stopped');
  return 0;
}
