// `sdql <command>`: each command lives in src/cli/ and is imported only when it runs, so that
// `sdql serve` loads no engine code and `sdql generate` no server code.
import { ConfigError } from './config.ts';

interface Command {
  summary: string;
  run: (argv: string[]) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    summary: 'start the GraphQL server (GraphiQL at http://127.0.0.1:4000/graphql)',
    run: async (argv) => (await import('./cli/serve.ts')).serveCommand(argv),
  },
  worker: {
    summary: 'run queued generations for API servers on a shared Postgres (`sdql worker --help`)',
    run: async (argv) => (await import('./cli/worker.ts')).workerCommand(argv),
  },
  models: {
    summary: 'list the models and LoRAs, create a demo model, or pull one from the Hugging Face Hub (`sdql models --help`)',
    run: async (argv) => (await import('./cli/models.ts')).modelsCommand(argv),
  },
  tokens: {
    summary: 'create, list or revoke API tokens (`sdql tokens --help`)',
    run: async (argv) => (await import('./cli/tokens.ts')).tokensCommand(argv),
  },
  generate: {
    summary: 'run one generation on this machine and write the images (no server needed)',
    run: async (argv) => (await import('./cli/generate.ts')).generateCommand(argv),
  },
};

const HELP = `sdql: a typed GraphQL API for Stable Diffusion (ONNX pipelines, live previews, history in Postgres)

Usage: sdql <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
  .join('\n')}

Run \`sdql <command> --help\` for a command's options. Settings also come from the environment
(PORT, HOST, SDQL_DATA_DIR, SDQL_MODELS_DIR, DATABASE_URL, LOG_LEVEL, …): see \`sdql serve --help\`.
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`sdql: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // Wrong flags (node:util parseArgs) and invalid settings: say what to fix, no stack trace.
    if (error instanceof ConfigError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`sdql ${name}: ${(error as Error).message}\nRun \`sdql ${name} --help\` for the options.\n`);
      return 2;
    }
    throw error;
  }
}

process.exit(await main(process.argv.slice(2)));
