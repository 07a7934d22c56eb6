// Diffusers' own outputs in ../shared/reference (or SDQL_REFERENCE_DIR): the base set at its root and
// further sets in sub-folders, each with its reference.json, images and README. The tests that read it
// must not pass without it, so importing this module fails, saying what is missing, when it is absent.
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function missing(path: string): Error {
  return new Error(
    `${path} is missing: the parity tests compare the engine with the images diffusers 0.21.4 made there; ` +
      'put the shared reference folder at ../shared/reference beside this checkout, or set SDQL_REFERENCE_DIR to where it is.',
  );
}

/** The reference folder's root. */
export const referenceDir: string = (() => {
  const dir = resolve(process.env.SDQL_REFERENCE_DIR ?? join(repoRoot, '../shared/reference'));
  if (!existsSync(join(dir, 'reference.json'))) throw missing(join(dir, 'reference.json'));
  return dir;
})();

/**
 * The sets whose cases run through the engine and the API: the root and these sub-folders. The
 * other sub-folders (checkpoint/) join this list with the features they test.
 */
export const PARITY_SETS = ['', 'schedulers', 'inpaint', 'variation', 'sampling', 'clip-skip', 'sdxl'] as const;

export interface ReferenceCase {
  case: {
    name: string;
    model: string;
    prompt: string;
    negative_prompt?: string;
    steps: number;
    guidance_scale: number;
    guidance_rescale?: number;
    eta?: number;
    scheduler: string;
    seed: number;
    num_images?: number;
    width?: number;
    height?: number;
    strength?: number;
    init_image?: string;
    /** 8-bit grey, white = repaint (inpaint/). */
    mask_image?: string;
    lora?: { name: string; weight: number };
    scheduler_config_override?: Record<string, unknown>;
    variation_seed?: number;
    variation_strength?: number;
    /** The keyword arguments of `SchedulerClass.from_config(config, **scheduler_options)` (sub-folder sets). */
    scheduler_options?: Record<string, unknown>;
    /** AUTOMATIC1111's Clip skip N (clip-skip/). */
    clip_skip?: number;
  };
  /** `noise_npy`: the variation set's initial noise of the image (before init_noise_sigma). */
  images: { png: string; npy: string; seed: number; variation_seed?: number; noise_npy?: string }[];
  prompt_ids: number[];
  /** sdxl/: the tokenizer_2 ids of the prompt. */
  prompt_ids_2?: number[];
}

export interface ReferenceJson {
  cases: ReferenceCase[];
  tokens: { text: string; ids: number[] }[];
  randn: { seed: number; shape: number[]; values: number[] }[];
}

export interface ReferenceSet extends ReferenceJson {
  /** '' for the root, else the sub-folder's name. */
  name: string;
  dir: string;
  /** A file that this set's reference.json names (relative to the set's folder; init images may be in ../). */
  file(path: string): string;
  /** A model folder by name: the set's own models/, else the root's (sub-folders reuse tiny-sd). */
  modelDir(model: string): string;
  /** How a test names a case: its name, after the set's. */
  label(c: ReferenceCase): string;
}

/** The root's set, or a sub-folder's. */
export function loadReference(name = ''): ReferenceSet {
  const dir = join(referenceDir, name);
  const jsonPath = join(dir, 'reference.json');
  if (!existsSync(jsonPath)) throw missing(jsonPath);
  const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as Partial<ReferenceJson>;
  return {
    cases: json.cases ?? [],
    tokens: json.tokens ?? [],
    randn: json.randn ?? [],
    name,
    dir,
    file: (path) => join(dir, path),
    modelDir: (model) => {
      const own = join(dir, 'models', model);
      return existsSync(own) ? own : join(referenceDir, 'models', model);
    },
    label: (c) => (name ? `${name}/${c.case.name}` : c.case.name),
  };
}

/** The reference LoRA file of a case's `lora`. */
export function loraPath(name: string): string {
  return join(referenceDir, 'loras', `${name}.safetensors`);
}

/**
 * Puts a case's model into `modelsDir` as the folder `id`: a link to the reference folder, or, when
 * the case overrides scheduler settings, a copy with them merged into scheduler_config.json (the
 * engine takes such settings from the model folder only). Returns the folder.
 */
export function placeCaseModel(set: ReferenceSet, c: ReferenceCase, modelsDir: string, id = c.case.name): string {
  const source = set.modelDir(c.case.model);
  const dir = join(modelsDir, id);
  const override = c.case.scheduler_config_override;
  if (!override) {
    symlinkSync(source, dir, 'dir');
    return dir;
  }
  cpSync(source, dir, { recursive: true });
  const configPath = join(dir, 'scheduler', 'scheduler_config.json');
  writeFileSync(configPath, JSON.stringify({ ...JSON.parse(readFileSync(configPath, 'utf8')), ...override }));
  return dir;
}

/** Reads a little-endian float32 .npy file (NumPy format 1.x/2.x). */
export function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const buf = readFileSync(path);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const offset = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.subarray(major === 1 ? 10 : 12, offset).toString('latin1');
  if (!header.includes("'<f4'")) throw new Error(`${path}: only little-endian float32 .npy is supported`);
  const shapeText = /'shape': \(([^)]*)\)/.exec(header)?.[1] ?? '';
  const dims = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + offset, buf.byteOffset + buf.length));
  return { shape: dims, data };
}

/** Compares 8-bit images: the share of channel values within 1 level, and the largest difference. */
export function compareImages(actual: Uint8Array, expected: Uint8Array): { within1: number; maxDiff: number } {
  if (actual.length !== expected.length) throw new Error(`image sizes differ: ${actual.length} vs ${expected.length} values`);
  let within1 = 0;
  let maxDiff = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (d <= 1) within1++;
    maxDiff = Math.max(maxDiff, d);
  }
  return { within1: within1 / actual.length, maxDiff };
}

/**
 * Asserts that 8-bit RGB pixels match a reference PNG within the reference README's tolerance: 99% of
 * channel values within 1 level, none off by more than 4. Returns the measurement, for the report.
 */
export async function assertMatchesPng(actual: Uint8Array, pngPath: string): Promise<string> {
  const expected = await sharp(pngPath).removeAlpha().raw().toBuffer();
  const { within1, maxDiff } = compareImages(actual, expected);
  const measured = `${(within1 * 100).toFixed(2)}% within 1 level, max ${maxDiff}`;
  assert.ok(within1 >= 0.99 && maxDiff <= 4, `${pngPath}: ${measured}`);
  return measured;
}

/**
 * A case's request in our parameter names (GenerateParams and GenerateInput share them), without its
 * init image and mask. With a mask: no blur and no restoring of the unmasked pixels, since diffusers'
 * pipeline does neither. `use_karras_sigmas` in its scheduler options is our KARRAS schedule type:
 * the case's scheduler name less its _KARRAS (EULER_KARRAS is EULER with KARRAS); algorithm_type is
 * in the name.
 */
export function caseParams(c: ReferenceCase) {
  const k = c.case;
  const karras = k.scheduler_options?.use_karras_sigmas === true;
  const known = new Set(['use_karras_sigmas', 'algorithm_type']);
  const unknown = Object.keys(k.scheduler_options ?? {}).filter((key) => !known.has(key));
  if (unknown.length) throw new Error(`${k.name}: scheduler option ${unknown.join(', ')} has no request field`);
  return {
    ...(k.mask_image ? { maskBlur: 0, restoreUnmasked: false } : {}),
    prompt: k.prompt,
    negativePrompt: k.negative_prompt,
    width: k.width,
    height: k.height,
    steps: k.steps,
    guidanceScale: k.guidance_scale,
    guidanceRescale: k.guidance_rescale,
    scheduler: karras ? k.scheduler.replace(/_KARRAS$/, '') : k.scheduler,
    scheduleType: karras ? 'KARRAS' : undefined,
    clipSkip: k.clip_skip,
    seed: k.seed,
    numImages: k.num_images,
    eta: k.eta,
    strength: k.strength,
    variationSeed: k.variation_seed,
    variationStrength: k.variation_strength,
  };
}
