// diffusers' AutoencoderKL halves as ONNX graphs with Optimum's inputs and outputs: the encoder up to
// quant_conv (`latent_parameters`: mean ‖ log-variance) and post_quant_conv through the decoder, each
// with the mid-block's single-head attention.
import { attr, type ModelProto } from '../onnx/proto.ts';
import type { Net } from '../fixtures/net.ts';
import type { VaeArch } from './architecture.ts';

const GROUPS = 32;
const EPS = 1e-6;

function resnet(net: Net, scope: string, x: string, inC: number, outC: number): string {
  let h = net.silu(`${scope}/nonlinearity`, net.groupNorm(`${scope}/norm1`, x, inC, GROUPS, EPS));
  h = net.conv(`${scope}/conv1`, h, inC, outC, 3);
  h = net.silu(`${scope}/nonlinearity`, net.groupNorm(`${scope}/norm2`, h, outC, GROUPS, EPS));
  h = net.conv(`${scope}/conv2`, h, outC, outC, 3);
  const shortcut = inC === outC ? x : net.conv(`${scope}/conv_shortcut`, x, inC, outC, 1);
  return net.g.op(scope, 'Add', [shortcut, h]);
}

/** UNetMidBlock2D: resnet, one-head self-attention over the pixels (with residual), resnet. */
function midBlock(net: Net, scope: string, x: string, channels: number): string {
  const g = net.g;
  let h = resnet(net, `${scope}/resnets.0`, x, channels, channels);
  const attn = `${scope}/attentions.0`;
  const normed = net.groupNorm(`${attn}/group_norm`, h, channels, GROUPS, EPS);
  const tokens = g.op(attn, 'Transpose', [g.op(attn, 'Reshape', [normed, g.int64s(attn, [0, channels, -1])], [attr.int('allowzero', 0)])], [attr.ints('perm', [0, 2, 1])]);
  const names = { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out.0' };
  const attended = net.attention(attn, tokens, tokens, { dim: channels, contextDim: channels, heads: 1, names, qkvBias: true });
  const spatial = g.op(attn, 'Reshape', [g.op(attn, 'Transpose', [attended], [attr.ints('perm', [0, 2, 1])]), g.op(attn, 'Shape', [h])], [attr.int('allowzero', 0)]);
  h = g.op(attn, 'Add', [spatial, h]);
  return resnet(net, `${scope}/resnets.1`, h, channels, channels);
}

/** `sample` [batch, 3, H, W] → `latent_parameters` [batch, 2·latent, H/f, W/f]. */
export function buildVaeEncoder(net: Net, arch: VaeArch): ModelProto {
  const g = net.g;
  const channels = arch.blockOutChannels;
  const image = g.input('sample', net.float, ['batch', arch.inChannels, 'height', 'width']);
  let h = net.conv('/encoder/conv_in', image, arch.inChannels, channels[0], 3);
  let current = channels[0];
  for (let i = 0; i < channels.length; i++) {
    for (let j = 0; j < arch.layersPerBlock; j++) {
      h = resnet(net, `/encoder/down_blocks.${i}/resnets.${j}`, h, current, channels[i]);
      current = channels[i];
    }
    // Downsample2D(padding=0): pad right and bottom by one, then a stride-2 convolution.
    if (i < channels.length - 1) h = net.conv(`/encoder/down_blocks.${i}/downsamplers.0/conv`, h, current, current, 3, { stride: 2, pads: [0, 0, 1, 1] });
  }
  h = midBlock(net, '/encoder/mid_block', h, current);
  h = net.silu('/encoder/conv_act', net.groupNorm('/encoder/conv_norm_out', h, current, GROUPS, EPS));
  h = net.conv('/encoder/conv_out', h, current, 2 * arch.latentChannels, 3);
  net.conv('/quant_conv', h, 2 * arch.latentChannels, 2 * arch.latentChannels, 1, { output: 'latent_parameters' });
  g.output('latent_parameters', net.float, ['batch', 2 * arch.latentChannels, 'height_latent', 'width_latent']);
  return net.model();
}

/** `latent_sample` [batch, latent, h, w] → `sample` [batch, 3, f·h, f·w]. */
export function buildVaeDecoder(net: Net, arch: VaeArch): ModelProto {
  const g = net.g;
  const reversed = [...arch.blockOutChannels].reverse();
  const latent = g.input('latent_sample', net.float, ['batch', arch.latentChannels, 'height', 'width']);
  let h = net.conv('/post_quant_conv', latent, arch.latentChannels, arch.latentChannels, 1);
  let current = reversed[0];
  h = net.conv('/decoder/conv_in', h, arch.latentChannels, current, 3);
  h = midBlock(net, '/decoder/mid_block', h, current);
  for (let i = 0; i < reversed.length; i++) {
    for (let j = 0; j <= arch.layersPerBlock; j++) {
      h = resnet(net, `/decoder/up_blocks.${i}/resnets.${j}`, h, current, reversed[i]);
      current = reversed[i];
    }
    if (i < reversed.length - 1) {
      const up = `/decoder/up_blocks.${i}/upsamplers.0`;
      h = net.conv(`${up}/conv`, net.upsample(up, h, { factor: 2 }), current, current, 3);
    }
  }
  h = net.silu('/decoder/conv_act', net.groupNorm('/decoder/conv_norm_out', h, current, GROUPS, EPS));
  net.conv('/decoder/conv_out', h, current, arch.outChannels, 3, { output: 'sample' });
  g.output('sample', net.float, ['batch', arch.outChannels, 'height_out', 'width_out']);
  return net.model();
}
