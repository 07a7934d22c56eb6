// A request's LoRAs and embeddings applied to a model as it loads: files read and checked first, then
// the text encoder and the UNet each decoded, merged and handed to onnxruntime from memory — only
// those the adapters change; the others load from their files as without adapters.
import { stat } from 'node:fs/promises';
import { addEmbeddings, readEmbedding, type Embedding, type EmbeddingRequest } from '../embeddings.ts';
import { badInput } from '../errors.ts';
import type { ModelFolderInfo } from '../model-folder.ts';
import type { ModelBuffer } from '../onnx-model.ts';
import type { ClipTokenizer } from '../tokenizer.ts';
import { checkLoraFamily, checkSafetensorsPath, readLora, type LoraComponent, type LoraFile } from './lora-file.ts';
import { LoraMerger, type LoraUpdate } from './merge.ts';
import { ModelEditor } from './model-editor.ts';
import { diffusersUnetName, unetLayout } from './sgm-unet.ts';
import type { WeightSlot } from './weights.ts';

export interface LoraRequest {
  /** How the request named it, for messages. */
  name: string;
  path: string;
  /** Multiplier of the text encoder's update, and of the UNet's unless `unetWeight` is given. */
  weight: number;
  unetWeight?: number;
}

/** A request's adapters in a canonical order, so that the same set is the same cache entry. */
export interface Adapters {
  loras: LoraRequest[];
  embeddings: EmbeddingRequest[];
}

/** Checks a request's LoRAs and embeddings (BAD_USER_INPUT), before anything is read. */
export function checkAdapters(loras: readonly LoraRequest[], embeddings: readonly EmbeddingRequest[]): void {
  for (const lora of loras) {
    if (typeof lora.name !== 'string' || lora.name === '' || typeof lora.path !== 'string') throw badInput('a LoRA needs a name and a path');
    for (const w of [lora.weight, lora.unetWeight ?? 0]) {
      if (typeof w !== 'number' || !Number.isFinite(w)) throw badInput(`LoRA "${lora.name}": its weight must be a finite number, got ${w}`);
    }
    checkSafetensorsPath('LoRA', lora.name, lora.path);
  }
  const tokens = new Map<string, string>();
  for (const { token, path } of embeddings) {
    if (typeof token !== 'string' || token.trim() !== token || token === '' || typeof path !== 'string') {
      throw badInput(`an embedding needs a trigger word without surrounding spaces and a path, got ${JSON.stringify(token)}`);
    }
    if ((tokens.get(token) ?? path) !== path) throw badInput(`two embeddings have the trigger word "${token}"`);
    tokens.set(token, path);
    checkSafetensorsPath('embedding', token, path);
  }
}

/** The adapters that change the model, merged and sorted; undefined when none does. The same file twice
 * adds its weights, as two applications of it would. */
export function normalizeAdapters(loras: readonly LoraRequest[] = [], embeddings: readonly EmbeddingRequest[] = []): Adapters | undefined {
  const byPath = new Map<string, LoraRequest>();
  for (const lora of loras) {
    const seen = byPath.get(lora.path);
    const unetWeight = lora.unetWeight ?? lora.weight;
    if (!seen) byPath.set(lora.path, { ...lora, unetWeight });
    else byPath.set(lora.path, { ...seen, weight: seen.weight + lora.weight, unetWeight: seen.unetWeight! + unetWeight });
  }
  const merged = [...byPath.values()].filter((l) => l.weight !== 0 || l.unetWeight !== 0).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const unique = [...new Map(embeddings.map((e) => [e.token, e])).values()].sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0));
  return merged.length || unique.length ? { loras: merged, embeddings: unique } : undefined;
}

/** Identifies an adapter set with the files as they are now, so that a file replaced on disk is read again. */
export async function adaptersKey({ loras, embeddings }: Adapters): Promise<string> {
  const version = async (kind: string, name: string, path: string) => {
    const s = await stat(path).catch(() => {
      throw badInput(`${kind} "${name}": file ${path} not found`);
    });
    return `${s.size}:${s.mtimeMs}`;
  };
  const parts = [
    ...(await Promise.all(loras.map(async (l) => ['lora', l.name, l.path, l.weight, l.unetWeight, await version('LoRA', l.name, l.path)]))),
    ...(await Promise.all(embeddings.map(async (e) => ['embedding', e.token, e.path, await version('embedding', e.token, e.path)]))),
  ];
  return JSON.stringify(parts);
}

export interface LoraMerge {
  file: LoraFile;
  /** The request's multiplier for the component being merged. */
  weight: number;
}

/** Module keys of a LoRA that found no layer, or a layer of another shape. */
export interface MergeReport {
  unmatched: string[];
  misfit: string[];
}

/** Merges the LoRAs' modules for `component` into the editor's model, in float32, cast back to each
 * weight's element type; reports, per LoRA, the modules that were left out. */
export async function mergeLoras(editor: ModelEditor, component: LoraComponent, loras: readonly LoraMerge[]): Promise<MergeReport[]> {
  const targets = new Map<WeightSlot, LoraUpdate[]>();
  const reports = loras.map((): MergeReport => ({ unmatched: [], misfit: [] }));
  const layout = component === 'unet' ? unetLayout(editor.weights.modules) : undefined;
  // kohya's flattened names: diffusers' module paths, or for SDXL UNets the LDM ones (see sgm-unet.ts).
  const flatSlot = (name: string) => editor.weights.getFlat((layout && diffusersUnetName(name, layout)) ?? name);
  loras.forEach(({ file, weight }, i) => {
    for (const m of file.modules) {
      if (m.component !== component) continue;
      const slot = m.flat ? flatSlot(m.module) : editor.weights.get(m.module);
      if (!slot || slot.node.opType === 'Gather') {
        reports[i].unmatched.push(m.key);
        continue;
      }
      const [out, ...rest] = torchShape(slot);
      const rank = m.down.shape[0];
      const downTail = m.down.shape.slice(1);
      // A Linear-shaped down projection also fits a 1×1 convolution.
      const fits = m.up.shape[0] === out && (downTail.join() === rest.join() || (downTail.length === 1 && downTail[0] === rest[0] && rest.slice(1).every((d) => d === 1)));
      if (!fits) {
        reports[i].misfit.push(m.key);
        continue;
      }
      const updates = targets.get(slot) ?? [];
      updates.push({ up: m.up.data, down: m.down.data, rank, scale: weight * (m.alpha === undefined ? 1 : m.alpha / rank) });
      targets.set(slot, updates);
    }
  });
  if (targets.size === 0) return reports;
  const merger = await LoraMerger.create();
  try {
    for (const [slot, updates] of targets) {
      const [out, ...rest] = torchShape(slot);
      editor.write(slot, await merger.merge(await editor.read(slot), out, rest.reduce((a, b) => a * b, 1), slot.transposed, updates));
    }
  } finally {
    await merger.release();
  }
  return reports;
}

/** The weight's shape as torch holds it: [out, in] or [out, in, kh, kw]. */
function torchShape(slot: WeightSlot): number[] {
  const dims = slot.initializer.dims;
  return slot.transposed ? [dims[1], dims[0]] : [...dims];
}

interface LoraUse {
  file: LoraFile;
  weights: Record<LoraComponent, number>;
  report: MergeReport;
}

export class Adaptation {
  private readonly warningList: string[] = [];
  private expansionMap = new Map<string, string[]>();

  private constructor(
    private readonly info: ModelFolderInfo,
    private readonly loras: LoraUse[],
    private readonly embeddings: Embedding[],
  ) {}

  /** Reads the LoRA and embedding files and refuses LoRAs made for another model family. */
  static async prepare(info: ModelFolderInfo, adapters: Adapters): Promise<Adaptation> {
    const loras: LoraUse[] = [];
    for (const request of adapters.loras) {
      const file = await readLora(request.name, request.path);
      checkLoraFamily(file.name, file.baseModelVersion, info);
      loras.push({ file, weights: { text_encoder: request.weight, text_encoder_2: request.weight, unet: request.unetWeight ?? request.weight }, report: { unmatched: [], misfit: [] } });
    }
    const embeddings = await Promise.all(adapters.embeddings.map(readEmbedding));
    return new Adaptation(info, loras, embeddings);
  }

  /** The text encoder with the LoRAs merged and the embeddings added (to it and to `tokenizer`), or
   * undefined when neither changes it. `finish` edits the graph further before it is encoded (a model
   * in memory cannot be read again from its file). */
  async textEncoder(path: string, tokenizer: ClipTokenizer, finish?: (editor: ModelEditor) => Promise<void>): Promise<ModelBuffer | undefined> {
    const loras = this.using('text_encoder');
    if (!loras.length && !this.embeddings.length) return undefined;
    const editor = await ModelEditor.open(path);
    await this.merge(editor, 'text_encoder');
    if (this.embeddings.length) {
      const { expansions, warnings } = await addEmbeddings(editor, tokenizer, this.embeddings, { sdxl: this.info.family === 'SDXL' });
      this.expansionMap = expansions;
      this.warningList.push(...warnings);
    }
    if (!editor.changed) return undefined;
    await finish?.(editor);
    return editor.toBuffer();
  }

  /** SDXL's second text encoder with the LoRAs' `lora_te2_` modules merged (at the text encoder's
   * weight) and the embeddings' `clip_g` vectors added (to it and to `tokenizer`), or undefined when
   * neither changes it. Its trigger words expand as on the first encoder: both get the same tokens.
   * `only`: it is the model's only text encoder (a refiner), which tells the expansions and warnings. */
  async textEncoder2(path: string, tokenizer: ClipTokenizer, { only = false } = {}): Promise<ModelBuffer | undefined> {
    // Alone, it also says why embeddings that are not SDXL's are left out.
    if (!this.using('text_encoder_2').length && !(only ? this.embeddings.length : this.embeddings.some((e) => e.second))) return undefined;
    const editor = await ModelEditor.open(path);
    await this.merge(editor, 'text_encoder_2');
    const { expansions, warnings } = await addEmbeddings(editor, tokenizer, this.embeddings, { sdxl: true, second: true, warn: only });
    if (only) {
      this.expansionMap = expansions;
      this.warningList.push(...warnings);
    }
    return editor.changed ? editor.toBuffer() : undefined;
  }

  async unet(path: string): Promise<ModelBuffer | undefined> {
    const loras = this.using('unet');
    if (!loras.length) return undefined;
    const editor = await ModelEditor.open(path);
    await this.merge(editor, 'unet');
    return editor.changed ? editor.toBuffer() : undefined;
  }

  /** What multi-vector trigger words expand to, once the text encoder is adapted. */
  get expansions(): ReadonlyMap<string, readonly string[]> {
    return this.expansionMap;
  }

  /** Embeddings left out, and per LoRA the modules that found no layer of their shape in the model. */
  get warnings(): string[] {
    const list = (keys: string[]) => `${keys.slice(0, 3).join(', ')}${keys.length > 3 ? ', …' : ''}`;
    const warnings = [...this.warningList];
    for (const { file, report: { unmatched, misfit } } of this.loras) {
      const name = `LoRA "${file.name}"`;
      const total = file.modules.length;
      // A second text encoder's modules are for SDXL models, and a refiner has no first text encoder.
      const absent = this.info.family !== 'SDXL' ? 'text_encoder_2' : this.info.sdxl?.textEncoder2Only ? 'text_encoder' : undefined;
      const other = file.modules.filter((m) => m.component === absent).map((m) => m.key);
      const missing = [...unmatched, ...other];
      if (missing.length) warnings.push(`${name}: ${missing.length} of ${total} modules match no layer of model ${this.info.id} (${list(missing)})`);
      if (misfit.length) warnings.push(`${name}: ${misfit.length} of ${total} modules have other shapes than model ${this.info.id}'s layers (${list(misfit)})`);
      if (file.unsupported.length) warnings.push(`${name}: ${file.unsupported.length} entries are in a form that is not merged (LoHa, LoKr, DoRA…) and were left out (${list(file.unsupported)})`);
    }
    return warnings;
  }

  private using(component: LoraComponent): LoraUse[] {
    return this.loras.filter((l) => l.weights[component] !== 0 && l.file.modules.some((m) => m.component === component));
  }

  private async merge(editor: ModelEditor, component: LoraComponent): Promise<void> {
    const uses = this.using(component);
    const reports = await mergeLoras(editor, component, uses.map((use) => ({ file: use.file, weight: use.weights[component] })));
    uses.forEach((use, i) => {
      use.report.unmatched.push(...reports[i].unmatched);
      use.report.misfit.push(...reports[i].misfit);
    });
  }
}
