// AUTOMATIC1111's "infotext": the generation parameters as text (prompt, "Negative prompt: …",
// then "Key: value, …"), which its UI, civitai and most image tools read from a PNG's
// "parameters" chunk. Written and parsed as its modules/infotext_utils.py does.
import type { SchedulerName } from './schedulers/index.ts';

/** AUTOMATIC1111's sampler names for ours (PNDM without PRK steps is its PLMS). */
export const A1111_SAMPLERS: Record<SchedulerName, string> = {
  DDIM: 'DDIM',
  PNDM: 'PLMS',
  LMS: 'LMS',
  EULER: 'Euler',
  EULER_A: 'Euler a',
  HEUN: 'Heun',
  DPM2: 'DPM2',
  DPMPP_2M: 'DPM++ 2M',
  DPMPP_2M_KARRAS: 'DPM++ 2M Karras',
  UNIPC: 'UniPC',
};

export interface InfotextParams {
  prompt: string;
  negativePrompt: string;
  steps: number;
  scheduler: SchedulerName;
  guidanceScale: number;
  seed: number;
  width: number;
  height: number;
  modelHash?: string;
  modelName?: string;
  strength?: number;
  eta?: number;
  guidanceRescale?: number;
  /** Further "Key: value" settings, appended in order. */
  extra?: Record<string, string | number>;
}

/** A value quoted as AUTOMATIC1111 quotes one: JSON string syntax when it holds a comma, colon or newline. */
function quote(value: string): string {
  return /[,:\n]/.test(value) ? JSON.stringify(value) : value;
}

export function formatInfotext(p: InfotextParams): string {
  const settings: [string, string | number | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', A1111_SAMPLERS[p.scheduler]],
    ['CFG scale', p.guidanceScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.modelName],
    ['Denoising strength', p.strength],
    [p.scheduler === 'DDIM' ? 'Eta DDIM' : 'Eta', p.eta || undefined],
    ['CFG Rescale phi', p.guidanceRescale || undefined],
    ...Object.entries(p.extra ?? {}),
  ];
  const line = settings
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k}: ${quote(String(v))}`)
    .join(', ');
  return [p.prompt, ...(p.negativePrompt ? [`Negative prompt: ${p.negativePrompt}`] : []), line].join('\n');
}

export interface ParsedInfotext {
  prompt: string;
  negativePrompt: string;
  /** Every "Key: value" setting as written (quotes removed). */
  settings: Record<string, string>;
}

const PARAM = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

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
  const settings: Record<string, string> = {};
  for (const [, key, raw] of lastLine.matchAll(PARAM)) {
    let value = raw.trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        // Left as written: A1111 does the same with a malformed quoted value.
      }
    }
    settings[key.trim()] = value;
  }
  return { prompt, negativePrompt, settings };
}

/** Our scheduler for an AUTOMATIC1111 sampler name, when we have it. */
export function schedulerFromA1111(sampler: string | undefined): SchedulerName | undefined {
  return (Object.keys(A1111_SAMPLERS) as SchedulerName[]).find((k) => A1111_SAMPLERS[k] === sampler);
}
