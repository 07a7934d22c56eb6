// AUTOMATIC1111's "infotext": the generation parameters as text (prompt, "Negative prompt: …",
// then "Key: value, …"), which its UI, civitai and most image tools read from a PNG's
// "parameters" chunk. Written as AUTOMATIC1111 1.10's create_infotext (modules/processing.py)
// writes it, and read as its parse_generation_parameters (modules/infotext_utils.py) and its
// sampler and schedule-type choice (modules/sd_samplers.py) read it.
import { a1111UpscalerName, type HiresRequest } from './hires.ts';
import type { ScheduleType, SchedulerName } from './schedulers/index.ts';

/** AUTOMATIC1111 1.10's sampler names for ours (PNDM without PRK steps is its PLMS). */
export const A1111_SAMPLERS: Record<SchedulerName, string> = {
  DDIM: 'DDIM',
  PNDM: 'PLMS',
  LMS: 'LMS',
  EULER: 'Euler',
  EULER_A: 'Euler a',
  HEUN: 'Heun',
  DPM2: 'DPM2',
  DPMPP_2M: 'DPM++ 2M',
  DPMPP_2M_KARRAS: 'DPM++ 2M',
  DPMPP_2M_SDE: 'DPM++ 2M SDE',
  UNIPC: 'UniPC',
  LCM: 'LCM',
};

/**
 * AUTOMATIC1111 1.10's samplers (modules/sd_samplers_kdiffusion.py, _timesteps.py, _lcm.py), each with
 * the schedule its "Automatic" schedule type stands for: the sampler's own default, else "Uniform"
 * (the model's sigmas at evenly spaced timesteps); null for the samplers that have a fixed
 * schedule and ignore the schedule type.
 */
const A1111_SAMPLER_SCHEDULES: Record<string, string | null> = {
  'DPM++ 2M': 'Karras',
  'DPM++ SDE': 'Karras',
  'DPM++ 2M SDE': 'Exponential',
  'DPM++ 2M SDE Heun': 'Exponential',
  'DPM++ 2S a': 'Karras',
  'DPM++ 3M SDE': 'Exponential',
  'Euler a': 'Uniform',
  Euler: 'Uniform',
  LMS: 'Uniform',
  Heun: 'Uniform',
  DPM2: 'Karras',
  'DPM2 a': 'Karras',
  'DPM fast': 'Uniform',
  'DPM adaptive': 'Uniform',
  Restart: 'Karras',
  DDIM: null,
  'DDIM CFG++': null,
  PLMS: null,
  UniPC: null,
  LCM: 'Uniform',
};

/** AUTOMATIC1111 1.10's schedule types (modules/sd_schedulers.py): label, then name and aliases. */
const A1111_SCHEDULE_TYPES: readonly (readonly string[])[] = [
  ['Automatic', 'automatic'],
  ['Uniform', 'uniform'],
  ['Karras', 'karras'],
  ['Exponential', 'exponential'],
  ['Polyexponential', 'polyexponential'],
  ['SGM Uniform', 'sgm_uniform', 'SGMUniform'],
  ['KL Optimal', 'kl_optimal'],
  ['Align Your Steps', 'align_your_steps'],
  ['Simple', 'simple'],
  ['Normal', 'normal'],
  ['DDIM', 'ddim'],
  ['Beta', 'beta'],
];

/** Our samplers whose diffusers class reads `use_karras_sigmas` (and later diffusers' `use_exponential_sigmas`) from the model's config. */
const RAMP_CONFIGURABLE: readonly SchedulerName[] = ['EULER', 'HEUN', 'LMS', 'DPMPP_2M', 'DPMPP_2M_SDE'];

/**
 * The schedule type that gives AUTOMATIC1111 our scheduler's noise levels; undefined for the samplers
 * that ignore it. KARRAS and EXPONENTIAL (asked for, or set in the model's config) are its "Karras"
 * and "Exponential". Otherwise our sigmas follow the model's `timestep_spacing` (diffusers' default
 * for these classes is "linspace"): evenly spaced timesteps from the last to the first are its
 * "Uniform"; "leading" (a stride of 1000 // steps, offset by one) is its "DDIM" schedule; "trailing",
 * and DPM-Solver's steps + 1 evenly spaced timesteps less the last, are its "SGM Uniform".
 */
export function a1111ScheduleType(scheduler: SchedulerName, schedulerConfig: Record<string, unknown> = {}, scheduleType: ScheduleType = 'DEFAULT'): string | undefined {
  if (A1111_SAMPLER_SCHEDULES[A1111_SAMPLERS[scheduler]] === null) return undefined;
  // LCM's timesteps, evenly spaced from the top of its distillation schedule down, are nearest SGM Uniform's.
  if (scheduler === 'LCM') return 'SGM Uniform';
  const configured = RAMP_CONFIGURABLE.includes(scheduler);
  if (scheduleType === 'KARRAS' || scheduler === 'DPMPP_2M_KARRAS' || (scheduleType === 'DEFAULT' && configured && schedulerConfig.use_karras_sigmas === true)) return 'Karras';
  if (scheduleType === 'EXPONENTIAL' || (scheduleType === 'DEFAULT' && configured && schedulerConfig.use_exponential_sigmas === true)) return 'Exponential';
  if (scheduler === 'DPMPP_2M' || scheduler === 'DPMPP_2M_SDE') return 'SGM Uniform';
  const spacing = schedulerConfig.timestep_spacing ?? 'linspace';
  return spacing === 'leading' ? 'DDIM' : spacing === 'trailing' ? 'SGM Uniform' : 'Uniform';
}

/** A LoRA applied to an image, as `<lora:name:te:unet>` tags and "Lora hashes" name it. */
export interface InfotextLora {
  name: string;
  weight: number;
  unetWeight?: number;
  /** AUTOMATIC1111's short hash (see a1111-hashes.ts). */
  hash?: string;
  /** Applied through the request's `loras` rather than a tag of the prompt: its tag is added. */
  fromInput?: boolean;
}

export interface InfotextParams {
  prompt: string;
  negativePrompt: string;
  steps: number;
  scheduler: SchedulerName;
  scheduleType?: ScheduleType;
  /** The model's scheduler_config.json: its timestep spacing decides the schedule type. */
  schedulerConfig?: Record<string, unknown>;
  /** 1 (the default) is not written, as AUTOMATIC1111 does. */
  clipSkip?: number;
  guidanceScale: number;
  seed: number;
  width: number;
  height: number;
  modelHash?: string;
  modelName?: string;
  /** A separate VAE file: its file name and AUTOMATIC1111's hash of it (the file's SHA-256, 10 digits). */
  vae?: { fileName: string; hash: string };
  strength?: number;
  /** This image's variation seed (variationSeed + i) and the strength, when above 0. */
  variationSeed?: number;
  variationStrength?: number;
  /** The hires fix's second pass; `width`/`height` above are the first pass's, as AUTOMATIC1111's Size. */
  hires?: HiresRequest;
  eta?: number;
  guidanceRescale?: number;
  promptSyntax?: 'A1111' | 'PLAIN';
  loras?: InfotextLora[];
  /** Embeddings the prompts used, by trigger word, with AUTOMATIC1111's short hash. */
  embeddings?: { name: string; hash?: string }[];
  /** Further "Key: value" settings, appended in order. */
  extra?: Record<string, string | number>;
}

/** A value quoted as AUTOMATIC1111's quote() quotes one: JSON string syntax when it holds a comma, colon or newline. */
function quote(value: string): string {
  return /[,:\n]/.test(value) ? JSON.stringify(value) : value;
}

/** A name as AUTOMATIC1111 lists it in "Lora hashes" and "TI hashes": without colons and commas. */
const hashName = (name: string) => name.replaceAll(':', '').replaceAll(',', '');
const hashList = (entries: { name: string; hash?: string }[]) => {
  const byName = new Map(entries.filter((e) => e.hash).map((e) => [hashName(e.name), e.hash!]));
  return byName.size ? [...byName].map(([name, hash]) => `${name}: ${hash}`).join(', ') : undefined;
};

function loraTag({ name, weight, unetWeight }: InfotextLora): string {
  return unetWeight === undefined || unetWeight === weight ? `<lora:${name}:${weight}>` : `<lora:${name}:${weight}:${unetWeight}>`;
}

/** The infotext, its settings in create_infotext's order. */
export function formatInfotext(p: InfotextParams): string {
  const added = (p.loras ?? []).filter((l) => l.fromInput).map(loraTag);
  // A tag adds no tokens where AUTOMATIC1111 strips it; a space keeps it a word of its own.
  const prompt = [p.prompt, ...added].filter((s) => s !== '').join(' ');
  const settings: [string, string | number | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', A1111_SAMPLERS[p.scheduler]],
    ['Schedule type', a1111ScheduleType(p.scheduler, p.schedulerConfig, p.scheduleType)],
    ['CFG scale', p.guidanceScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.modelName],
    ['VAE hash', p.vae?.hash],
    ['VAE', p.vae?.fileName],
    ['Variation seed', p.variationStrength ? p.variationSeed : undefined],
    ['Variation seed strength', p.variationStrength || undefined],
    ['Denoising strength', p.hires?.strength ?? p.strength],
    ['Clip skip', p.clipSkip !== undefined && p.clipSkip > 1 ? p.clipSkip : undefined],
    // extra_generation_params, as AUTOMATIC1111's txt2img sets them before the networks add theirs.
    ['Hires upscale', p.hires?.scale],
    ['Hires resize', p.hires && p.hires.scale === undefined ? `${p.hires.width}x${p.hires.height}` : undefined],
    ['Hires steps', p.hires?.steps],
    ['Hires upscaler', p.hires && a1111UpscalerName(p.hires.upscaler)],
    ['Lora hashes', hashList(p.loras ?? [])],
    ['TI hashes', hashList(p.embeddings ?? [])],
    // AUTOMATIC1111 has no plain-text prompts; its nearest is weights ignored.
    ['Emphasis', p.promptSyntax === 'PLAIN' ? 'None' : undefined],
    // Only DDIM reads η here; AUTOMATIC1111 reads a bare "Eta" as the ancestral samplers' η.
    ['Eta DDIM', p.scheduler === 'DDIM' && p.eta ? p.eta : undefined],
    ['CFG Rescale phi', p.guidanceRescale || undefined],
    ...Object.entries(p.extra ?? {}),
  ];
  const line = formatSettings(settings);
  return [prompt, ...(p.negativePrompt ? [`Negative prompt: ${p.negativePrompt}`] : []), line].join('\n');
}

/** "Key: value, …" as AUTOMATIC1111 joins its settings (values with commas quoted); undefined and empty values left out. */
export function formatSettings(settings: readonly (readonly [string, string | number | undefined])[]): string {
  return settings
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}: ${quote(String(v))}`)
    .join(', ');
}

export interface ParsedInfotext {
  prompt: string;
  negativePrompt: string;
  /** Every "Key: value" setting as written (quotes removed). */
  settings: Record<string, string>;
}

// AUTOMATIC1111's re_param, whose \w is Python's: Unicode letters and digits, not JavaScript's ASCII.
const PARAM = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;

/** Parses infotext as AUTOMATIC1111's parse_generation_parameters does. */
export function parseInfotext(text: string): ParsedInfotext {
  const lines = text.trim().split('\n');
  let lastLine = lines.at(-1) ?? '';
  if ([...lastLine.matchAll(PARAM)].length < 3) {
    lines.push(lastLine);
    lastLine = '';
  }
  let prompt = '';
  let negativePrompt = '';
  let negative = false;
  for (let line of lines.slice(0, -1)) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      negative = true;
      line = line.slice(16).trim();
    }
    if (negative) negativePrompt += (negativePrompt ? '\n' : '') + line;
    else prompt += (prompt ? '\n' : '') + line;
  }
  return { prompt, negativePrompt, settings: parseSettings(lastLine) };
}

/** The "Key: value" settings of one line, as parseInfotext reads its last line (quotes removed). */
export function parseSettings(line: string): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const [, key, raw] of line.matchAll(PARAM)) {
    let value = raw.trim();
    // AUTOMATIC1111 drops a key without a value (its parser fails on it).
    if (value === '') continue;
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        // Left as written: A1111 does the same with a malformed quoted value.
      }
    }
    settings[key.trim()] = value;
  }
  return settings;
}

/**
 * The sampler and schedule AUTOMATIC1111 1.10 runs for an infotext's "Sampler" and "Schedule type"
 * (its get_sampler_and_scheduler): a schedule named at the end of the sampler ("DPM++ 2M Karras",
 * the form before 1.9) wins, "Automatic" or none is the sampler's default, an unknown sampler is its
 * first, DPM++ 2M. `scheduleType` is null for samplers that ignore it.
 */
export function a1111Selection(sampler: string | undefined, scheduleType: string | undefined): { sampler: string; known: boolean; scheduleType: string | null } {
  let name = sampler || 'DPM++ 2M';
  let found = A1111_SCHEDULE_TYPES.find((names) => names.slice(0, 2).includes(scheduleType ?? '')) ?? A1111_SCHEDULE_TYPES[0];
  for (const names of A1111_SCHEDULE_TYPES) {
    const suffix = names.find((option) => name.endsWith(` ${option}`));
    if (suffix !== undefined) {
      found = names;
      name = name.slice(0, -(suffix.length + 1));
    }
  }
  const known = Object.hasOwn(A1111_SAMPLER_SCHEDULES, name);
  const chosen = known ? name : 'DPM++ 2M';
  const automatic = A1111_SAMPLER_SCHEDULES[chosen];
  return { sampler: chosen, known, scheduleType: automatic === null ? null : found[0] === 'Automatic' ? automatic : found[0] };
}

/** Our scheduler and schedule type for each AUTOMATIC1111 schedule type of each of its samplers we have (see a1111ScheduleType). */
type Ours = [readonly string[] | null, SchedulerName, ScheduleType][];
const SPACINGS = ['Uniform', 'DDIM', 'SGM Uniform'];
const rampable = (ours: SchedulerName, spacings: readonly string[]): Ours => [
  [spacings, ours, 'DEFAULT'],
  [['Karras'], ours, 'KARRAS'],
  [['Exponential'], ours, 'EXPONENTIAL'],
];
const OURS: Record<string, Ours> = {
  DDIM: [[null, 'DDIM', 'DEFAULT']],
  PLMS: [[null, 'PNDM', 'DEFAULT']],
  UniPC: [[null, 'UNIPC', 'DEFAULT']],
  // LCMScheduler's timesteps are its own, whatever the schedule type.
  LCM: [[null, 'LCM', 'DEFAULT']],
  // DPM++ 2M Karras keeps its own name, which requests have always used.
  'DPM++ 2M': [
    [['Karras'], 'DPMPP_2M_KARRAS', 'KARRAS'],
    [['SGM Uniform', 'Uniform'], 'DPMPP_2M', 'DEFAULT'],
    [['Exponential'], 'DPMPP_2M', 'EXPONENTIAL'],
  ],
  'DPM++ 2M SDE': rampable('DPMPP_2M_SDE', ['SGM Uniform', 'Uniform']),
  ...Object.fromEntries((['EULER', 'LMS', 'HEUN'] as const).map((ours) => [A1111_SAMPLERS[ours], rampable(ours, SPACINGS)])),
  ...Object.fromEntries((['EULER_A', 'DPM2'] as const).map((ours): [string, Ours] => [A1111_SAMPLERS[ours], [[SPACINGS, ours, 'DEFAULT']]])),
};

/** Our scheduler and schedule type for an infotext's sampler and schedule type, when we have one that samples alike. */
export function schedulerFromA1111(sampler: string | undefined, scheduleType?: string): { scheduler: SchedulerName; scheduleType: ScheduleType } | undefined {
  const selected = a1111Selection(sampler, scheduleType);
  if (!sampler || !selected.known) return undefined;
  const found = OURS[selected.sampler]?.find(([types]) => types === null || types.includes(selected.scheduleType ?? ''));
  return found && { scheduler: found[1], scheduleType: found[2] };
}
