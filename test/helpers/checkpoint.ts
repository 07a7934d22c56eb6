// The reference single-file checkpoint (../shared/reference/checkpoint) and the variants the tests
// build from it: an fp16 copy, and a copy carrying EMA weights and schedule buffers beside the model.
import { join } from 'node:path';
import { writeSafetensors } from '../../src/diffusion/fixtures/adapters.ts';
import { Net } from '../../src/diffusion/fixtures/net.ts';
import { vaeLdmKey } from '../../src/diffusion/convert/ldm-keys.ts';
import { buildVaeDecoder, buildVaeEncoder } from '../../src/diffusion/convert/vae.ts';
import { inspectVaeFile } from '../../src/diffusion/convert/vae-file.ts';
import { readSafetensorsFloat32, readSafetensorsHeader } from '../../src/diffusion/safetensors.ts';
import { referenceDir } from './reference.ts';

const models = join(referenceDir, 'checkpoint', 'models');

export const checkpointRef = {
  file: join(models, 'tiny-sd15.safetensors'),
  yaml: join(models, 'tiny-sd15.yaml'),
  vectors: join(models, 'tiny-sd15.vectors.json'),
  /** CLIP's vocabulary and merges (checkpoints do not carry them). */
  vocabDir: join(models, 'tiny-sd15', 'tokenizer'),
};

async function readAll(path: string) {
  const header = await readSafetensorsHeader(path);
  return { header, tensors: await readSafetensorsFloat32(path, header) };
}

/** `source` with every tensor stored as F16. */
export async function fp16Copy(source: string, target: string): Promise<void> {
  const { header, tensors } = await readAll(source);
  await writeSafetensors(target, Object.fromEntries([...tensors].map(([name, t]) => [name, { ...t, dtype: 'F16' as const }])), header.metadata);
}

/**
 * `source` plus what a training checkpoint carries: `model_ema.*` weights (LDM's names without dots,
 * with other values, so that using them would show) and the noise schedule buffers.
 */
export async function emaCopy(source: string, target: string): Promise<void> {
  const { header, tensors } = await readAll(source);
  const out = Object.fromEntries(tensors);
  for (const [name, t] of tensors) {
    if (!name.startsWith('model.diffusion_model.')) continue;
    out[`model_ema.${name.slice('model.'.length).replaceAll('.', '')}`] = { shape: t.shape, data: t.data.map((v) => v * 0.5 + 0.01) };
  }
  const steps = 1000;
  const betas = Float32Array.from({ length: steps }, (_, i) => (Math.sqrt(0.00085) + ((Math.sqrt(0.012) - Math.sqrt(0.00085)) * i) / (steps - 1)) ** 2);
  const cumprod = new Float32Array(steps);
  betas.reduce((acc, b, i) => (cumprod[i] = acc * (1 - b)), 1);
  Object.assign(out, {
    betas: { shape: [steps], data: betas },
    alphas_cumprod: { shape: [steps], data: cumprod },
    alphas_cumprod_prev: { shape: [steps], data: Float32Array.from({ length: steps }, (_, i) => (i ? cumprod[i - 1] : 1)) },
    'model_ema.decay': { shape: [], data: Float32Array.of(0.9999) },
    'model_ema.num_updates': { shape: [], data: Float32Array.of(1000) },
    'cond_stage_model.transformer.text_model.embeddings.position_ids': { shape: [1, 77], data: Float32Array.from({ length: 77 }, (_, i) => i) },
  });
  await writeSafetensors(target, out, header.metadata);
}

/**
 * The VAE of checkpoint `source` as a separate VAE file: in the LDM layout without `first_stage_model.`
 * (`ldm`) or under diffusers' AutoencoderKL names (`diffusers`), each weight through `change`.
 */
export async function vaeFileOf(source: string, target: string, layout: 'ldm' | 'diffusers', change: (name: string, data: Float32Array) => Float32Array = (_n, d) => d): Promise<void> {
  const { tensors } = await readAll(source);
  const prefix = 'first_stage_model.';
  const { arch } = await inspectVaeFile(source);
  // The diffusers names are those the graph builders ask for, each from the LDM key vaeLdmKey gives.
  const names: string[] = [];
  const recorder = { get: (name: string, shape: number[]) => (names.push(name), new Float32Array(shape.reduce((a, b) => a * b, 1))) };
  buildVaeEncoder(new Net(recorder, 'fp32'), arch);
  buildVaeDecoder(new Net(recorder, 'fp32'), arch);
  const renamed: [string, string][] =
    layout === 'ldm'
      ? [...tensors.keys()].filter((k) => k.startsWith(prefix)).map((k) => [k.slice(prefix.length), k])
      : names.map((n) => [n, vaeLdmKey(n, arch.blockOutChannels.length)]);
  const out = Object.fromEntries(renamed.map(([name, key]) => {
    const t = tensors.get(key)!;
    return [name, { shape: t.shape, data: change(name, t.data) }];
  }));
  await writeSafetensors(target, out);
}
