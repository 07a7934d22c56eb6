// AUTOMATIC1111's `<lora:name:weight>` extra-network tags (modules/extra_networks.py and the
// built-in Lora extension). A1111 strips every `<kind:…>` tag from the prompt; here only LoRA tags
// (and `lyco`, A1111's alias for them) are taken out, other kinds stay in the text.

export interface LoraTag {
  name: string;
  /** Multiplier for the text encoder; also the UNet's unless `unetWeight` was given. */
  weight: number;
  /** Multiplier for the UNet. */
  unetWeight: number;
}

export interface LoraExtraction {
  /** The prompt with LoRA tags removed (nothing put in their place, as A1111). */
  prompt: string;
  loras: LoraTag[];
  /** Tags whose name is empty or whose multipliers are not numbers, as written. */
  invalid: string[];
}

const extraNetworkTag = /<([\p{L}\p{N}_]+):([^>]+)>/gu;
const LORA_KINDS = new Set(['lora', 'lyco']);
// What Python's float() accepts, less inf/nan and digit separators.
const pythonFloat = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

function parseMultiplier(raw: string): number {
  const s = raw.trim();
  return pythonFloat.test(s) ? Number(s) : NaN;
}

/**
 * `<lora:name>`, `<lora:name:w>` (text encoder and UNet), `<lora:name:te:unet>`, and the named
 * forms `te=…`, `unet=…`. A1111's `dyn=` (rank limit) is not supported and is ignored.
 */
export function extractLoraTags(prompt: string): LoraExtraction {
  const loras: LoraTag[] = [];
  const invalid: string[] = [];
  const cleaned = prompt.replace(extraNetworkTag, (tag: string, kind: string, args: string) => {
    if (!LORA_KINDS.has(kind)) return tag;
    const positional: string[] = [];
    const named = new Map<string, string>();
    for (const item of args.split(':')) {
      const parts = item.split('=');
      if (parts.length === 2) named.set(parts[0], parts[1]);
      else positional.push(item);
    }
    const te = named.has('te') ? parseMultiplier(named.get('te')!) : positional.length > 1 ? parseMultiplier(positional[1]) : 1;
    const unet = named.has('unet')
      ? parseMultiplier(named.get('unet')!)
      : positional.length > 2
        ? parseMultiplier(positional[2])
        : te;
    const name = positional[0] ?? '';
    if (name === '' || !Number.isFinite(te) || !Number.isFinite(unet)) invalid.push(tag);
    else loras.push({ name, weight: te, unetWeight: unet });
    return '';
  });
  return { prompt: cleaned, loras, invalid };
}
