// `sdql tokens create|list|revoke`: API tokens managed on the database itself — the embedded one of a
// stopped server (SDQL_DATA_DIR), or a Postgres that running servers share (DATABASE_URL), where a
// revoked token is refused from the next request on.
import { parseArgs } from 'node:util';
import { AuthError, SCOPES, Tokens, type Scope, type TokenInfo } from '../auth/index.ts';
import { loadConfig } from '../config.ts';
import { databaseTarget, DatabaseUnavailableError, openDatabase } from '../db/index.ts';
import { configureLogging } from '../log.ts';

export const TOKENS_HELP = `Usage: sdql tokens <subcommand> [--data-dir <dir> | --database-url <url>]

Subcommands:
  create <name> --scopes <${SCOPES.join(',')}>
        Creates an API token and prints it: the only time it is shown (only its SHA-256 is kept).
        Scopes: READ (models, the queue, its own history), GENERATE (READ, and generate, cancel and
        delete its own generations), ADMIN (everything). Generations it submits are owned by <name>.
  list [--json]
        The tokens: name, scopes, when created, when last used.
  revoke <name>
        Deletes a token; requests with it are refused from then on.

The database is SDQL_DATA_DIR's embedded one (the server must be stopped: one process at a time may
open it) or DATABASE_URL's Postgres (servers may be running).
`;

const DB_OPTIONS = { 'data-dir': { type: 'string' }, 'database-url': { type: 'string' } } as const;

/** Opens the database of the flags and environment, runs `fn` on its tokens, closes it. */
async function withTokens<T>(values: Record<string, unknown>, fn: (tokens: Tokens) => Promise<T>): Promise<T> {
  const db = await openDatabase(databaseTarget(loadConfig(values)));
  try {
    return await fn(new Tokens(db.prisma));
  } finally {
    await db.close();
  }
}

function parseScopes(raw: string | undefined): Scope[] {
  const scopes = (raw ?? '')
    .split(',')
    .map((s) => s.trim().toUpperCase())
    .filter(Boolean);
  const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (!scopes.length || unknown.length) throw new AuthError('BAD_USER_INPUT', `--scopes must list some of ${SCOPES.join(', ')} (comma-separated)${unknown.length ? `, got ${unknown.join(', ')}` : ''}`);
  return scopes as Scope[];
}

const when = (date: Date | null) => (date ? date.toISOString().replace(/\.\d+Z$/, 'Z') : '-');

function table(tokens: TokenInfo[]): string {
  const rows = [['NAME', 'SCOPES', 'CREATED', 'LAST USED'], ...tokens.map((t) => [t.name, t.scopes.join(','), when(t.createdAt), when(t.lastUsedAt)])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

async function run(sub: string, argv: string[]): Promise<number> {
  if (sub === 'create') {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...DB_OPTIONS, scopes: { type: 'string' } } });
    if (positionals.length !== 1) throw new AuthError('BAD_USER_INPUT', 'give the name of the token to create');
    const scopes = parseScopes(values.scopes);
    const { token, info } = await withTokens(values, (tokens) => tokens.create(positionals[0], scopes));
    process.stdout.write(`${token}\n`);
    process.stderr.write(`Created token "${info.name}" (${info.scopes.join(', ')}). It is shown only this once: keep it safe.\n`);
    return 0;
  }
  if (sub === 'list') {
    const { values } = parseArgs({ args: argv, options: { ...DB_OPTIONS, json: { type: 'boolean' } } });
    const tokens = await withTokens(values, (t) => t.list());
    process.stdout.write(values.json ? `${JSON.stringify(tokens, null, 2)}\n` : tokens.length ? `${table(tokens)}\n` : 'no tokens\n');
    return 0;
  }
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: DB_OPTIONS });
  if (positionals.length !== 1) throw new AuthError('BAD_USER_INPUT', 'give the name of the token to revoke');
  const revoked = await withTokens(values, (tokens) => tokens.revoke(positionals[0]));
  process.stderr.write(`Revoked token "${revoked.name}".\n`);
  return 0;
}

export async function tokensCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(TOKENS_HELP);
    return 0;
  }
  if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') {
    process.stderr.write(`${sub ? `sdql tokens: unknown subcommand "${sub}"\n\n` : ''}${TOKENS_HELP}`);
    return 2;
  }
  configureLogging({ level: 'warn' });
  try {
    return await run(sub, rest);
  } catch (error) {
    if (error instanceof AuthError || error instanceof DatabaseUnavailableError) {
      process.stderr.write(`sdql tokens ${sub}: ${error.message}\n`);
      return error instanceof AuthError && error.code === 'BAD_USER_INPUT' ? 2 : 1;
    }
    throw error;
  }
}
