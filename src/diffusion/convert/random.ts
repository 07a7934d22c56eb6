// Models of real architectures with random weights from a seeded generator, for benchmarks and tests:
// an ONNX pipeline folder (SD 1.5-size: `buildRandomPipeline(dir, SD15)`), a lone UNet (SDXL-size:
// `buildRandomUNet(dir, SDXL_UNET)`), and single-file LDM checkpoints (`writeRandomCheckpoint`).
// Weights stream to disk as they are drawn: a model of gigabytes is never held in memory.
import { closeSync, openSync, writeSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ExternalDataSink, Net, type Init, type ParamSource, type Precision } from '../fixtures/net.ts';
import { writeFixtureTokenizer } from '../fixtures/index.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { float32ToFloat16 } from '../onnx/float16.ts';
import type { PipelineArch, UNetArch } from './architecture.ts';
import { ldmLocators, transpose, type TextLayout } from './checkpoint.ts';
import { writeGraph, writePipelineConfigs } from './convert.ts';
import { OPEN_CLIP_PREFIX, type LdmRef } from './ldm-keys.ts';
import { buildClipTextModel } from './text-encoder.ts';
import { buildUNet2DCondition } from './unet.ts';
import { buildVaeDecoder, buildVaeEncoder } from './vae.ts';

/**
 * Seeded weights of each parameter's variance, uniformly distributed: torch's normal generator
 * (RandomSource) costs near a microsecond a value in JavaScript, too slow for a billion weights;
 * timing and memory do not depend on the distribution.
 */
export class UniformSource implements ParamSource {
  private state: number;

  constructor(seed: number) {
    this.state = (seed * 2654435761 + 1) >>> 0 || 1;
  }

  get(_name: string, shape: number[], init: Init): Float32Array {
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const scale = init.std * Math.sqrt(3) * 2 ** -31;
    const mean = init.mean ?? 0;
    let x = this.state;
    for (let i = 0; i < out.length; i++) {
      // xorshift32
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = mean + scale * (x | 0);
    }
    this.state = x >>> 0;
    return out;
  }
}

type Builders = Record<'text_encoder' | 'unet' | 'vae_encoder' | 'vae_decoder', (net: Net) => ModelProto>;

/** The graph builders of `arch`, in the order their seeds are given. */
function builders(arch: PipelineArch): Builders {
  return {
    text_encoder: (net) => buildClipTextModel(net, { ...arch.textEncoder, inputIds: 'int32' }),
    unet: (net) => buildUNet2DCondition(net, arch.unet),
    vae_encoder: (net) => buildVaeEncoder(net, arch.vae),
    vae_decoder: (net) => buildVaeDecoder(net, arch.vae),
  };
}

/** Each submodel draws from its own stream: seed·16 + 1, 2, 3, 4. */
const submodelSeed = (seed: number, index: number) => seed * 16 + index + 1;

/**
 * An ONNX pipeline folder of architecture `arch` (e.g. SD15) with random weights: every graph's weights
 * in external data, the fixture's byte-level tokenizer unless `vocabDir` gives CLIP's.
 */
export async function buildRandomPipeline(dir: string, arch: PipelineArch, options: { seed?: number; vocabDir?: string } = {}): Promise<void> {
  const seed = options.seed ?? 0;
  for (const [i, [submodel, build]] of Object.entries(builders(arch)).entries()) {
    await writeGraph(join(dir, submodel), new UniformSource(submodelSeed(seed, i)), true, build);
  }
  await writePipelineConfigs(dir, arch);
  const { vocabDir } = options;
  if (vocabDir) for (const file of ['vocab.json', 'merges.txt']) await copyFile(join(vocabDir, file), join(dir, 'tokenizer', file));
  else await writeFixtureTokenizer(join(dir, 'tokenizer'));
}

/**
 * A UNet alone (e.g. SDXL_UNET): `dir/model.onnx` with its weights in `dir/model.onnx_data`; fp16 as
 * Optimum's fp16 export has it (float16 weights, inputs and outputs), the same draws rounded.
 */
export async function buildRandomUNet(dir: string, unet: UNetArch, options: { seed?: number; precision?: Precision } = {}): Promise<void> {
  await writeGraph(dir, new UniformSource(submodelSeed(options.seed ?? 0, 1)), true, (net) => buildUNet2DCondition(net, unet), options.precision);
}

/** Records the (LDM key, shape) of every parameter a build asks for, in order, and gives zeros. */
class LayoutRecorder implements ParamSource {
  readonly tensors = new Map<string, { shape: number[]; parts: number }>();

  constructor(private readonly locate: (name: string) => LdmRef) {}

  get(name: string, shape: number[], _init: Init): Float32Array {
    const ref = this.locate(name);
    const rows = ref.rows;
    const stored = rows ? [shape[0] * rows.of, ...shape.slice(1)] : ldmShape(ref.key, shape);
    this.tensors.set(ref.key, { shape: stored, parts: rows?.of ?? 1 });
    return new Float32Array(shape.reduce((a, b) => a * b, 1));
  }
}

/** LDM stores the VAE's attention projections as 1×1 convolutions. */
function ldmShape(key: string, shape: number[]): number[] {
  return /\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(key) ? [...shape, 1, 1] : shape;
}

/** Draws random values (as buildRandomPipeline's source does for the same build) and writes them at their place in the checkpoint. */
class CheckpointWriter implements ParamSource {
  private readonly random: UniformSource;

  constructor(
    seed: number,
    private readonly fd: number,
    private readonly locate: (name: string) => LdmRef,
    private readonly offsets: Map<string, number>,
    private readonly dtype: 'F32' | 'F16',
  ) {
    this.random = new UniformSource(seed);
  }

  get(name: string, shape: number[], init: Init, transposed = false): Float32Array {
    const values = this.random.get(name, shape, init);
    const ref = this.locate(name);
    // Asked for as [in, out]: stored as torch's [out, in].
    const stored = transposed ? transpose(values, shape[1], shape[0]) : values;
    const encoded = this.dtype === 'F16' ? float32ToFloat16(stored) : stored;
    const bytes = new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    const at = this.offsets.get(ref.key)! + (ref.rows ? ref.rows.index * bytes.length : 0);
    for (let done = 0; done < bytes.length; ) done += writeSync(this.fd, bytes, done, bytes.length - done, at + done);
    return values;
  }
}

/**
 * A single-file checkpoint in the LDM layout of architecture `arch`, with the random weights
 * buildRandomPipeline(…, arch, { seed }) gives its graphs; `textLayout` 'open-clip' writes SD 2.x's
 * text encoder (with the last OpenCLIP layer, which conversion leaves out, as real SD 2.x files have).
 */
export async function writeRandomCheckpoint(
  path: string,
  arch: PipelineArch,
  options: { seed?: number; dtype?: 'F32' | 'F16'; textLayout?: TextLayout; metadata?: Record<string, string> } = {},
): Promise<void> {
  const seed = options.seed ?? 0;
  const dtype = options.dtype ?? 'F32';
  const textLayout = options.textLayout ?? (arch.family === 'SD2' ? 'open-clip' : 'clip');
  const locators = ldmLocators(arch, textLayout);
  const locate = (submodel: string) => (submodel === 'unet' ? locators.unet : submodel === 'text_encoder' ? locators.textEncoder : locators.vae);
  const entries = Object.entries(builders(arch));

  // First the layout (a dry build that writes nothing), so that the header can go first.
  const layout = new Map<string, { shape: number[] }>();
  const devNull = openSync('/dev/null', 'w');
  try {
    for (const [submodel, build] of entries) {
      const recorder = new LayoutRecorder(locate(submodel));
      build(new Net(recorder, 'fp32', new ExternalDataSink(devNull, 'unused')));
      for (const [key, t] of recorder.tensors) layout.set(key, t);
    }
  } finally {
    closeSync(devNull);
  }
  const extra = new Map<string, number[]>();
  if (textLayout === 'open-clip') {
    const { hiddenSize: d, intermediateSize: m, layers } = arch.textEncoder;
    const last = `${OPEN_CLIP_PREFIX}transformer.resblocks.${layers}`;
    for (const [name, shape] of Object.entries({
      'ln_1.weight': [d], 'ln_1.bias': [d], 'attn.in_proj_weight': [3 * d, d], 'attn.in_proj_bias': [3 * d], 'attn.out_proj.weight': [d, d], 'attn.out_proj.bias': [d],
      'ln_2.weight': [d], 'ln_2.bias': [d], 'mlp.c_fc.weight': [m, d], 'mlp.c_fc.bias': [m], 'mlp.c_proj.weight': [d, m], 'mlp.c_proj.bias': [d],
    })) extra.set(`${last}.${name}`, shape);
  }
  for (const [key, shape] of extra) layout.set(key, { shape });

  const elementBytes = dtype === 'F16' ? 2 : 4;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...options.metadata } };
  const offsets = new Map<string, number>();
  let offset = 0;
  for (const [key, { shape }] of layout) {
    const bytes = shape.reduce((a, b) => a * b, 1) * elementBytes;
    header[key] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offsets.set(key, offset);
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const dataStart = 8 + Buffer.byteLength(json);

  await mkdir(dirname(path), { recursive: true });
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, Buffer.concat([prefix, Buffer.from(json)]), 0, dataStart, 0);
    const shifted = new Map([...offsets].map(([k, v]) => [k, v + dataStart]));
    for (const [i, [submodel, build]] of entries.entries()) {
      const writer = new CheckpointWriter(submodelSeed(seed, i), fd, locate(submodel), shifted, dtype);
      const sink = openSync('/dev/null', 'w');
      try {
        build(new Net(writer, 'fp32', new ExternalDataSink(sink, 'unused')));
      } finally {
        closeSync(sink);
      }
    }
    // The layer conversion drops: zeros.
    for (const [key, shape] of extra) {
      const bytes = new Uint8Array(shape.reduce((a, b) => a * b, 1) * elementBytes);
      writeSync(fd, bytes, 0, bytes.length, shifted.get(key)!);
    }
  } finally {
    closeSync(fd);
  }
}
