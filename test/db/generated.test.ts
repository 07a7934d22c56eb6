// src/db/generated is committed (so that installs need no generate step and no network); it must be
// what `npm run db:generate` makes from the current schema.prisma with the installed Prisma.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { prismaGenerate, SCHEMA_PATH } from '../../src/db/generate.ts';

const GENERATED = fileURLToPath(new URL('../../src/db/generated', import.meta.url));

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, e.name);
      if (e.isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

test('the committed Prisma client and Pothos types match schema.prisma (else run `npm run db:generate`)', () => {
  const root = mkdtempSync(join(tmpdir(), 'sdql-generate-'));
  try {
    // Same layout as the repository, so the schema's relative output paths land under root/src/db/generated.
    mkdirSync(join(root, 'prisma'));
    cpSync(SCHEMA_PATH, join(root, 'prisma', 'schema.prisma'));
    prismaGenerate(join(root, 'prisma', 'schema.prisma'));
    const fresh = files(join(root, 'src', 'db', 'generated'));
    const committed = files(GENERATED);
    assert.deepEqual([...committed.keys()].sort(), [...fresh.keys()].sort(), 'generated files differ: run `npm run db:generate`');
    for (const [name, text] of fresh) assert.ok(committed.get(name) === text, `src/db/generated/${name} is stale: run \`npm run db:generate\``);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
