// Checkpoint conversion (issue 12): an SD 1.5-size single-file checkpoint of random weights (about
// 4.3 GB of float32, built once by writeRandomCheckpoint into SDQL_BENCH_CONVERT_DIR, default
// bench/out/convert), converted to ONNX in a child process: its time and peak RSS, against loading
// the resulting ONNX export (the same size as an Optimum export of SD 1.5) in another child, measured
// in the same run. Peak RSS must stay below twice the checkpoint's size (tensors are streamed).
// Needs ~10 GB of disk and several GB of memory: run it alone (flock /work/notes/heavy.lock).
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SD15 } from '../src/diffusion/convert/architecture.ts';
import { writeRandomCheckpoint } from '../src/diffusion/convert/random.ts';
import { writeFixtureTokenizer } from '../src/diffusion/fixtures/index.ts';
import type { BenchRow } from './index.ts';
import type { ChildReport } from './lib/convert-child.ts';

const DIR = resolve(process.env.SDQL_BENCH_CONVERT_DIR ?? join(dirname(fileURLToPath(import.meta.url)), 'out', 'convert'));
const GB = 1e9;

async function child(...args: string[]): Promise<ChildReport> {
  const proc = fork(fileURLToPath(new URL('./lib/convert-child.ts', import.meta.url)), args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const report = once(proc, 'message') as Promise<[ChildReport]>;
  const [code] = (await once(proc, 'exit')) as [number];
  if (code !== 0) throw new Error(`bench child ${args[0]} exited with ${code}`);
  return (await report)[0];
}

export async function benchConvert(): Promise<BenchRow[]> {
  const file = join(DIR, 'sd15-random.safetensors');
  const vocab = join(DIR, 'tokenizer');
  const rows: BenchRow[] = [];
  if (!existsSync(file)) {
    await mkdir(DIR, { recursive: true });
    const started = performance.now();
    await writeRandomCheckpoint(`${file}.partial`, SD15, { seed: 1 });
    await rename(`${file}.partial`, file);
    rows.push({ metric: 'random checkpoint written', value: (performance.now() - started) / 1000, unit: 's', note: 'once; kept for later runs' });
  }
  // The converter copies the tokenizer's files; a random model needs no real CLIP vocabulary.
  await writeFixtureTokenizer(vocab);
  const size = statSync(file).size;
  const out = join(DIR, 'converted');
  const conversion = await child('convert', file, out, vocab);
  const load = await child('load', out);
  rows.push(
    { metric: 'checkpoint size', value: size / GB, unit: 'GB', note: 'SD 1.5 architecture, float32, random weights' },
    { metric: 'conversion time', value: conversion.ms / 1000, unit: 's' },
    { metric: 'conversion peak RSS', value: conversion.maxRssBytes / GB, unit: 'GB' },
    { metric: 'conversion peak RSS / checkpoint size', value: conversion.maxRssBytes / size, unit: '×', note: 'must stay below 2' },
    { metric: 'baseline: loading the ONNX export', value: load.ms / 1000, unit: 's', note: 'its four onnxruntime sessions, same size' },
    { metric: 'baseline peak RSS', value: load.maxRssBytes / GB, unit: 'GB' },
    { metric: 'conversion time / load time', value: conversion.ms / load.ms, unit: '×' },
  );
  if (conversion.maxRssBytes >= 2 * size) throw new Error(`conversion peak RSS ${(conversion.maxRssBytes / GB).toFixed(2)} GB is not below twice the checkpoint (${((2 * size) / GB).toFixed(2)} GB)`);
  return rows;
}
