// Where each diffusers/transformers parameter of a Stable Diffusion pipeline lives in an original
// LDM single-file checkpoint (CompVis/Stability layout, AUTOMATIC1111's models/Stable-diffusion):
// the renaming diffusers' convert_from_ckpt.py performs, written as diffusers name → LDM key, since
// the graph builders ask for diffusers names.

/** An LDM tensor, or a block of rows of one (OpenCLIP keeps q, k and v in one in_proj tensor). */
export interface LdmRef {
  key: string;
  rows?: { index: number; of: number };
}

export const UNET_PREFIX = 'model.diffusion_model.';
export const VAE_PREFIX = 'first_stage_model.';
export const CLIP_PREFIX = 'cond_stage_model.transformer.';
export const OPEN_CLIP_PREFIX = 'cond_stage_model.model.';

const RESNET: Record<string, string> = {
  norm1: 'in_layers.0',
  conv1: 'in_layers.2',
  time_emb_proj: 'emb_layers.1',
  norm2: 'out_layers.0',
  conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

/** `rest` of a resnet parameter (`norm1.weight`) in LDM's ResBlock names. */
function ldmResnet(rest: string): string {
  const [module, ...tail] = rest.split('.');
  return [RESNET[module] ?? module, ...tail].join('.');
}

function fail(name: string): never {
  throw new Error(`no LDM key for the diffusers parameter ${name}`);
}

/** UNet2DConditionModel parameter → `model.diffusion_model.*` key, for `layersPerBlock` resnets per down block and
 * `attention[level]` telling which levels have transformers. */
export function unetLdmKey(name: string, layersPerBlock: number, attention: boolean[]): string {
  const per = layersPerBlock + 1;
  const fixed: Record<string, string> = {
    'time_embedding.linear_1': 'time_embed.0',
    'time_embedding.linear_2': 'time_embed.2',
    'add_embedding.linear_1': 'label_emb.0.0',
    'add_embedding.linear_2': 'label_emb.0.2',
    conv_in: 'input_blocks.0.0',
    conv_norm_out: 'out.0',
    conv_out: 'out.2',
    'mid_block.resnets.0': 'middle_block.0',
    'mid_block.attentions.0': 'middle_block.1',
    'mid_block.resnets.1': 'middle_block.2',
  };
  for (const [from, to] of Object.entries(fixed)) {
    if (!name.startsWith(`${from}.`)) continue;
    const rest = name.slice(from.length + 1);
    return UNET_PREFIX + `${to}.${from.includes('resnets') ? ldmResnet(rest) : rest}`;
  }
  let m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const block = 1 + Number(m[1]) * per + Number(m[3]);
    return UNET_PREFIX + (m[2] === 'resnets' ? `input_blocks.${block}.0.${ldmResnet(m[4])}` : `input_blocks.${block}.1.${m[4]}`);
  }
  m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(name);
  if (m) return UNET_PREFIX + `input_blocks.${(Number(m[1]) + 1) * per}.0.op.${m[2]}`;
  m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const block = Number(m[1]) * per + Number(m[3]);
    return UNET_PREFIX + (m[2] === 'resnets' ? `output_blocks.${block}.0.${ldmResnet(m[4])}` : `output_blocks.${block}.1.${m[4]}`);
  }
  m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(name);
  if (m) {
    const i = Number(m[1]);
    const level = attention.length - 1 - i;
    return UNET_PREFIX + `output_blocks.${i * per + layersPerBlock}.${attention[level] ? 2 : 1}.conv.${m[2]}`;
  }
  return fail(name);
}

const VAE_ATTENTION: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

/** AutoencoderKL parameter → `first_stage_model.*` key; `levels` is the number of VAE blocks. */
export function vaeLdmKey(name: string, levels: number): string {
  const shortcut = (rest: string) => rest.replace(/^conv_shortcut\./, 'nin_shortcut.');
  let m = /^(encoder|decoder)\.conv_norm_out\.(.+)$/.exec(name);
  if (m) return VAE_PREFIX + `${m[1]}.norm_out.${m[2]}`;
  m = /^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)$/.exec(name);
  if (m) return VAE_PREFIX + `${m[1]}.mid.block_${Number(m[2]) + 1}.${shortcut(m[3])}`;
  m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)$/.exec(name);
  if (m) return VAE_PREFIX + `${m[1]}.mid.attn_1.${VAE_ATTENTION[m[2]]}.${m[3]}`;
  m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(name);
  if (m) return VAE_PREFIX + `encoder.down.${m[1]}.block.${m[2]}.${shortcut(m[3])}`;
  m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(name);
  if (m) return VAE_PREFIX + `encoder.down.${m[1]}.downsample.conv.${m[2]}`;
  // The decoder's up blocks run from the lowest resolution, LDM's `up` list from the highest.
  m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(name);
  if (m) return VAE_PREFIX + `decoder.up.${levels - 1 - Number(m[1])}.block.${m[2]}.${shortcut(m[3])}`;
  m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(name);
  if (m) return VAE_PREFIX + `decoder.up.${levels - 1 - Number(m[1])}.upsample.conv.${m[2]}`;
  if (/^(encoder\.conv_(in|out)|decoder\.conv_(in|out)|quant_conv|post_quant_conv)\./.test(name)) return VAE_PREFIX + name;
  return fail(name);
}

/** CLIPTextModel parameter → the checkpoint's transformers-layout key (SD 1.x). `textModelScope`: whether the
 * checkpoint keeps transformers' `text_model.` level (older ones do not). */
export function clipLdmKey(name: string, textModelScope: boolean): string {
  return CLIP_PREFIX + (textModelScope ? name : name.replace(/^text_model\./, ''));
}

const OPEN_CLIP_LAYER: Record<string, string> = {
  layer_norm1: 'ln_1',
  layer_norm2: 'ln_2',
  'mlp.fc1': 'mlp.c_fc',
  'mlp.fc2': 'mlp.c_proj',
  'self_attn.out_proj': 'attn.out_proj',
};
const QKV = ['q_proj', 'k_proj', 'v_proj'];

/** CLIPTextModel parameter → the OpenCLIP key of an SD 2.x checkpoint (`cond_stage_model.model.*`). */
export function openClipLdmRef(name: string): LdmRef {
  const fixed: Record<string, string> = {
    'text_model.embeddings.token_embedding.weight': 'token_embedding.weight',
    'text_model.embeddings.position_embedding.weight': 'positional_embedding',
    'text_model.final_layer_norm.weight': 'ln_final.weight',
    'text_model.final_layer_norm.bias': 'ln_final.bias',
  };
  if (fixed[name]) return { key: OPEN_CLIP_PREFIX + fixed[name] };
  const m = /^text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  if (!m) return fail(name);
  const layer = `${OPEN_CLIP_PREFIX}transformer.resblocks.${m[1]}`;
  const qkv = QKV.indexOf(m[2].replace(/^self_attn\./, ''));
  if (m[2].startsWith('self_attn.') && qkv >= 0) return { key: `${layer}.attn.in_proj_${m[3]}`, rows: { index: qkv, of: 3 } };
  const module = OPEN_CLIP_LAYER[m[2]];
  return module ? { key: `${layer}.${module}.${m[3]}` } : fail(name);
}
