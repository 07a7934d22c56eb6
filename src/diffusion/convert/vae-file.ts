// A separate VAE file (SDQL_MODELS_DIR/vae/*.safetensors), as AUTOMATIC1111's models/VAE holds them:
// the LDM autoencoder with or without the checkpoint's `first_stage_model.` prefix, or diffusers'
// AutoencoderKL names (older diffusers files name the attention query/key/value/proj_attn). The
// layout is told from the tensors' names; all three give the same encoder and decoder graphs.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { SafetensorsHeader } from '../safetensors.ts';
import { SD_VAE, type VaeArch } from './architecture.ts';
import { CheckpointError, CheckpointSource, countIndexed, readCheckpointHeader } from './checkpoint.ts';
import { VAE_PREFIX, vaeLdmKey, type LdmRef } from './ldm-keys.ts';
import { writeGraph } from './convert.ts';
import { buildVaeDecoder, buildVaeEncoder } from './vae.ts';

export type VaeLayout = 'ldm-checkpoint' | 'ldm' | 'diffusers' | 'diffusers-legacy-attention';

export interface VaeFileInfo {
  path: string;
  header: SafetensorsHeader;
  layout: VaeLayout;
  arch: VaeArch;
  /** 2^(levels − 1): pixels per latent along each side. */
  scaleFactor: number;
}

const LEGACY_ATTENTION: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };

function layoutOf(has: (key: string) => boolean): VaeLayout {
  if (has(`${VAE_PREFIX}decoder.conv_in.weight`)) return 'ldm-checkpoint';
  if (has('decoder.up_blocks.0.resnets.0.norm1.weight')) return has('decoder.mid_block.attentions.0.query.weight') ? 'diffusers-legacy-attention' : 'diffusers';
  if (has('decoder.up.0.block.0.norm1.weight')) return 'ldm';
  throw new CheckpointError('not a VAE: no decoder weights in the LDM (decoder.up.*) or diffusers (decoder.up_blocks.*) layout');
}

/** Where each AutoencoderKL parameter (diffusers name) is in a file of `layout` whose VAE has `levels` blocks. */
export function vaeFileLocator(layout: VaeLayout, levels: number): (name: string) => LdmRef {
  switch (layout) {
    case 'ldm-checkpoint':
      return (name) => ({ key: vaeLdmKey(name, levels) });
    case 'ldm':
      return (name) => ({ key: vaeLdmKey(name, levels).slice(VAE_PREFIX.length) });
    case 'diffusers':
      return (name) => ({ key: name });
    case 'diffusers-legacy-attention':
      return (name) => ({ key: name.replace(/(\.attentions\.0\.)(to_q|to_k|to_v|to_out\.0)\./, (_, at: string, m: string) => `${at}${LEGACY_ATTENTION[m]}.`) });
  }
}

/** Reads the header of the VAE file `path`: its layout and architecture. Throws a CheckpointError that says what is wrong. */
export async function inspectVaeFile(path: string): Promise<VaeFileInfo> {
  const header = await readCheckpointHeader(path);
  const keys = Object.keys(header.tensors);
  const layout = layoutOf((key) => key in header.tensors);
  const diffusers = layout.startsWith('diffusers');
  const prefix = layout === 'ldm-checkpoint' ? VAE_PREFIX : '';
  const levels = countIndexed(keys, `${prefix}encoder.${diffusers ? 'down_blocks' : 'down'}.`);
  const locate = vaeFileLocator(layout, levels);
  const shape = (name: string): number[] => {
    const key = locate(name).key;
    const info = header.tensors[key];
    if (!info) throw new CheckpointError(`the VAE has no tensor ${key}`);
    return info.shape;
  };
  const arch: VaeArch = {
    inChannels: shape('encoder.conv_in.weight')[1],
    outChannels: shape('decoder.conv_out.weight')[0],
    latentChannels: shape('decoder.conv_in.weight')[1],
    blockOutChannels: Array.from({ length: levels }, (_, i) => shape(`encoder.down_blocks.${i}.resnets.0.conv1.weight`)[0]),
    layersPerBlock: countIndexed(keys, diffusers ? 'encoder.down_blocks.0.resnets.' : `${prefix}encoder.down.0.block.`),
    // A VAE file does not carry LDM's scale_factor: the model's own applies (vaeScalingFactor).
    scalingFactor: SD_VAE.scalingFactor,
  };
  return { path, header, layout, arch, scaleFactor: 2 ** (levels - 1) };
}

/** Writes `outDir/vae_encoder/model.onnx` and `outDir/vae_decoder/model.onnx` from the VAE file `info`. */
export async function convertVaeFile(info: VaeFileInfo, outDir: string): Promise<void> {
  const locate = vaeFileLocator(info.layout, info.arch.blockOutChannels.length);
  for (const [submodel, build] of [['vae_encoder', buildVaeEncoder], ['vae_decoder', buildVaeDecoder]] as const) {
    const source = new CheckpointSource(info, locate);
    try {
      await writeGraph(join(outDir, submodel), source, false, (net) => build(net, info.arch));
    } finally {
      source.close();
    }
  }
}

/** Separate VAE files: `SDQL_MODELS_DIR/vae/*.safetensors`. */
export const VAE_FOLDER = 'vae';

export interface VaeFile {
  /** The file name without `.safetensors`. */
  id: string;
  /** The file name, as AUTOMATIC1111's infotext names it ("VAE"). */
  fileName: string;
  path: string;
  sizeBytes: number;
  /** Channels of its latents, and pixels per latent along each side; absent when the file cannot be used. */
  latentChannels?: number;
  scaleFactor?: number;
  /** What is wrong with the file, when it cannot be used. */
  error?: string;
}

/** The VAE files of `modelsDir`, by id, each described from its header (never throws for one file). */
export async function listVaeFiles(modelsDir: string): Promise<VaeFile[]> {
  const dir = join(modelsDir, VAE_FOLDER);
  const entries = await readdir(dir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return [];
    throw error;
  });
  const files = entries.filter((e) => (e.isFile() || e.isSymbolicLink()) && e.name.endsWith('.safetensors')).map((e) => e.name);
  const listed = await Promise.all(
    files.map(async (fileName): Promise<VaeFile> => {
      const path = join(dir, fileName);
      const base = { id: fileName.slice(0, -'.safetensors'.length), fileName, path, sizeBytes: (await stat(path)).size };
      try {
        const info = await inspectVaeFile(path);
        return { ...base, latentChannels: info.arch.latentChannels, scaleFactor: info.scaleFactor };
      } catch (error) {
        return { ...base, error: (error as Error).message };
      }
    }),
  );
  return listed.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
