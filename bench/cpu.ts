// The engine's work outside onnxruntime that tests once held to wall-clock limits: drawing the initial
// noise, tokenizing a long prompt, and parsing deeply nested prompt syntax (A1111's weighting is
// quadratic in the nesting depth, so these are the worst cases up to the 10,000-character limit).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTokenizer } from '../src/diffusion/fixtures/tokenizer.ts';
import { parsePromptAttention } from '../src/diffusion/prompt/parse.ts';
import { promptSchedule } from '../src/diffusion/prompt/schedule.ts';
import { TorchGenerator } from '../src/diffusion/random.ts';
import { ClipTokenizer } from '../src/diffusion/tokenizer.ts';
import type { BenchRow } from './index.ts';
import { median } from './lib/common.ts';

const ROUNDS = 7;

/** Milliseconds of each of ROUNDS calls after two warm-up calls. */
function times(fn: (round: number) => unknown): number[] {
  for (let round = -2; round < 0; round++) fn(round);
  return Array.from({ length: ROUNDS }, (_, round) => {
    const started = performance.now();
    fn(round);
    return performance.now() - started;
  });
}

/** CLIP's real vocabulary from ../shared/reference when it is there, else the fixture models' small one. */
async function tokenizer(): Promise<{ tokenizer: ClipTokenizer; source: string }> {
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const dir = join(process.env.SDQL_REFERENCE_DIR ?? join(repoRoot, '../shared/reference'), 'models/tiny-sd/tokenizer');
  if (existsSync(join(dir, 'vocab.json'))) return { tokenizer: await ClipTokenizer.fromFolder(dir), source: "CLIP's vocabulary (reference tiny-sd)" };
  return { tokenizer: new ClipTokenizer(buildTokenizer()), source: "the fixture models' vocabulary (no ../shared/reference)" };
}

export async function benchCpu(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const randn = times((round) => new TorchGenerator(round + 10).randn(4 * 128 * 128));
  rows.push({ metric: 'randn 1×4×128×128 (a 1024² latent)', value: median(randn), unit: 'ms', note: `median of ${ROUNDS} (fastest ${Math.min(...randn).toFixed(1)}); the tests once required < 10` });

  const { tokenizer: clip, source } = await tokenizer();
  const words = 'a photo of an astronaut riding a horse on mars, highly detailed, 4k, trending on artstation'.split(' ');
  const prompt = Array.from({ length: 1000 }, (_, i) => words[i % words.length] + (i % 7 === 0 ? i : '')).join(' ');
  const tokenize = times(() => clip.tokenize(prompt));
  rows.push({ metric: 'tokenize a 1000-word prompt, warm', value: median(tokenize), unit: 'ms', note: `median of ${ROUNDS}, ${source}; the tests once required < 5` });

  const [n, m] = [5000, 1666];
  const nested = [
    '('.repeat(n) + 'a' + ')'.repeat(n),
    '['.repeat(n) + 'a:3' + ']'.repeat(n),
    '[a:'.repeat(m) + 'b' + ':3]'.repeat(m),
    '[a|'.repeat(m) + 'b' + ']'.repeat(m),
    '(a'.repeat(m) + ')'.repeat(m),
  ];
  const parse = nested.map((text) => median(times(() => (parsePromptAttention(text), promptSchedule(text, 20)))));
  rows.push({ metric: 'parse + schedule, deepest nesting', value: Math.max(...parse), unit: 'ms', note: `slowest of ${nested.length} prompts of up to 10,000 characters (median of ${ROUNDS} each); the tests once required < 1000` });
  return rows;
}
