// LoRA loading (issue 5's performance section), on a fixture UNet with SD-sized layers (channels
// 640/1280: 3×3 convolutions of 1280×1280, attention and feed-forward projections of SD 1.5's middle
// level) and two kohya LoRAs: a LoCon of rank 32 on every Linear and Conv layer of the UNet and
// the text encoder, and an attention-only LoRA of rank 16, the common kind.
//
// - Merging: reading the LoRA, then decoding the UNet, merging and re-encoding it, against loading the
//   UNet as it is; and building the onnxruntime session from the merged buffer.
// - Switching: requests alternating between the two cached sets, against requests repeating one set;
//   the difference is what a switch costs (nothing is merged or loaded again).
// - Memory: the resident set size each cached set adds.
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Engine } from '../src/diffusion/engine.ts';
import { type FixtureOptions } from '../src/diffusion/fixtures/index.ts';
import { Adaptation } from '../src/diffusion/lora/adapt.ts';
import { WeightIndex } from '../src/diffusion/lora/weights.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../src/diffusion/model-folder.ts';
import { OnnxModel } from '../src/diffusion/onnx-model.ts';
import { float32ToFloat16 } from '../src/diffusion/onnx/float16.ts';
import { decodeModel } from '../src/diffusion/onnx/proto.ts';
import { resolveRequest, type GenerateParams } from '../src/diffusion/request.ts';
import { TorchGenerator } from '../src/diffusion/random.ts';
import type { BenchRow } from './index.ts';
import { cachedFixture, median } from './lib/common.ts';

const FIXTURE: FixtureOptions = { unetChannels: [640, 1280] };
const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out', 'lora');
const FIXTURE_DIR = join(OUT, 'model');
const ROUNDS = 3;
const SWITCHES = 6;
const PARAMS: GenerateParams = { prompt: 'a photo of a cat', steps: 1, scheduler: 'EULER', seed: 1 };
const MB = 1024 * 1024;


async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, performance.now() - started];
}

/** A full collection before each memory reading, so that merge buffers already dropped do not count. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** A kohya LoRA over the modules of the UNet (and text encoder) that `pick` selects, written as F16 as trainers save them. */
async function writeLora(path: string, model: ModelFolderInfo, rank: number, pick: (module: string, op: string) => boolean): Promise<{ modules: number; bytes: number }> {
  const rng = new TorchGenerator(rank);
  const header: Record<string, unknown> = { __metadata__: { ss_network_dim: String(rank), ss_network_alpha: String(rank / 2) } };
  const parts: Buffer[] = [];
  let offset = 0;
  const add = (key: string, shape: number[], values: Float32Array) => {
    const bytes = Buffer.from(float32ToFloat16(values).buffer);
    header[key] = { dtype: 'F16', shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  };
  let modules = 0;
  for (const [prefix, file] of [['lora_unet', model.paths.unet], ['lora_te', model.paths.textEncoder]] as const) {
    const index = new WeightIndex(decodeModel(new Uint8Array(await readFile(file))));
    for (const module of index.modules) {
      const slot = index.get(module)!;
      if (slot.node.opType === 'Gather' || !pick(module, slot.node.opType)) continue;
      const dims = slot.transposed ? [slot.initializer.dims[1], slot.initializer.dims[0]] : slot.initializer.dims;
      const [out, ...fanIn] = dims;
      const key = `${prefix}_${module.replaceAll('.', '_')}`;
      add(`${key}.lora_down.weight`, [rank, ...fanIn], rng.randn(rank * fanIn.reduce((a, b) => a * b, 1)).map((v) => v * 0.01));
      add(`${key}.lora_up.weight`, [out, rank, ...fanIn.slice(1).map(() => 1)], rng.randn(out * rank).map((v) => v * 0.01));
      add(`${key}.alpha`, [], Float32Array.of(rank / 2));
      modules++;
    }
  }
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  await writeFile(path, Buffer.concat([prefix, json, ...parts]));
  return { modules, bytes: 8 + json.length + offset };
}


export async function benchLora(): Promise<BenchRow[]> {
  const gc = collector();
  await cachedFixture(FIXTURE_DIR, FIXTURE);
  const model = await inspectModelFolder(FIXTURE_DIR);
  const locon = join(OUT, 'locon.safetensors');
  const attention = join(OUT, 'attention.safetensors');
  const loconFile = await writeLora(locon, model, 32, () => true);
  const attentionFile = await writeLora(attention, model, 16, (module, op) => op === 'MatMul' && /attn[12]\.to_/.test(module));
  const unetBytes = (await readFile(model.paths.unet)).length;
  const rows: BenchRow[] = [
    { metric: 'fixture UNet', value: Math.round(unetBytes / MB), unit: 'MB', note: `fp32, channels ${FIXTURE.unetChannels!.join('/')}` },
    { metric: 'LoCon LoRA', value: Math.round(loconFile.bytes / MB), unit: 'MB', note: `rank 32, ${loconFile.modules} modules (every Linear and Conv), F16` },
    { metric: 'attention LoRA', value: Math.round(attentionFile.bytes / MB), unit: 'MB', note: `rank 16, ${attentionFile.modules} modules (attn1/attn2), F16` },
  ];

  // Memory and switching first, while the process has allocated nothing else. Sets of the attention
  // LoRA at different weights are different cache entries; the first one's merge buffers, freed but
  // kept by the allocator, serve the next ones, so memory is read from the second set on.
  const switching: BenchRow[] = [];
  const engine = new Engine({ cacheBudgetBytes: 64 * 1024 * MB });
  try {
    const run = async (loras: GenerateParams['loras']) => engine.run(model, await resolveRequest(model, { ...PARAMS, loras }));
    const rss = () => {
      gc();
      return process.memoryUsage().rss;
    };
    const rssBefore = rss();
    await run(undefined);
    const rssSets = [rss()];
    const firstUse: number[] = [];
    for (const weight of [0.5, 0.6, 0.7, 0.8]) {
      firstUse.push((await timed(() => run([{ name: 'attention', path: attention, weight }])))[1]);
      rssSets.push(rss());
    }
    const loconSet = [{ name: 'locon', path: locon, weight: 0.8 }];
    const loconFirstUse = (await timed(() => run(loconSet)))[1];
    const sets = [loconSet, [{ name: 'attention', path: attention, weight: 0.8 }]];
    const alternating: number[] = [];
    const repeating: number[] = [];
    for (let i = 0; i < SWITCHES; i++) {
      alternating.push((await timed(() => run(sets[i % 2])))[1]);
      repeating.push((await timed(() => run(sets[1])))[1]);
    }
    const perSet = (rssSets[4] - rssSets[1]) / 3;
    switching.push(
      { metric: 'first request with a LoCon set', value: loconFirstUse, unit: 'ms', note: 'read, merge, four sessions, 1 step 64×64' },
      { metric: 'first request with an attention set', value: median(firstUse), unit: 'ms', note: 'read, merge, four sessions, 1 step 64×64' },
      { metric: 'request switching between cached sets', value: median(alternating), unit: 'ms', note: `median of ${SWITCHES}, 1 step 64×64` },
      { metric: 'request repeating one cached set', value: median(repeating), unit: 'ms', note: `median of ${SWITCHES}, the same request` },
      { metric: 'switch cost', value: median(alternating) - median(repeating), unit: 'ms', note: 'difference of the two medians' },
      { metric: 'RSS of the bare model', value: Math.round((rssSets[0] - rssBefore) / MB), unit: 'MB', note: 'its four sessions' },
      { metric: 'RSS per cached LoRA set', value: Math.round(perSet / MB), unit: 'MB', note: 'sets 2–4: each holds its own four sessions' },
    );
  } finally {
    await engine.close();
  }

  // Merging, each step timed on its own; the median of ROUNDS.
  for (const [label, path] of [['LoCon', locon], ['attention', attention]] as const) {
    const times = { read: [] as number[], merge: [] as number[], session: [] as number[], plain: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      const [plain, plainMs] = await timed(() => OnnxModel.load(model.paths.unet));
      await plain.release();
      const [adaptation, readMs] = await timed(() => Adaptation.prepare(model, { loras: [{ name: label, path, weight: 0.8 }], embeddings: [] }));
      const [buffer, mergeMs] = await timed(async () => (await adaptation.unet(model.paths.unet))!);
      const [session, sessionMs] = await timed(() => OnnxModel.fromBuffer(model.paths.unet, buffer));
      await session.release();
      times.read.push(readMs);
      times.merge.push(mergeMs);
      times.session.push(sessionMs);
      times.plain.push(plainMs);
    }
    rows.push(
      { metric: `${label}: read LoRA file`, value: median(times.read), unit: 'ms', note: `median of ${ROUNDS}` },
      { metric: `${label}: decode + merge + encode UNet`, value: median(times.merge), unit: 'ms', note: `median of ${ROUNDS}` },
      { metric: `${label}: session from merged buffer`, value: median(times.session), unit: 'ms', note: `median of ${ROUNDS}` },
      { metric: `${label}: UNet session from file, no LoRA`, value: median(times.plain), unit: 'ms', note: 'the load a merge adds to' },
    );
  }
  return [...rows, ...switching];
}
