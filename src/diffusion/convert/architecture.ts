// The numbers that fix a Stable Diffusion pipeline's architecture, named as diffusers' configs name
// them (UNet2DConditionModel, AutoencoderKL, transformers' CLIPTextConfig), with the standard ones.

export interface UNetArch {
  inChannels: number;
  outChannels: number;
  /** Channels of each level, first (full resolution) to last. */
  blockOutChannels: number[];
  layersPerBlock: number;
  /** Per level: whether its down block (and the mirrored up block) has cross-attention transformers. */
  attention: boolean[];
  /** Per level: attention heads (diffusers' `attention_head_dim`, which for SD counts heads). */
  heads: number[];
  /** Per level: BasicTransformerBlocks in each transformer; the middle block uses the last level's. */
  transformerDepth: number[];
  crossAttentionDim: number;
  /** SD 2.x: proj_in/proj_out are Linear layers instead of 1×1 convolutions. */
  useLinearProjection: boolean;
  /** SDXL's `text_time` addition embedding; absent for SD 1.x/2.x. */
  addition?: { timeEmbedDim: number; projectionInputDim: number };
  /** Latent size the model was trained at (unet/config.json `sample_size`). */
  sampleSize: number;
}

export interface VaeArch {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  scalingFactor: number;
}

export type TextActivation = 'quick_gelu' | 'gelu';

export interface TextEncoderArch {
  vocabSize: number;
  hiddenSize: number;
  layers: number;
  heads: number;
  intermediateSize: number;
  maxPositions: number;
  activation: TextActivation;
  /** The state-dict layout of the weights: transformers' CLIPTextModel (SD 1.x) or OpenCLIP (SD 2.x). */
  projectionDim: number;
}

export type CheckpointFamily = 'SD1' | 'SD2';

export interface PipelineArch {
  family: CheckpointFamily;
  unet: UNetArch;
  vae: VaeArch;
  textEncoder: TextEncoderArch;
  predictionType: 'epsilon' | 'v_prediction';
  /** The training noise schedule (scaled_linear between these betas). */
  betaStart: number;
  betaEnd: number;
  trainTimesteps: number;
}

/** SD 1.x's VAE (also SD 2.x's). */
export const SD_VAE: VaeArch = {
  inChannels: 3,
  outChannels: 3,
  latentChannels: 4,
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  scalingFactor: 0.18215,
};

/** Stable Diffusion 1.5: runwayml/stable-diffusion-v1-5's numbers. */
export const SD15: PipelineArch = {
  family: 'SD1',
  unet: {
    inChannels: 4,
    outChannels: 4,
    blockOutChannels: [320, 640, 1280, 1280],
    layersPerBlock: 2,
    attention: [true, true, true, false],
    heads: [8, 8, 8, 8],
    transformerDepth: [1, 1, 1, 1],
    crossAttentionDim: 768,
    useLinearProjection: false,
    sampleSize: 64,
  },
  vae: SD_VAE,
  textEncoder: {
    vocabSize: 49408,
    hiddenSize: 768,
    layers: 12,
    heads: 12,
    intermediateSize: 3072,
    maxPositions: 77,
    activation: 'quick_gelu',
    projectionDim: 768,
  },
  predictionType: 'epsilon',
  betaStart: 0.00085,
  betaEnd: 0.012,
  trainTimesteps: 1000,
};

/** SDXL base's UNet (stabilityai/stable-diffusion-xl-base-1.0), for benchmarks until the SDXL pipeline lands. */
export const SDXL_UNET: UNetArch = {
  inChannels: 4,
  outChannels: 4,
  blockOutChannels: [320, 640, 1280],
  layersPerBlock: 2,
  attention: [false, true, true],
  heads: [5, 10, 20],
  transformerDepth: [1, 2, 10],
  crossAttentionDim: 2048,
  useLinearProjection: true,
  addition: { timeEmbedDim: 256, projectionInputDim: 2816 },
  sampleSize: 128,
};
