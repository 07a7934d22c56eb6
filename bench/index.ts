// `npm run bench [-- <section>…]`: runs the benchmark sections (all, or those named) and prints their
// numbers as one table on stdout; progress goes to stderr. A section is a file bench/<name>.ts that
// exports `bench<Name>(): Promise<BenchRow[]>` (bench/engine.ts → benchEngine); every such file is
// picked up, so adding a section needs no change here. Scratch files belong in bench/out/ (git-ignored).
// `--name value` arguments go to every section run as its options (`npm run bench -- gpu --steps 5`).
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface BenchRow {
  metric: string;
  value: number | string;
  unit?: string;
  /** What was measured, how often, or the target. */
  note?: string;
}

/** `--name value` arguments, by name. */
export type BenchOptions = Record<string, string>;

export type BenchSection = (options: BenchOptions) => Promise<BenchRow[]>;

const benchDir = dirname(fileURLToPath(import.meta.url));

/** Section name → file, sorted by name. */
function findSections(): Map<string, string> {
  const files = readdirSync(benchDir).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && f !== 'index.ts');
  return new Map(files.sort().map((f) => [basename(f, '.ts'), join(benchDir, f)]));
}

async function loadSection(name: string, file: string): Promise<BenchSection> {
  const exportName = `bench${name.replace(/(^|[-_])(\w)/g, (_, __, c: string) => c.toUpperCase())}`;
  const section = ((await import(pathToFileURL(file).href)) as Record<string, unknown>)[exportName];
  if (typeof section !== 'function') throw new Error(`bench/${name}.ts exports no ${exportName}()`);
  return section as BenchSection;
}

function formatValue(value: number | string): string {
  if (typeof value === 'string') return value;
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
}

function printTable(rows: (BenchRow & { section: string })[]): void {
  const header = ['section', 'metric', 'value', 'unit', 'note'];
  const cells = rows.map((r) => [r.section, r.metric, formatValue(r.value), r.unit ?? '', r.note ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((s, i) => (i === 2 ? s.padStart(widths[i]) : s.padEnd(widths[i]))).join('  ').trimEnd();
  process.stdout.write(`${[line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n')}\n`);
}

/** Section names, and `--name value` pairs. */
function parseArgv(argv: string[]): { names: string[]; options: BenchOptions } {
  const names: string[] = [];
  const options: BenchOptions = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) options[argv[i].slice(2)] = argv[++i] ?? '';
    else names.push(argv[i]);
  }
  return { names, options };
}

async function main(args: string[]): Promise<number> {
  const sections = findSections();
  const { names: argv, options } = parseArgv(args);
  const unknown = argv.filter((name) => !sections.has(name));
  if (unknown.length) {
    process.stderr.write(`no benchmark section ${unknown.join(', ')}; there are: ${[...sections.keys()].join(', ')}\n`);
    return 2;
  }
  const rows: (BenchRow & { section: string })[] = [];
  let failed = false;
  for (const [name, file] of sections) {
    if (argv.length && !argv.includes(name)) continue;
    process.stderr.write(`bench ${name}…\n`);
    const started = performance.now();
    try {
      const section = await loadSection(name, file);
      for (const row of await section(options)) rows.push({ section: name, ...row });
      process.stderr.write(`bench ${name}: ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    } catch (error) {
      failed = true;
      process.stderr.write(`bench ${name} failed: ${(error as Error).stack ?? String(error)}\n`);
      rows.push({ section: name, metric: 'FAILED', value: (error as Error).message });
    }
  }
  printTable(rows);
  return failed ? 1 : 0;
}

// Exit even if a failed section left a worker or a timer behind.
process.exit(await main(process.argv.slice(2)));
