// `npm run db:generate`: regenerates src/db/generated (Prisma client and Pothos types) from
// prisma/schema.prisma, offline. Prisma's CLI fetches its schema engine on every command unless
// PRISMA_SCHEMA_ENGINE_BINARY names a file; `generate` never runs the engine, so any file will do.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const SCHEMA_PATH = join(root, 'prisma', 'schema.prisma');

/** Runs `prisma generate` on `schema` (outputs are relative to it); returns its combined output. Throws on failure. */
export function prismaGenerate(schema = SCHEMA_PATH): string {
  const cli = join(dirname(createRequire(import.meta.url).resolve('prisma/package.json')), 'build', 'index.js');
  const result = spawnSync(process.execPath, [cli, 'generate', '--schema', schema], {
    cwd: root,
    encoding: 'utf8',
    env: {
      ...process.env,
      PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? process.execPath,
      // Generators such as prisma-pothos-types are commands found on PATH.
      PATH: `${join(root, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}`,
    },
  });
  const output = `${result.stdout}${result.stderr}`;
  if (result.status !== 0) throw new Error(`prisma generate failed:\n${output}`);
  return output;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(prismaGenerate());
