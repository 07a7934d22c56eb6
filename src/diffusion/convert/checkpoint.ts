// What a single-file LDM checkpoint holds: its architecture, from the `<id>.yaml` beside it when there
// is one (AUTOMATIC1111's convention), else from its tensors' shapes and key names, and its weights,
// read tensor by tensor (a checkpoint is gigabytes: never the whole file at once).
import { closeSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import yaml from 'js-yaml';
import { readSafetensorsHeader, toFloat32, type SafetensorsHeader } from '../safetensors.ts';
import type { Init, ParamSource } from '../fixtures/net.ts';
import { SD15, SD_VAE, type PipelineArch, type TextEncoderArch, type UNetArch, type VaeArch } from './architecture.ts';
import { CLIP_PREFIX, OPEN_CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX, clipLdmKey, openClipLdmRef, unetLdmKey, vaeLdmKey, type LdmRef } from './ldm-keys.ts';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export type TextLayout = 'clip' | 'open-clip';

export interface CheckpointInfo {
  path: string;
  header: SafetensorsHeader;
  arch: PipelineArch;
  textLayout: TextLayout;
  /** The checkpoint keeps transformers' `text_model.` level in its CLIP keys. */
  textModelScope: boolean;
  /** The dtype most of its weights are stored in. */
  storedPrecision: 'fp32' | 'fp16' | 'bf16';
  /** It carries `model_ema.*` weights beside the model's (unused, as diffusers' default extract_ema=False). */
  hasEma: boolean;
  /** Where the architecture came from. */
  archSource: 'yaml' | 'tensors';
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const dig = (v: unknown, ...path: string[]): unknown => path.reduce<unknown>((at, key) => (isObject(at) ? at[key] : undefined), v);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * Attention heads of a CLIP text model, which its weights cannot tell: the widths of the released
 * models (ViT-L/14 768, OpenCLIP ViT-H 1024, ViT-bigG 1280: 64-channel heads) and of transformers'
 * tiny test CLIP (hidden 32, 4 heads), the width of tiny test checkpoints.
 */
const CLIP_HEADS: Record<number, number> = { 32: 4, 768: 12, 1024: 16, 1280: 20 };

/** Reads the LDM config `yamlPath`; undefined when absent. */
export async function readLdmConfig(yamlPath: string): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(yamlPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = yaml.load(text);
  } catch (error) {
    throw new CheckpointError(`${yamlPath} is not valid YAML (${(error as Error).message})`);
  }
  if (!isObject(dig(parsed, 'model', 'params'))) throw new CheckpointError(`${yamlPath} is not an LDM config (no model.params)`);
  return parsed as Json;
}

/** The safetensors header of `path`; a CheckpointError when it is none. */
export async function readCheckpointHeader(path: string): Promise<SafetensorsHeader> {
  try {
    return await readSafetensorsHeader(path);
  } catch (error) {
    throw new CheckpointError(`not a safetensors file: ${(error as Error).message}`);
  }
}

/** Reads the header of `path` and works out its architecture; `config` is its LDM yaml when there is one. */
export async function inspectCheckpoint(path: string, config?: Json): Promise<CheckpointInfo> {
  const header = await readCheckpointHeader(path);
  const keys = Object.keys(header.tensors);
  const shape = (key: string): number[] => {
    const info = header.tensors[key];
    if (!info) throw new CheckpointError(`the checkpoint has no tensor ${key}`);
    return info.shape;
  };
  const has = (key: string) => key in header.tensors;
  if (!has(`${UNET_PREFIX}input_blocks.0.0.weight`)) {
    throw new CheckpointError(`not a Stable Diffusion checkpoint: no ${UNET_PREFIX}* UNet weights (LoRAs, VAEs and embeddings go to their own folders)`);
  }
  if (has(`${UNET_PREFIX}label_emb.0.0.weight`)) throw new CheckpointError('SDXL checkpoints are not supported yet (this one has an addition embedding, label_emb)');
  const textLayout: TextLayout | undefined = keys.some((k) => k.startsWith(OPEN_CLIP_PREFIX)) ? 'open-clip' : keys.some((k) => k.startsWith(CLIP_PREFIX)) ? 'clip' : undefined;
  if (!textLayout) throw new CheckpointError(`the checkpoint has no text encoder (${CLIP_PREFIX}* or ${OPEN_CLIP_PREFIX}*)`);
  if (!keys.some((k) => k.startsWith(VAE_PREFIX))) throw new CheckpointError(`the checkpoint has no VAE (${VAE_PREFIX}*)`);

  const params = dig(config, 'model', 'params');
  const unetParams = dig(params, 'unet_config', 'params');
  // LDM's image_size is the latent size; without it, 512 px (768 px for v-prediction models, SD 2.x 768-v).
  const sampleSize = num(dig(params, 'image_size')) ?? (dig(params, 'parameterization') === 'v' ? 96 : 64);
  const unet = inferUNet(keys, shape, has, textLayout, unetParams, sampleSize);
  const vae = inferVae(keys, shape, num(dig(params, 'scale_factor')));
  const textModelScope = has(`${CLIP_PREFIX}text_model.embeddings.token_embedding.weight`);
  const textEncoder = inferTextEncoder(keys, shape, textLayout, textModelScope, header.metadata, dig(params, 'cond_stage_config', 'params'));

  const counts = new Map<string, number>();
  for (const info of Object.values(header.tensors)) counts.set(info.dtype, (counts.get(info.dtype) ?? 0) + 1);
  const dtype = [...counts].sort((a, b) => b[1] - a[1])[0][0];
  return {
    path,
    header,
    arch: {
      family: textLayout === 'open-clip' ? 'SD2' : 'SD1',
      unet,
      vae,
      textEncoder,
      predictionType: dig(params, 'parameterization') === 'v' ? 'v_prediction' : 'epsilon',
      betaStart: num(dig(params, 'linear_start')) ?? SD15.betaStart,
      betaEnd: num(dig(params, 'linear_end')) ?? SD15.betaEnd,
      trainTimesteps: num(dig(params, 'timesteps')) ?? SD15.trainTimesteps,
    },
    textLayout,
    textModelScope,
    storedPrecision: dtype === 'F16' ? 'fp16' : dtype === 'BF16' ? 'bf16' : 'fp32',
    hasEma: keys.some((k) => k.startsWith('model_ema.')),
    archSource: config ? 'yaml' : 'tensors',
  };
}

/** The largest n such that `${prefix}${n}.` starts some key, plus one (0 when none). */
export function countIndexed(keys: string[], prefix: string): number {
  let count = 0;
  for (const k of keys) {
    if (!k.startsWith(prefix)) continue;
    const n = Number(k.slice(prefix.length).split('.')[0]);
    if (Number.isInteger(n)) count = Math.max(count, n + 1);
  }
  return count;
}

function inferUNet(
  keys: string[],
  shape: (key: string) => number[],
  has: (key: string) => boolean,
  textLayout: TextLayout,
  params: unknown,
  sampleSize: number,
): UNetArch {
  const u = UNET_PREFIX;
  const downsamplers = keys.filter((k) => k.startsWith(`${u}input_blocks.`) && k.endsWith('.0.op.weight')).length;
  const levels = downsamplers + 1;
  const inputBlocks = countIndexed(keys, `${u}input_blocks.`);
  const layersPerBlock = inputBlocks / levels - 1;
  if (!Number.isInteger(layersPerBlock) || layersPerBlock < 1) throw new CheckpointError(`cannot tell the UNet's layout from ${inputBlocks} input blocks and ${downsamplers} downsamplers`);
  const first = (level: number) => `${u}input_blocks.${1 + level * (layersPerBlock + 1)}`;
  const blockOutChannels = Array.from({ length: levels }, (_, level) => shape(`${first(level)}.0.out_layers.3.weight`)[0]);
  const attention = Array.from({ length: levels }, (_, level) => has(`${first(level)}.1.proj_in.weight`));
  const midDepth = countIndexed(keys, `${u}middle_block.1.transformer_blocks.`);
  const transformerDepth = attention.map((a, level) => (a ? countIndexed(keys, `${first(level)}.1.transformer_blocks.`) : midDepth));
  const crossKey = keys.find((k) => k.startsWith(u) && k.endsWith('attn2.to_k.weight'));
  if (!crossKey) throw new CheckpointError('the UNet has no cross-attention');
  const proj = shape(`${u}middle_block.1.proj_in.weight`);

  // LDM's num_heads counts heads (SD 1.x: 8); num_head_channels fixes their width instead (SD 2.x: 64).
  const numHeads = num(dig(params, 'num_heads'));
  const headChannels = num(dig(params, 'num_head_channels'));
  const heads = blockOutChannels.map((c) =>
    numHeads !== undefined && numHeads > 0 ? numHeads : headChannels !== undefined && headChannels > 0 ? c / headChannels : textLayout === 'open-clip' ? c / 64 : 8,
  );
  return {
    inChannels: shape(`${u}input_blocks.0.0.weight`)[1],
    outChannels: shape(`${u}out.2.weight`)[0],
    blockOutChannels,
    layersPerBlock,
    attention,
    heads,
    transformerDepth,
    crossAttentionDim: shape(crossKey)[1],
    useLinearProjection: proj.length === 2,
    sampleSize,
  };
}

function inferVae(keys: string[], shape: (key: string) => number[], scaleFactor: number | undefined): VaeArch {
  const v = VAE_PREFIX;
  const levels = countIndexed(keys, `${v}encoder.down.`);
  return {
    inChannels: shape(`${v}encoder.conv_in.weight`)[1],
    outChannels: shape(`${v}decoder.conv_out.weight`)[0],
    latentChannels: shape(`${v}decoder.conv_in.weight`)[1],
    blockOutChannels: Array.from({ length: levels }, (_, i) => shape(`${v}encoder.down.${i}.block.0.conv1.weight`)[0]),
    layersPerBlock: countIndexed(keys, `${v}encoder.down.0.block.`),
    scalingFactor: scaleFactor ?? SD_VAE.scalingFactor,
  };
}

function inferTextEncoder(
  keys: string[],
  shape: (key: string) => number[],
  layout: TextLayout,
  textModelScope: boolean,
  metadata: Record<string, string>,
  params: unknown,
): TextEncoderArch {
  const key = (name: string) => (layout === 'open-clip' ? openClipLdmRef(name).key : clipLdmKey(name, textModelScope));
  const [vocabSize, hiddenSize] = shape(key('text_model.embeddings.token_embedding.weight'));
  const layerPrefix = layout === 'open-clip' ? `${OPEN_CLIP_PREFIX}transformer.resblocks.` : key('text_model.encoder.layers.');
  const stored = countIndexed(keys, layerPrefix);
  const fromMetadata = Number(metadata['text_encoder.num_attention_heads'] ?? metadata.num_attention_heads);
  const heads = CLIP_HEADS[hiddenSize] ?? (Number.isInteger(fromMetadata) && fromMetadata > 0 ? fromMetadata : num(dig(params, 'num_attention_heads')));
  if (heads === undefined || hiddenSize % heads !== 0) {
    throw new CheckpointError(
      `cannot tell the text encoder's attention heads: its width ${hiddenSize} is not a standard CLIP width (${Object.keys(CLIP_HEADS).join(', ')}); ` +
        'give it as `text_encoder.num_attention_heads` in the file\'s __metadata__ or `num_attention_heads` under cond_stage_config.params in <id>.yaml',
    );
  }
  return {
    vocabSize,
    hiddenSize,
    // diffusers builds SD 2.x's text encoder without OpenCLIP's last layer (stabilityai/stable-diffusion-2's
    // config: 23 of 24): SD 2.x conditions on the penultimate layer. Its activation is exact GELU.
    layers: layout === 'open-clip' ? stored - 1 : stored,
    heads,
    intermediateSize: shape(key('text_model.encoder.layers.0.mlp.fc1.weight'))[0],
    maxPositions: shape(key('text_model.embeddings.position_embedding.weight'))[0],
    activation: layout === 'open-clip' ? 'gelu' : 'quick_gelu',
    projectionDim: layout === 'open-clip' ? 512 : hiddenSize,
  };
}

/**
 * The checkpoint's weights under diffusers names, read one tensor at a time with positional reads
 * (synchronous: conversion runs off the event loop) and given as float32, whatever their stored dtype.
 */
export class CheckpointSource implements ParamSource {
  private readonly fd: number;
  /** Bytes of tensor data read so far, for progress. */
  bytesRead = 0;

  constructor(
    private readonly info: Pick<CheckpointInfo, 'path' | 'header'>,
    private readonly locate: (name: string) => LdmRef,
    private readonly onRead?: (bytesRead: number) => void,
  ) {
    this.fd = openSync(info.path, 'r');
  }

  close(): void {
    closeSync(this.fd);
  }

  get(name: string, shape: number[], _init: Init, transposed = false): Float32Array {
    const ref = this.locate(name);
    const tensor = this.info.header.tensors[ref.key];
    if (!tensor) throw new CheckpointError(`the checkpoint has no ${ref.key} (for ${name})`);
    const [begin, end] = tensor.data_offsets;
    const bytes = new Uint8Array(end - begin);
    for (let done = 0; done < bytes.length; ) {
      const n = readSync(this.fd, bytes, done, bytes.length - done, this.info.header.dataStart + begin + done);
      if (n === 0) throw new CheckpointError(`tensor ${ref.key} is truncated`);
      done += n;
    }
    this.bytesRead += bytes.length;
    this.onRead?.(this.bytesRead);
    let values = toFloat32(tensor.dtype, bytes);
    if (ref.rows) {
      const part = values.length / ref.rows.of;
      values = values.subarray(ref.rows.index * part, (ref.rows.index + 1) * part);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    // 1×1 convolutions stored for Linear layers (the VAE's attention, SD 1.x-style proj_in) have the same values.
    if (values.length !== count) throw new CheckpointError(`tensor ${ref.key} has shape [${tensor.shape.join(', ')}], expected [${shape.join(', ')}] for ${name}`);
    return transposed ? transpose(values, shape[0], shape[1]) : values;
  }
}

/** [rows, cols] → [cols, rows]. */
export function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** Where each submodel's parameters are in a checkpoint of architecture `arch` with its text encoder in `textLayout`. */
export function ldmLocators(
  arch: PipelineArch,
  textLayout: TextLayout,
  textModelScope = true,
): Record<'unet' | 'vae' | 'textEncoder', (name: string) => LdmRef> {
  const { unet, vae } = arch;
  return {
    unet: (name) => ({ key: unetLdmKey(name, unet.layersPerBlock, unet.attention) }),
    vae: (name) => ({ key: vaeLdmKey(name, vae.blockOutChannels.length) }),
    textEncoder: (name) => (textLayout === 'open-clip' ? openClipLdmRef(name) : { key: clipLdmKey(name, textModelScope) }),
  };
}
