// diffusers' UNet2DConditionModel as an ONNX graph with Optimum's inputs and outputs: any number of
// levels, resnets per level, cross-attention levels, heads and transformer depth per level, conv or
// linear proj_in/out (SD 2.x), SDXL's `text_time` addition embedding. Module paths (and so the
// state-dict names the weights are asked for) are diffusers'.
import { DataType, attr, type ModelProto } from '../onnx/proto.ts';
import type { Net } from '../fixtures/net.ts';
import type { UNetArch } from './architecture.ts';

const GROUPS = 32;
const EPS = 1e-5;

/** diffusers' Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0) of a 1-D float32 tensor: [n, dim], cosines first. */
function sinusoidal(net: Net, scope: string, t: string, dim: number): string {
  const g = net.g;
  const half = dim / 2;
  const freqs = g.anonymous('Mul', DataType.FLOAT, [1, half], Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half)));
  const phase = g.op(scope, 'Mul', [g.op(scope, 'Unsqueeze', [t, g.int64s(scope, [1])]), freqs]);
  return g.op(scope, 'Concat', [g.op(scope, 'Cos', [phase]), g.op(scope, 'Sin', [phase])], [attr.int('axis', -1)]);
}

/** diffusers' TimestepEmbedding: linear_1, SiLU, linear_2. */
function timestepEmbedding(net: Net, scope: string, x: string, inDim: number, outDim: number): string {
  const h = net.gemm(`${scope}/linear_1`, x, inDim, outDim);
  return net.gemm(`${scope}/linear_2`, net.silu(`${scope}/act`, h), outDim, outDim);
}

export function buildUNet2DCondition(net: Net, arch: UNetArch): ModelProto {
  const g = net.g;
  const channels = arch.blockOutChannels;
  const levels = channels.length;
  const tembDim = 4 * channels[0];

  const sample = g.input('sample', net.float, ['batch', arch.inChannels, 'height', 'width']);
  const timestep = g.input('timestep', net.float, ['batch']);
  const context = g.input('encoder_hidden_states', net.float, ['batch', 'sequence', arch.crossAttentionDim]);

  const toFloat32 = (x: string) => (net.float === DataType.FLOAT ? x : g.op('', 'Cast', [x], [attr.int('to', DataType.FLOAT)]));
  const toModel = (x: string) => (net.float === DataType.FLOAT ? x : g.op('', 'Cast', [x], [attr.int('to', net.float)]));
  // Timesteps broadcast to the batch and projected in float32, as diffusers does before casting to the model's dtype.
  const batch = net.slice('', g.op('', 'Shape', [sample]), 0, 1, 0);
  const t = g.op('', 'Expand', [toFloat32(timestep), batch]);
  let temb = timestepEmbedding(net, '/time_embedding', toModel(sinusoidal(net, '/time_proj', t, channels[0])), channels[0], tembDim);

  if (arch.addition) {
    const { timeEmbedDim, projectionInputDim } = arch.addition;
    const textEmbeds = g.input('text_embeds', net.float, ['batch', projectionInputDim - 6 * timeEmbedDim]);
    const timeIds = g.input('time_ids', net.float, ['batch', 6]);
    const flatIds = g.op('', 'Reshape', [toFloat32(timeIds), g.int64s('', [-1])], [attr.int('allowzero', 0)]);
    const timeEmbeds = g.op('', 'Reshape', [sinusoidal(net, '/add_time_proj', flatIds, timeEmbedDim), g.int64s('', [-1, 6 * timeEmbedDim])], [attr.int('allowzero', 0)]);
    const added = g.op('', 'Concat', [textEmbeds, toModel(timeEmbeds)], [attr.int('axis', -1)]);
    temb = g.op('', 'Add', [temb, timestepEmbedding(net, '/add_embedding', added, projectionInputDim, tembDim)]);
  }
  const tembAct = net.silu('/nonlinearity', temb);

  const { resnet, transformer: spatialTransformer } = unetLayers(net, { groups: GROUPS, temb: tembAct, tembDim, context, crossAttentionDim: arch.crossAttentionDim, useLinearProjection: arch.useLinearProjection });
  const transformer = (scope: string, x: string, dim: number, level: number) => spatialTransformer(scope, x, dim, arch.heads[level], arch.transformerDepth[level]);

  let h = net.conv('/conv_in', sample, arch.inChannels, channels[0], 3);
  const skips: { value: string; channels: number }[] = [{ value: h, channels: channels[0] }];
  let current = channels[0];
  for (let level = 0; level < levels; level++) {
    const block = `/down_blocks.${level}`;
    for (let j = 0; j < arch.layersPerBlock; j++) {
      h = resnet(`${block}/resnets.${j}`, h, current, channels[level]);
      current = channels[level];
      if (arch.attention[level]) h = transformer(`${block}/attentions.${j}`, h, current, level);
      skips.push({ value: h, channels: current });
    }
    if (level < levels - 1) {
      h = net.conv(`${block}/downsamplers.0/conv`, h, current, current, 3, { stride: 2 });
      skips.push({ value: h, channels: current });
    }
  }

  h = resnet('/mid_block/resnets.0', h, current, current);
  h = transformer('/mid_block/attentions.0', h, current, levels - 1);
  h = resnet('/mid_block/resnets.1', h, current, current);

  for (let i = 0; i < levels; i++) {
    const level = levels - 1 - i;
    const block = `/up_blocks.${i}`;
    for (let j = 0; j <= arch.layersPerBlock; j++) {
      const skip = skips.pop()!;
      h = resnet(`${block}/resnets.${j}`, g.op(block, 'Concat', [h, skip.value], [attr.int('axis', 1)]), current + skip.channels, channels[level]);
      current = channels[level];
      if (arch.attention[level]) h = transformer(`${block}/attentions.${j}`, h, current, level);
    }
    if (i < levels - 1) {
      // To the size of the skip connection it meets next, as diffusers' forward_upsample_size does for odd sizes.
      const up = `${block}/upsamplers.0`;
      h = net.conv(`${up}/conv`, net.upsample(up, h, { like: skips[skips.length - 1].value }), current, current, 3);
    }
  }

  h = net.silu('/conv_act', net.groupNorm('/conv_norm_out', h, current, GROUPS, EPS));
  net.conv('/conv_out', h, current, arch.outChannels, 3, { output: 'out_sample' });
  g.output('out_sample', net.float, ['batch', arch.outChannels, 'height', 'width']);
  return net.model();
}

export interface UNetLayerOptions {
  groups: number;
  /** The activated time embedding every resnet projects. */
  temb: string;
  tembDim: number;
  /** The text embeddings cross-attention reads. */
  context: string;
  crossAttentionDim: number;
  useLinearProjection: boolean;
}

/** The UNet's ResnetBlock2D and Transformer2DModel (with its BasicTransformerBlocks), as diffusers builds them. */
export function unetLayers(net: Net, o: UNetLayerOptions) {
  const g = net.g;
  const resnet = (scope: string, x: string, inC: number, outC: number): string => {
    let h = net.silu(`${scope}/nonlinearity`, net.groupNorm(`${scope}/norm1`, x, inC, o.groups, EPS));
    h = net.conv(`${scope}/conv1`, h, inC, outC, 3);
    const proj = net.gemm(`${scope}/time_emb_proj`, o.temb, o.tembDim, outC);
    h = g.op(scope, 'Add', [h, g.op(scope, 'Unsqueeze', [proj, g.int64s(scope, [2, 3])])]);
    h = net.silu(`${scope}/nonlinearity`, net.groupNorm(`${scope}/norm2`, h, outC, o.groups, EPS));
    h = net.conv(`${scope}/conv2`, h, outC, outC, 3);
    const shortcut = inC === outC ? x : net.conv(`${scope}/conv_shortcut`, x, inC, outC, 1);
    return g.op(scope, 'Add', [shortcut, h]);
  };

  const basicBlock = (block: string, x: string, dim: number, heads: number): string => {
    const names = { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out.0' };
    const selfIn = net.layerNorm(`${block}/norm1`, x, dim, EPS);
    let h = g.op(block, 'Add', [net.attention(`${block}/attn1`, selfIn, selfIn, { dim, contextDim: dim, heads, names, qkvBias: false }), x]);
    const crossIn = net.layerNorm(`${block}/norm2`, h, dim, EPS);
    h = g.op(block, 'Add', [net.attention(`${block}/attn2`, crossIn, o.context, { dim, contextDim: o.crossAttentionDim, heads, names, qkvBias: false }), h]);
    // GEGLU feed-forward: one projection to twice the inner width, split into value and gate.
    const inner = 4 * dim;
    const ff = `${block}/ff`;
    const proj = net.linear(`${ff}/net.0/proj`, net.layerNorm(`${block}/norm3`, h, dim, EPS), dim, 2 * inner);
    const value = net.slice(`${ff}/net.0`, proj, 0, inner, -1);
    const gate = net.slice(`${ff}/net.0`, proj, inner, 2 * inner, -1);
    const geglu = g.op(`${ff}/net.0`, 'Mul', [value, net.gelu(`${ff}/net.0`, gate)]);
    return g.op(block, 'Add', [net.linear(`${ff}/net.2`, geglu, inner, dim), h]);
  };

  // Transformer2DModel: GroupNorm, proj_in, blocks over the h·w tokens, proj_out, residual.
  const transformer = (scope: string, x: string, dim: number, heads: number, depth: number): string => {
    const normed = net.groupNorm(`${scope}/norm`, x, dim, o.groups, 1e-6);
    const tokens = (t: string) => g.op(scope, 'Transpose', [g.op(scope, 'Reshape', [t, g.int64s(scope, [0, dim, -1])], [attr.int('allowzero', 0)])], [attr.ints('perm', [0, 2, 1])]);
    const spatial = (t: string) => g.op(scope, 'Reshape', [g.op(scope, 'Transpose', [t], [attr.ints('perm', [0, 2, 1])]), g.op(scope, 'Shape', [x])], [attr.int('allowzero', 0)]);
    let h = o.useLinearProjection ? net.linear(`${scope}/proj_in`, tokens(normed), dim, dim) : tokens(net.conv(`${scope}/proj_in`, normed, dim, dim, 1));
    for (let d = 0; d < depth; d++) h = basicBlock(`${scope}/transformer_blocks.${d}`, h, dim, heads);
    const out = o.useLinearProjection ? spatial(net.linear(`${scope}/proj_out`, h, dim, dim)) : net.conv(`${scope}/proj_out`, spatial(h), dim, dim, 1);
    return g.op(scope, 'Add', [out, x]);
  };
  return { resnet, transformer };
}
