// `sdql serve`: the server, until SIGINT or SIGTERM shuts it down gracefully.
import { parseArgs } from 'node:util';
import { configArgs, configHelp, HELP_COLUMN, loadConfig } from '../config.ts';
import { DatabaseUnavailableError } from '../db/index.ts';
import { configureLogging, log } from '../log.ts';
import { startServer } from '../app/serve.ts';
import { StartError } from '../lifecycle.ts';

export const SERVE_HELP = `Usage: sdql serve [options]

Starts the GraphQL server: GraphiQL at http://HOST:PORT/graphql in a browser, GraphQL over HTTP, SSE
and WebSocket (graphql-ws) on the same path, and /healthz (200 once ready). Stops gracefully on
SIGINT (Ctrl-C) or SIGTERM.

Options (each also read from the environment variable named; flags win):
${configHelp()}
${'  -h, --help'.padEnd(HELP_COLUMN)}this help
`;

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...configArgs(), help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  const config = loadConfig(values);
  configureLogging({ level: config.logLevel });

  let server;
  try {
    server = await startServer(config);
  } catch (error) {
    if (error instanceof StartError || error instanceof DatabaseUnavailableError) {
      process.stderr.write(`sdql serve: ${error.message}\n`);
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
  await server.close();
  log.info('stopped');
  return 0;
}
