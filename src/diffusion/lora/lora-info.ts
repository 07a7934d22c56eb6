// LoRA files described from their safetensors headers alone: kohya's training metadata (ss_*) says the
// base model, the network's rank and alpha, and the tags it was trained on.
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { readSafetensorsHeader } from '../safetensors.ts';

export interface LoraFileInfo {
  /** The file name without its extension. */
  id: string;
  name: string;
  path: string;
  sizeBytes: number;
  /** ss_base_model_version, e.g. sd_v1, sd_v2, sdxl_base_v1-0. */
  baseModelVersion?: string;
  networkDim?: number;
  networkAlpha?: number;
  /** Training tags, most frequent first. */
  triggerWords: string[];
  /** Why the file cannot be used, when it cannot. */
  error?: string;
}

/** Tags of ss_tag_frequency (`{"dataset": {"tag": count}}`), summed over datasets, most frequent first. */
export function triggerWords(tagFrequency: string | undefined): string[] {
  if (!tagFrequency) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(tagFrequency);
  } catch {
    return [];
  }
  const counts = new Map<string, number>();
  for (const dataset of Object.values(parsed && typeof parsed === 'object' ? parsed : {})) {
    if (!dataset || typeof dataset !== 'object') continue;
    for (const [tag, count] of Object.entries(dataset as Record<string, unknown>)) {
      const word = tag.trim();
      if (word && typeof count === 'number') counts.set(word, (counts.get(word) ?? 0) + count);
    }
  }
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([word]) => word);
}

const number = (text: string | undefined) => {
  const value = text === undefined ? NaN : Number(text);
  return Number.isFinite(value) ? value : undefined;
};

/** Describes the LoRA file at `path`; an unreadable or invalid file is described with `error`. */
export async function inspectLoraFile(path: string): Promise<LoraFileInfo> {
  const id = basename(path, extname(path));
  const sizeBytes = await stat(path).then((s) => s.size, () => 0);
  try {
    const { metadata } = await readSafetensorsHeader(path);
    return {
      id,
      name: metadata.ss_output_name || metadata['modelspec.title'] || id,
      path,
      sizeBytes,
      baseModelVersion: metadata.ss_base_model_version || undefined,
      networkDim: number(metadata.ss_network_dim),
      networkAlpha: number(metadata.ss_network_alpha),
      triggerWords: triggerWords(metadata.ss_tag_frequency),
    };
  } catch (error) {
    return { id, name: id, path, sizeBytes, triggerWords: [], error: `not a valid safetensors file: ${(error as Error).message}` };
  }
}

/** The .safetensors files of a LoRA folder (SDQL_LORAS_DIR), sorted by file name; a missing folder has none. */
export async function listLoras(dir: string): Promise<LoraFileInfo[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  const names = entries
    .filter((e) => !e.isDirectory() && e.name.toLowerCase().endsWith('.safetensors'))
    .map((e) => e.name)
    .sort();
  return Promise.all(names.map((name) => inspectLoraFile(join(dir, name))));
}
