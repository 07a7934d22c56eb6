// What a Stable Diffusion folder in the diffusers/Optimum ONNX layout holds and can do, read from its
// JSON configs and its ONNX graph inputs only (no weights are loaded). A folder with problems is
// still described, with `error` saying what is wrong, so that listings show it.
import { access, readFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { inspectOnnx, type OnnxSummary } from './onnx/inspect.ts';

/** Told by the model's own numbers, never guessed: UNKNOWN when they fit no known family. */
export type ModelFamily = 'SD1' | 'SD2' | 'SDXL' | 'UNKNOWN';

export interface ModelPaths {
  /** The text encoder; an SDXL refiner's only one is text_encoder_2 (see SdxlConfig.textEncoder2Only). */
  textEncoder: string;
  unet: string;
  vaeDecoder: string;
  vaeEncoder?: string;
  /** The folder with vocab.json and merges.txt (tokenizer_2 with text_encoder_2 alone). */
  tokenizer: string;
  schedulerConfig: string;
  /** SDXL's second text encoder (CLIPTextModelWithProjection) and its tokenizer, beside the first. */
  textEncoder2?: string;
  tokenizer2?: string;
}

/** What SDXL's pipelines take from the model beyond SD's (diffusers' StableDiffusionXL*Pipeline configs). */
export interface SdxlConfig {
  /** model_index.json's force_zeros_for_empty_prompt (diffusers' default true): an empty negative prompt is zeros. */
  forceZerosForEmptyPrompt: boolean;
  /** The UNet's time_ids per image: 6 (original size, crop top-left, target size) or 5 for refiner-style
   * models (original size, crop top-left, aesthetic score: diffusers' requires_aesthetics_score). */
  timeIds: 5 | 6;
  /** Set for refiners (stable-diffusion-xl-refiner-1.0): no text_encoder, and the UNet attends to
   * text_encoder_2's states alone, which `paths.textEncoder` names (diffusers' text_encoder=None). */
  textEncoder2Only?: true;
}

/** A level of the UNet whose blocks have attention: level i works at the latent size / 2^i. */
export interface AttentionLevel {
  level: number;
  heads: number;
}

export interface ModelFolderInfo {
  /** The folder name (a checkpoint's: its file name without `.safetensors`). */
  id: string;
  /** ONNX: a diffusers/Optimum folder; CHECKPOINT: a single-file checkpoint, converted to one on first use. */
  format: 'ONNX' | 'CHECKPOINT';
  /** A checkpoint's file and the `<id>.yaml` beside it (which may be absent). */
  checkpoint?: { file: string; yaml: string };
  name: string;
  /** Absolute path of the folder. */
  dir: string;
  family: ModelFamily;
  /** False when the folder has an error or its family is not one sdql runs. */
  supported: boolean;
  /** The scheduler config's prediction_type: 'epsilon', 'v_prediction' or 'sample'. */
  predictionType: string;
  /** Pixels per latent: 2^(number of VAE blocks - 1). */
  vaeScaleFactor: number;
  /** The VAE config's scaling_factor: latents are divided by it before decoding. */
  vaeScalingFactor: number;
  nativeWidth: number;
  nativeHeight: number;
  /** A VAE encoder is present. */
  canImg2img: boolean;
  /** It has a VAE encoder, so it takes a mask (inpainting, outpainting): with a 9-channel inpainting UNet
   * (latents, mask, masked-image latents), or a plain one by latent blending. */
  canInpaint: boolean;
  /** Of the UNet's inputs. */
  precision: 'fp32' | 'fp16';
  /** Every file of the folder. */
  sizeBytes: number;
  unetInChannels: number;
  /** Width of the text embeddings the UNet attends to, when the folder tells. */
  crossAttentionDim?: number;
  /** The UNet's levels with attention and their heads, when its config tells: its scores are a UNet call's peak memory (sub-batch.ts) and what the pixel limit derives from (limits.ts). */
  attentionLevels?: AttentionLevel[];
  /** Transformer layers of the text encoder (text_encoder/config.json), when the folder tells: clip skip reaches back as far as its embeddings. */
  textEncoderLayers?: number;
  paths: ModelPaths;
  /** The SHA-256 of a separate VAE file whose graphs `paths` name instead of the model's own (withVae). */
  vaeSha256?: string;
  /** Set for SDXL models. */
  sdxl?: SdxlConfig;
  schedulerConfig: Record<string, unknown>;
  /** What is wrong with the folder; absent when it is usable. */
  error?: string;
}

// diffusers' defaults for configs that leave these out.
const DEFAULT_VAE_SCALING_FACTOR = 0.18215;
const DEFAULT_VAE_SCALE_FACTOR = 8;
const DEFAULT_PREDICTION_TYPE = 'epsilon';
/** OnnxStableDiffusionPipeline's default size when nothing says the model's own. */
const DEFAULT_NATIVE_SIZE = 512;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const exists = (path: string) => access(path).then(
  () => true,
  () => false,
);

/** Parses a JSON object file: undefined when the file is absent, and a problem when it is malformed. */
async function readJsonObject(path: string, problems: string[], label: string): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const value: unknown = JSON.parse(text);
    if (isObject(value)) return value;
    problems.push(`${label} is not a JSON object`);
  } catch (error) {
    problems.push(`${label} is not valid JSON (${(error as Error).message})`);
  }
  return undefined;
}

/** Every file under `dir`; symbolic links to files count (Hugging Face caches link to blobs). */
async function folderSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await folderSize(path);
    else total += await stat(path).then((s) => (s.isFile() ? s.size : 0), () => 0);
  }
  return total;
}

/** Reads one submodel's graph and checks that its external data files exist. */
async function inspectSubmodel(dir: string, rel: string, problems: string[]): Promise<OnnxSummary | undefined> {
  const path = join(dir, rel);
  let summary: OnnxSummary;
  try {
    summary = await inspectOnnx(path);
  } catch (error) {
    problems.push(`${rel}: ${(error as Error).message.replace(path, rel)}`);
    return undefined;
  }
  const missing: string[] = [];
  for (const file of summary.externalDataFiles) {
    if (!(await exists(resolve(dirname(path), file)))) missing.push(file);
  }
  if (missing.length) problems.push(`${rel} needs external data ${missing.join(', ')}, which ${missing.length > 1 ? 'are' : 'is'} missing`);
  return summary;
}

const positive = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined);

function familyOf(crossAttentionDim: number | undefined, hasTextEncoder2: boolean): ModelFamily {
  if (hasTextEncoder2 || crossAttentionDim === 2048) return 'SDXL';
  if (crossAttentionDim === 768) return 'SD1';
  if (crossAttentionDim === 1024) return 'SD2';
  return 'UNKNOWN';
}

/**
 * The levels with attention as UNet2DConditionModel builds them: a down block type with attention
 * (CrossAttnDownBlock2D; DownBlock2D has none) at each level, and its heads from num_attention_heads,
 * else attention_head_dim (which counts heads in SD's configs): one number for every level, or one per
 * level. Without down_block_types every level has attention, as SD 1.x/2.x; without heads, undefined.
 */
function attentionLevelsOf(unetConfig: Json): AttentionLevel[] | undefined {
  const heads = unetConfig.num_attention_heads ?? unetConfig.attention_head_dim;
  const types = Array.isArray(unetConfig.down_block_types) ? unetConfig.down_block_types : undefined;
  const count = types?.length ?? (Array.isArray(heads) ? heads.length : 1);
  const levels: AttentionLevel[] = [];
  for (let level = 0; level < count; level++) {
    if (types && !(typeof types[level] === 'string' && types[level].includes('Attn'))) continue;
    const h = positive(Array.isArray(heads) ? heads[level] : heads);
    if (h === undefined) return undefined;
    levels.push({ level, heads: h });
  }
  return levels.length ? levels : undefined;
}

/** SDXL's extra conditioning as the folder's UNet and model_index.json tell it; problems for a UNet without it. */
function sdxlConfig(modelIndex: Json, unetInputs: OnnxSummary['inputs'], unetMissing: boolean, textEncoder2Only: boolean, problems: string[]): SdxlConfig {
  const timeIds = unetInputs.find((i) => i.name === 'time_ids');
  if (!unetMissing && (!timeIds || !unetInputs.some((i) => i.name === 'text_embeds'))) {
    problems.push('unet/model.onnx has no text_embeds and time_ids inputs, which an SDXL UNet takes');
  }
  const declared = timeIds?.shape[1];
  // The graph's width decides; a dynamic one leaves it to the config, as diffusers reads it.
  const timeIdCount = typeof declared === 'number' ? declared : modelIndex.requires_aesthetics_score === true ? 5 : 6;
  if (timeIdCount !== 5 && timeIdCount !== 6) problems.push(`unet/model.onnx takes ${timeIdCount} time ids; SDXL UNets take 6 (or 5 with an aesthetic score)`);
  return { forceZerosForEmptyPrompt: modelIndex.force_zeros_for_empty_prompt !== false, timeIds: timeIdCount === 5 ? 5 : 6, ...(textEncoder2Only && { textEncoder2Only }) };
}

/** Describes the model folder `dir`. Never throws for a broken folder: `error` says what is wrong. */
export async function inspectModelFolder(dir: string): Promise<ModelFolderInfo> {
  dir = resolve(dir);
  const problems: string[] = [];
  const paths: ModelPaths = {
    textEncoder: join(dir, 'text_encoder', 'model.onnx'),
    unet: join(dir, 'unet', 'model.onnx'),
    vaeDecoder: join(dir, 'vae_decoder', 'model.onnx'),
    tokenizer: join(dir, 'tokenizer'),
    schedulerConfig: join(dir, 'scheduler', 'scheduler_config.json'),
  };

  const modelIndex = await readJsonObject(join(dir, 'model_index.json'), problems, 'model_index.json');
  if (!(await exists(join(dir, 'model_index.json')))) problems.push('model_index.json is missing');
  const hasTextEncoder2 = (Array.isArray(modelIndex?.text_encoder_2) && modelIndex.text_encoder_2[0] !== null) || (await exists(join(dir, 'text_encoder_2')));
  const unetConfig = (await readJsonObject(join(dir, 'unet', 'config.json'), problems, 'unet/config.json')) ?? {};
  // A refiner has no text_encoder: model_index.json says so, or its UNet attends to text_encoder_2's width.
  const textEncoder2Only =
    hasTextEncoder2 &&
    !(await exists(join(dir, 'text_encoder'))) &&
    ((Array.isArray(modelIndex?.text_encoder) && modelIndex.text_encoder[0] === null) ||
      positive(unetConfig.cross_attention_dim) === positive((await readJsonObject(join(dir, 'text_encoder_2', 'config.json'), problems, 'text_encoder_2/config.json'))?.hidden_size));
  const encoders = textEncoder2Only ? ['text_encoder_2'] : ['text_encoder', ...(hasTextEncoder2 ? ['text_encoder_2'] : [])];
  if (textEncoder2Only) Object.assign(paths, { textEncoder: join(dir, 'text_encoder_2', 'model.onnx'), tokenizer: join(dir, 'tokenizer_2') });
  else if (hasTextEncoder2) Object.assign(paths, { textEncoder2: join(dir, 'text_encoder_2', 'model.onnx'), tokenizer2: join(dir, 'tokenizer_2') });
  const first = textEncoder2Only ? [] : ['text_encoder/model.onnx', 'tokenizer/vocab.json', 'tokenizer/merges.txt'];
  const required = [
    ...first.slice(0, 1),
    'unet/model.onnx',
    'vae_decoder/model.onnx',
    ...first.slice(1),
    'scheduler/scheduler_config.json',
    ...(hasTextEncoder2 ? ['text_encoder_2/model.onnx', 'tokenizer_2/vocab.json', 'tokenizer_2/merges.txt'] : []),
  ];
  const present = await Promise.all(required.map((rel) => exists(join(dir, rel))));
  const missing = required.filter((_, i) => !present[i]);
  if (missing.length) problems.push(`missing ${missing.join(', ')}`);

  const schedulerConfig = (await readJsonObject(paths.schedulerConfig, problems, 'scheduler/scheduler_config.json')) ?? {};
  const textEncoderConfig = (await readJsonObject(join(dir, encoders[0], 'config.json'), problems, `${encoders[0]}/config.json`)) ?? {};
  const vaeConfig =
    (await readJsonObject(join(dir, 'vae_decoder', 'config.json'), problems, 'vae_decoder/config.json')) ??
    (await readJsonObject(join(dir, 'vae_encoder', 'config.json'), problems, 'vae_encoder/config.json')) ??
    {};

  const hasVaeEncoder = await exists(join(dir, 'vae_encoder', 'model.onnx'));
  const submodels = [...encoders.map((e) => `${e}/model.onnx`), 'unet/model.onnx', 'vae_decoder/model.onnx', ...(hasVaeEncoder ? ['vae_encoder/model.onnx'] : [])];
  const summaries = new Map<string, OnnxSummary | undefined>();
  for (const rel of submodels) {
    if (!missing.includes(rel)) summaries.set(rel, await inspectSubmodel(dir, rel, problems));
  }
  const vaeEncoder = summaries.get('vae_encoder/model.onnx');
  if (vaeEncoder) paths.vaeEncoder = join(dir, 'vae_encoder', 'model.onnx');

  const unetInputs = summaries.get('unet/model.onnx')?.inputs ?? [];
  const sample = unetInputs.find((i) => i.name === 'sample');
  const context = unetInputs.find((i) => i.name === 'encoder_hidden_states');
  const unetInChannels = positive(sample?.shape[1]) ?? positive(unetConfig.in_channels) ?? 4;
  const crossAttentionDim = positive(unetConfig.cross_attention_dim) ?? positive(context?.shape[2]);

  const vaeBlocks = Array.isArray(vaeConfig.block_out_channels) ? vaeConfig.block_out_channels.length : 0;
  const vaeScaleFactor = vaeBlocks > 0 ? 2 ** (vaeBlocks - 1) : DEFAULT_VAE_SCALE_FACTOR;
  // sample_size is one number, or [height, width] in some configs.
  const sampleSize = Array.isArray(unetConfig.sample_size) ? unetConfig.sample_size : [unetConfig.sample_size, unetConfig.sample_size];
  const latentHeight = positive(sampleSize[0]) ?? positive(sample?.shape[2]);
  const latentWidth = positive(sampleSize[1]) ?? positive(sample?.shape[3]);

  const textEncoderLayers = positive(textEncoderConfig.num_hidden_layers);
  const attentionLevels = attentionLevelsOf(unetConfig);
  const family = familyOf(crossAttentionDim, hasTextEncoder2);
  const sdxl = family === 'SDXL' ? sdxlConfig(modelIndex ?? {}, unetInputs, missing.includes('unet/model.onnx'), textEncoder2Only, problems) : undefined;
  const error = problems.length ? problems.join('; ') : undefined;
  const id = basename(dir);
  return {
    id,
    format: 'ONNX',
    name: id,
    dir,
    family,
    supported: !error,
    predictionType: typeof schedulerConfig.prediction_type === 'string' ? schedulerConfig.prediction_type : DEFAULT_PREDICTION_TYPE,
    vaeScaleFactor,
    vaeScalingFactor: positive(vaeConfig.scaling_factor) ?? DEFAULT_VAE_SCALING_FACTOR,
    nativeWidth: latentWidth ? latentWidth * vaeScaleFactor : DEFAULT_NATIVE_SIZE,
    nativeHeight: latentHeight ? latentHeight * vaeScaleFactor : DEFAULT_NATIVE_SIZE,
    canImg2img: vaeEncoder !== undefined,
    canInpaint: vaeEncoder !== undefined,
    precision: sample?.elemType === 'float16' ? 'fp16' : 'fp32',
    sizeBytes: await folderSize(dir),
    unetInChannels,
    crossAttentionDim,
    ...(attentionLevels && { attentionLevels }),
    ...(textEncoderLayers !== undefined && { textEncoderLayers }),
    paths,
    ...(sdxl && { sdxl }),
    schedulerConfig,
    ...(error ? { error } : {}),
  };
}

/** Every subfolder of `modelsDir` with a model_index.json, by id; none when the folder is absent. */
export async function scanModelFolders(modelsDir: string): Promise<ModelFolderInfo[]> {
  let entries;
  try {
    entries = await readdir(modelsDir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const folders: string[] = [];
  for (const entry of entries) {
    // Hidden folders are not models: an unfinished Hub pull (`.partial-<name>`) is one.
    if (entry.name.startsWith('.')) continue;
    const dir = join(modelsDir, entry.name);
    if ((entry.isDirectory() || entry.isSymbolicLink()) && (await exists(join(dir, 'model_index.json')))) folders.push(dir);
  }
  const infos = await Promise.all(folders.map((dir) => inspectModelFolder(dir)));
  return infos.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
