// `sdql serve`: the server, until SIGINT or SIGTERM shuts it down gracefully.
import { startServer } from '../app/serve.ts';
import { optionsHelp, runUntilSignal } from './long-running.ts';

export const SERVE_HELP = `Usage: sdql serve [options]

Starts the GraphQL server: GraphiQL at http://HOST:PORT/graphql in a browser, GraphQL over HTTP, SSE
and WebSocket (graphql-ws) on the same path, and /healthz (200 once ready). Stops gracefully on
SIGINT (Ctrl-C) or SIGTERM.

${optionsHelp()}`;

export function serveCommand(argv: string[]): Promise<number> {
  return runUntilSignal('serve', SERVE_HELP, argv, async (config) => {
    const server = await startServer(config);
    // Plain text, not a log line: logs redact tokens, and this is the one time it can be seen.
    if (server.adminToken) process.stdout.write(`admin token: ${server.adminToken}\n`);
    return server;
  });
}
