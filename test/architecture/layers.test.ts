// The layers of docs/architecture.md, enforced: which folder of src/ may import which, which packages
// each may not touch, and no import cycles between files.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const src = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/** Each part of src/ (a folder, or a file at its top) and the parts it may import besides itself. */
const MAY_IMPORT: Record<string, string[]> = {
  'version.ts': [],
  'log.ts': [],
  'config.ts': ['log.ts'],
  'lifecycle.ts': ['log.ts'],
  diffusion: [],
  db: ['config.ts', 'log.ts'],
  events: [],
  registry: ['db', 'diffusion', 'log.ts'],
  jobs: ['db', 'diffusion', 'events', 'log.ts'],
  auth: ['config.ts', 'db', 'log.ts'],
  graphql: ['auth', 'config.ts', 'db', 'diffusion', 'events', 'jobs', 'log.ts', 'registry', 'version.ts'],
  server: ['auth', 'config.ts', 'graphql', 'lifecycle.ts', 'log.ts'],
  app: ['auth', 'config.ts', 'db', 'diffusion', 'events', 'graphql', 'jobs', 'lifecycle.ts', 'log.ts', 'registry', 'server', 'version.ts'],
  cli: ['app', 'auth', 'config.ts', 'db', 'diffusion', 'lifecycle.ts', 'log.ts', 'registry', 'version.ts'],
  'cli.ts': ['cli', 'config.ts'],
};

const SERVING = [/^graphql($|-)/, /^@graphql-yoga\//, /^@pothos\//, /^ws$/, /^node:https?$/];
/** Packages a part must not import, and why. */
const MAY_NOT_USE: Record<string, { packages: RegExp[]; why: string }> = {
  diffusion: { packages: [...SERVING, /^@prisma\//, /^pg$/, /^@electric-sql\//, /^ioredis$/], why: 'the engine knows nothing of GraphQL, databases or HTTP' },
  jobs: { packages: SERVING, why: 'the jobs run in `sdql worker`, which loads no GraphQL or HTTP' },
  registry: { packages: SERVING, why: 'the registry runs in `sdql worker` too' },
  db: { packages: SERVING, why: 'the database layer runs in `sdql worker` too' },
  auth: { packages: SERVING, why: 'createApp builds it for `sdql worker` too' },
  graphql: { packages: [/^node:fs/, /^node:https?$/, /^ws$/, /^graphql-yoga$/], why: 'graphql/ is the schema only: no file I/O, no transport' },
};

/** The script that prints the SDL into schema/ is a build step beside the schema, not part of it. */
const EXEMPT_FILES = new Set(['graphql/print-schema.ts']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'generated' ? [] : sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT = /(?:^|[;\s])(?:import|export)\s(?:type\s)?[^'"`;]*?from\s*['"]([^'"]+)['"]|(?:^|[;\s])import\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|[;\s])import\s+['"]([^'"]+)['"]/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '');
  return [...text.matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3]);
}

/** The part of src/ a path (relative to src/) belongs to. */
const partOf = (path: string) => (path.includes('/') ? path.slice(0, path.indexOf('/')) : path);

const files = sourceFiles(src).map((file) => ({ file, path: relative(src, file), imports: importsOf(file) }));

test('every part of src/ is in the layer table', () => {
  const unknown = [...new Set(files.map((f) => partOf(f.path)))].filter((part) => !(part in MAY_IMPORT));
  assert.deepEqual(unknown, [], 'add new folders to MAY_IMPORT here and to docs/architecture.md');
});

test('each part imports only the parts below it', () => {
  const broken: string[] = [];
  for (const { file, path, imports } of files) {
    const part = partOf(path);
    for (const spec of imports.filter((s) => s.startsWith('.'))) {
      const target = partOf(relative(src, resolve(dirname(file), spec)));
      if (target !== part && !MAY_IMPORT[part]?.includes(target)) broken.push(`${path} imports ${spec} (${part} may not import ${target})`);
    }
  }
  assert.deepEqual(broken, [], 'see docs/architecture.md for what each layer may import');
});

test('outside the engine, the engine is imported through its one entry (diffusion/index.ts)', () => {
  const broken: string[] = [];
  for (const { file, path, imports } of files) {
    if (partOf(path) === 'diffusion') continue;
    for (const spec of imports.filter((s) => s.startsWith('.'))) {
      const target = relative(src, resolve(dirname(file), spec));
      if (partOf(target) === 'diffusion' && target !== 'diffusion/index.ts') broken.push(`${path} imports ${spec}`);
    }
  }
  assert.deepEqual(broken, [], 'export what is needed from src/diffusion/index.ts');
});

test('no part imports the packages of a layer above it', () => {
  const broken: string[] = [];
  for (const { path, imports } of files) {
    const rule = MAY_NOT_USE[partOf(path)];
    if (!rule || EXEMPT_FILES.has(path)) continue;
    for (const spec of imports) if (rule.packages.some((p) => p.test(spec))) broken.push(`${path} imports ${spec}: ${rule.why}`);
  }
  assert.deepEqual(broken, []);
});

test('no import cycles between files', () => {
  const graph = new Map(
    files.map(({ file, imports }) => [file, imports.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s))]),
  );
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (file: string, trail: string[]) => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'visiting') {
      cycles.push([...trail.slice(trail.indexOf(file)), file].map((f) => relative(src, f)).join(' → '));
      return;
    }
    state.set(file, 'visiting');
    for (const next of graph.get(file) ?? []) visit(next, [...trail, file]);
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file, []);
  assert.deepEqual(cycles, []);
});
