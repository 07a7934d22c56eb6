// Access to ../shared/reference (diffusers' own outputs). Parity tests skip, saying so, when it is absent.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The reference folder, or null when this checkout has no ../shared beside it. */
export const referenceDir: string | null = (() => {
  const dir = process.env.SDQL_REFERENCE_DIR ?? join(repoRoot, '../shared/reference');
  return existsSync(join(dir, 'reference.json')) ? dir : null;
})();

/** Pass as `{ skip }` to node:test so the report says why a parity test did not run. */
export const skipWithoutReference: string | false = referenceDir
  ? false
  : 'skipped: ../shared/reference is absent (set SDQL_REFERENCE_DIR to run parity tests)';

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
    lora?: { name: string; weight: number };
    scheduler_config_override?: Record<string, unknown>;
  };
  images: { png: string; npy: string; seed: number }[];
  prompt_ids: number[];
}

export interface ReferenceJson {
  cases: ReferenceCase[];
  tokens: { text: string; ids: number[] }[];
  randn: { seed: number; shape: number[]; values: number[] }[];
}

export function loadReference(): ReferenceJson {
  if (!referenceDir) throw new Error('reference folder absent');
  return JSON.parse(readFileSync(join(referenceDir, 'reference.json'), 'utf8')) as ReferenceJson;
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

/** A case's request in our parameter names (GenerateParams and GenerateInput share them), without its init image. */
export function caseParams(c: ReferenceCase) {
  const k = c.case;
  return {
    prompt: k.prompt,
    negativePrompt: k.negative_prompt,
    width: k.width,
    height: k.height,
    steps: k.steps,
    guidanceScale: k.guidance_scale,
    guidanceRescale: k.guidance_rescale,
    scheduler: k.scheduler,
    seed: k.seed,
    numImages: k.num_images,
    eta: k.eta,
    strength: k.strength,
  };
}
