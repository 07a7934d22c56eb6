// Reading LoRA files: kohya's format (`lora_unet_<flat module>.lora_down.weight`, `.lora_up.weight`,
// `.alpha`, LoCon convolutions included) and diffusers'/PEFT's (`unet.<module>.lora_A.weight`,
// `.lora.down.weight`, `.lora_linear_layer.down.weight`, the attention-processor names
// `attn1.processor.to_q_lora.down.weight`), grouped by the module each pair of matrices adapts.
import { extname } from 'node:path';
import { badInput } from '../errors.ts';
import type { ModelFamily, ModelFolderInfo } from '../model-folder.ts';
import { readSafetensorsFloat32, readSafetensorsHeader, type FloatTensor, type SafetensorsHeader } from '../safetensors.ts';

export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';

export interface LoraModule {
  component: LoraComponent;
  /** The module's state-dict path (`down_blocks.1.attentions.0.proj_in`), or kohya's flattened name
   * (`down_blocks_1_attentions_0_proj_in`) when `flat`. */
  module: string;
  flat: boolean;
  /** The module's name as the file writes it, for messages. */
  key: string;
  /** [rank, in] or [rank, in, kh, kw]. */
  down: FloatTensor;
  /** [out, rank] or [out, rank, 1, 1]. */
  up: FloatTensor;
  /** Network alpha: the update is scaled by alpha / rank; absent means 1 (alpha = rank). */
  alpha?: number;
}

export interface LoraFile {
  name: string;
  path: string;
  modules: LoraModule[];
  /** Modules the file holds in a form this loader does not merge (LoHa, LoKr, DoRA…), by key. */
  unsupported: string[];
  /** The family `ss_base_model_version` names, when it names one. */
  family?: Exclude<ModelFamily, 'UNKNOWN'>;
  baseModelVersion?: string;
}

const PICKLE_EXTENSIONS = new Set(['.ckpt', '.pt', '.pth', '.bin', '.pkl']);

/** Refuses anything but .safetensors before a byte is read: the other formats are Python pickles, which can run code. */
export function checkSafetensorsPath(kind: string, name: string, path: string): void {
  const ext = extname(path).toLowerCase();
  if (ext === '.safetensors') return;
  const why = PICKLE_EXTENSIONS.has(ext) ? `${ext} files are Python pickles, which can run code when loaded` : `${ext || 'a file without extension'} is not a known ${kind} format`;
  throw badInput(`${kind} "${name}": only .safetensors files are loaded; ${why}`);
}

type Role = 'down' | 'up' | 'alpha' | 'unsupported';

interface ParsedKey {
  component: LoraComponent;
  module: string;
  flat: boolean;
  role: Role;
  /** The key without its role suffix: the module as the file names it. */
  base: string;
}

const KOHYA = /^(lora_unet|lora_te1|lora_te2|lora_te)_([^.]+)\.(.+)$/;
const KOHYA_COMPONENT: Record<string, LoraComponent> = { lora_unet: 'unet', lora_te: 'text_encoder', lora_te1: 'text_encoder', lora_te2: 'text_encoder_2' };
const KOHYA_ROLE: Record<string, Role> = { 'lora_down.weight': 'down', 'lora_up.weight': 'up', alpha: 'alpha' };
const PREFIXES: [string, LoraComponent][] = [
  ['unet.', 'unet'],
  ['text_encoder.', 'text_encoder'],
  ['text_encoder_2.', 'text_encoder_2'],
  // A PEFT model saved directly.
  ['base_model.model.', 'unet'],
];
// diffusers' attention processors named the projections after the UNet's attention; the text
// encoder's old LoRA format borrowed those names.
const PROCESSOR = /^(.*?)(?:\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;
const PROCESSOR_TARGET: Record<LoraComponent, Record<string, string>> = {
  unet: { to_q: 'to_q', to_k: 'to_k', to_v: 'to_v', to_out: 'to_out.0' },
  text_encoder: { to_q: 'q_proj', to_k: 'k_proj', to_v: 'v_proj', to_out: 'out_proj' },
  text_encoder_2: { to_q: 'q_proj', to_k: 'k_proj', to_v: 'v_proj', to_out: 'out_proj' },
};
const DIFFUSERS_ROLE: [RegExp, Role][] = [
  [/\.lora_A(?:\.default)?\.weight$/, 'down'],
  [/\.lora_B(?:\.default)?\.weight$/, 'up'],
  [/\.lora(?:_linear_layer)?\.down\.weight$/, 'down'],
  [/\.lora(?:_linear_layer)?\.up\.weight$/, 'up'],
  [/\.alpha$/, 'alpha'],
];
// Networks of other shapes (LyCORIS' LoHa, LoKr, Tucker-decomposed LoCon, DoRA): their weights
// cannot be merged as up·down.
const UNSUPPORTED = /\.(hada_\w+|lokr_\w+|lora_mid\.weight|dora_scale|diff|diff_b|bias_indices|bias_values|on_input)$/;

function parseKey(key: string): ParsedKey | undefined {
  const kohya = KOHYA.exec(key);
  if (kohya) {
    const role = KOHYA_ROLE[kohya[3]] ?? (UNSUPPORTED.test(`.${kohya[3]}`) ? 'unsupported' : undefined);
    return role && { component: KOHYA_COMPONENT[kohya[1]], module: kohya[2], flat: true, role, base: `${kohya[1]}_${kohya[2]}` };
  }
  let rest = key;
  let component: LoraComponent | undefined;
  for (const [prefix, target] of PREFIXES) {
    if (rest.startsWith(prefix)) {
      rest = rest.slice(prefix.length);
      component = target;
      break;
    }
  }
  // diffusers' first format has UNet keys without a prefix; a PEFT text encoder's paths start at text_model.
  if (component !== 'text_encoder' && component !== 'text_encoder_2') component = rest.startsWith('text_model.') ? 'text_encoder' : 'unet';
  const processor = PROCESSOR.exec(rest);
  if (processor) {
    const module = `${processor[1]}.${PROCESSOR_TARGET[component][processor[2]]}`;
    return { component, module, flat: false, role: processor[3] as Role, base: key.slice(0, key.lastIndexOf('.', key.length - '.weight'.length - 1)) };
  }
  for (const [pattern, role] of [...DIFFUSERS_ROLE, [UNSUPPORTED, 'unsupported'] as const]) {
    const match = pattern.exec(rest);
    if (match) return { component, module: rest.slice(0, match.index), flat: false, role, base: key.slice(0, key.length - match[0].length) };
  }
  return undefined;
}

/** ss_base_model_version as kohya's trainers write it: sd_v1, sd_v2 (with a _v suffix for v-prediction), sdxl_base_v1-0. */
export function familyOfVersion(version: string | undefined): LoraFile['family'] {
  if (!version) return undefined;
  if (version.startsWith('sdxl')) return 'SDXL';
  if (version.startsWith('sd_v1')) return 'SD1';
  if (version.startsWith('sd_v2')) return 'SD2';
  return undefined;
}

/** Reads a LoRA file and groups its tensors by module. Throws BAD_USER_INPUT for a file that is not a LoRA. */
export async function readLora(name: string, path: string): Promise<LoraFile> {
  checkSafetensorsPath('LoRA', name, path);
  let header: SafetensorsHeader;
  let tensors: Map<string, FloatTensor>;
  try {
    header = await readSafetensorsHeader(path);
    tensors = await readSafetensorsFloat32(path, header);
  } catch (error) {
    throw badInput(`LoRA "${name}" could not be read: ${(error as Error).message}`);
  }
  const groups = new Map<string, { parsed: ParsedKey; down?: FloatTensor; up?: FloatTensor; alpha?: FloatTensor; unsupported?: boolean }>();
  const unknown: string[] = [];
  for (const [key, tensor] of tensors) {
    const parsed = parseKey(key);
    if (!parsed) {
      unknown.push(key);
      continue;
    }
    const id = `${parsed.component}:${parsed.flat ? 'flat' : 'path'}:${parsed.module}`;
    let group = groups.get(id);
    if (!group) groups.set(id, (group = { parsed }));
    if (parsed.role === 'unsupported') group.unsupported = true;
    else group[parsed.role] = tensor;
  }
  if (groups.size === 0) throw badInput(`LoRA "${name}" holds no LoRA weights (its tensors are ${[...tensors.keys()].slice(0, 3).join(', ')}…)`);

  const modules: LoraModule[] = [];
  const unsupported: string[] = [...unknown];
  for (const { parsed, down, up, alpha, unsupported: other } of groups.values()) {
    const key = parsed.base;
    if (other || !down || !up) {
      unsupported.push(key);
      continue;
    }
    const rank = down.shape[0];
    const shapesFit = down.shape.length >= 2 && up.shape.length >= 2 && up.shape[1] === rank && up.shape.slice(2).every((d) => d === 1);
    if (!shapesFit) throw badInput(`LoRA "${name}": ${key} has down [${down.shape.join(', ')}] and up [${up.shape.join(', ')}], which do not multiply`);
    if (alpha && alpha.data.length !== 1) throw badInput(`LoRA "${name}": the alpha of ${key} is not a scalar`);
    modules.push({ component: parsed.component, module: parsed.module, flat: parsed.flat, key, down, up, alpha: alpha?.data[0] });
  }
  const baseModelVersion = header.metadata.ss_base_model_version;
  return { name, path, modules, unsupported, family: familyOfVersion(baseModelVersion), baseModelVersion };
}

/** Refuses a LoRA whose ss_base_model_version names another family than the model's; a model of unknown
 * family refuses nothing. */
export function checkLoraFamily(name: string, baseModelVersion: string | undefined, model: Pick<ModelFolderInfo, 'id' | 'family'>): void {
  const family = familyOfVersion(baseModelVersion);
  if (model.family === 'UNKNOWN' || !family || family === model.family) return;
  throw badInput(`LoRA "${name}" was trained for ${family} (ss_base_model_version ${baseModelVersion}); model ${model.id} is ${model.family}`);
}
