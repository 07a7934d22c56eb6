// kohya's SDXL LoRAs name UNet layers as the LDM/SGM UNet does (sd-scripts trains SDXL on its own
// sdxl_original_unet.py): `input_blocks_4_1_transformer_blocks_0_attn1_to_q`, `middle_block_0_in_layers_2`,
// `output_blocks_2_2_conv`. ONNX exports of diffusers' UNet2DConditionModel keep diffusers' module
// names (`down_blocks.1.attentions.0…`), so these names are translated to diffusers' flattened ones,
// block by block, from the layout the model's own layers show — as diffusers'
// `_maybe_map_sgm_blocks_to_diffusers` does from the UNet config.

/** What the translation needs of the UNet's layout. */
export interface UNetLayout {
  /** Resnets per down block (diffusers' `layers_per_block`); the up blocks have one more. */
  layersPerBlock: number;
  /** Which up blocks have attentions (CrossAttnUpBlock2D): their upsampler is the block's third child, else its second. */
  upAttentions: boolean[];
}

/** The layout of a UNet from its diffusers module paths; undefined when they are not diffusers' UNet2DConditionModel's. */
export function unetLayout(modules: readonly string[]): UNetLayout | undefined {
  let layersPerBlock = 0;
  const upAttentions: boolean[] = [];
  for (const module of modules) {
    const down = /(?:^|\.)down_blocks\.0\.resnets\.(\d+)\./.exec(module);
    if (down) layersPerBlock = Math.max(layersPerBlock, Number(down[1]) + 1);
    const up = /(?:^|\.)up_blocks\.(\d+)\.(\w+)\./.exec(module);
    if (up) upAttentions[Number(up[1])] ||= up[2] === 'attentions';
  }
  return layersPerBlock ? { layersPerBlock, upAttentions: Array.from(upAttentions, Boolean) } : undefined;
}

/** Layers outside the blocks, by their whole LDM name. */
const TOP_LEVEL: Record<string, string> = {
  input_blocks_0_0: 'conv_in',
  out_2: 'conv_out',
  time_embed_0: 'time_embedding_linear_1',
  time_embed_2: 'time_embedding_linear_2',
  label_emb_0_0: 'add_embedding_linear_1',
  label_emb_0_2: 'add_embedding_linear_2',
};

/** An LDM ResBlock's layers (Sequential indices) as diffusers' ResnetBlock2D names them. */
const RESNET: Record<string, string> = {
  in_layers_0: 'norm1',
  in_layers_2: 'conv1',
  emb_layers_1: 'time_emb_proj',
  out_layers_0: 'norm2',
  out_layers_3: 'conv2',
  skip_connection: 'conv_shortcut',
};

const INPUT = /^input_blocks_(\d+)_(\d+)_(.+)$/;
const MIDDLE = /^middle_block_(\d+)_(.+)$/;
const OUTPUT = /^output_blocks_(\d+)_(\d+)_(.+)$/;

/**
 * diffusers' flattened name of an LDM-named UNet layer (kohya's name without `lora_unet_`); undefined
 * for a name that is not LDM's, or a block the layout does not have.
 */
export function diffusersUnetName(ldm: string, layout: UNetLayout): string | undefined {
  if (Object.hasOwn(TOP_LEVEL, ldm)) return TOP_LEVEL[ldm];
  const { layersPerBlock } = layout;
  const resnet = (prefix: string, rest: string) => (Object.hasOwn(RESNET, rest) ? `${prefix}_${RESNET[rest]}` : undefined);

  const input = INPUT.exec(ldm);
  if (input) {
    // input_blocks_0 is conv_in; then each level's resnets (with their attentions), then its downsampler.
    const [n, child, rest] = [Number(input[1]) - 1, Number(input[2]), input[3]];
    if (n < 0) return undefined;
    const [level, layer] = [Math.floor(n / (layersPerBlock + 1)), n % (layersPerBlock + 1)];
    if (layer === layersPerBlock) return child === 0 && rest === 'op' ? `down_blocks_${level}_downsamplers_0_conv` : undefined;
    if (child === 0) return resnet(`down_blocks_${level}_resnets_${layer}`, rest);
    return child === 1 ? `down_blocks_${level}_attentions_${layer}_${rest}` : undefined;
  }

  const middle = MIDDLE.exec(ldm);
  if (middle) {
    const [child, rest] = [Number(middle[1]), middle[2]];
    if (child === 1) return `mid_block_attentions_0_${rest}`;
    return child === 0 || child === 2 ? resnet(`mid_block_resnets_${child / 2}`, rest) : undefined;
  }

  const output = OUTPUT.exec(ldm);
  if (output) {
    const [n, child, rest] = [Number(output[1]), Number(output[2]), output[3]];
    const [level, layer] = [Math.floor(n / (layersPerBlock + 1)), n % (layersPerBlock + 1)];
    if (level >= layout.upAttentions.length) return undefined;
    if (child === 0) return resnet(`up_blocks_${level}_resnets_${layer}`, rest);
    const attention = layout.upAttentions[level];
    if (child === 1 && attention) return `up_blocks_${level}_attentions_${layer}_${rest}`;
    // The upsampler follows the last resnet (and its attention).
    const upsampler = child === (attention ? 2 : 1) && layer === layersPerBlock && rest === 'conv';
    return upsampler ? `up_blocks_${level}_upsamplers_0_conv` : undefined;
  }
  return undefined;
}
