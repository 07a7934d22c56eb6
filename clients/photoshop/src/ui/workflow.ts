// One generation from the document: plan it from the selection, read and upload the pixels, follow
// its progress, and place the results in the document it came from. The host's modal scopes are
// short and never span the network: read, then upload; download, then place.
import { ApiError, type SdqlApi } from '../api/client.ts';
import {
  PanelCancelDocument,
  PanelGenerateDocument,
  PanelGenerationDocument,
  PanelProgressDocument,
  PanelQueueDocument,
  type GenerateInput,
  type PanelGenerationFragment,
  type PanelProgressSubscription,
} from '../api/generated/graphql.ts';
import { HostError, unsupportedReason, type Host, type PlacedLayer, type SelectionMask } from '../host/host.ts';
import { modelLimits, plan, planOnlyMasked, type Limits, type Plan, type Rect } from '../image/geometry.ts';
import { pngToRgba, rgbaToPng } from '../image/png.ts';
import { resize } from '../image/resample.ts';
import { crop, maskToRgba, type Rgba } from '../image/rgba.ts';
import type { Settings } from './settings.ts';

export interface ModelInfo {
  id: string;
  name: string;
  canImg2img: boolean;
  canInpaint: boolean;
  nativeWidth: number | null;
  nativeHeight: number | null;
  vaeScaleFactor: number | null;
  /** Its own pixel limit, from a server that states one (`Model.maxPixels`). */
  maxPixels?: number | null;
}

/** The editing fields of the server's `GenerateInput` (introspected: older servers lack them). */
export interface Editing {
  /** `mask`, `inpaintArea` and `onlyMaskedPadding`: the server cuts the selection out and pastes it back. */
  onlyMasked: boolean;
  /** `outpaint`: a selection past the canvas edge. */
  outpaint: boolean;
}

export type Progress = PanelProgressSubscription['generationProgress'];

export interface RunCallbacks {
  /** The submitted generation (its id, queue position). */
  submitted(generation: PanelGenerationFragment, mode: string): void;
  progress(event: Progress, queuePosition: number | null): void;
}

export interface RunOptions {
  api: SdqlApi;
  host: Host;
  settings: Settings;
  model: ModelInfo;
  editing: Editing;
  /** The server's `system.limits` (or the fallback); the model's `vaeScaleFactor` and `maxPixels` replace them (modelLimits). */
  limits: Limits;
  /** The last generation's seed, for "reuse last". */
  lastSeed: number | null;
}

export interface RunResult {
  generation: PanelGenerationFragment;
  documentId: number;
}

/** What the user sees for an error: the server's or host's own message, anything else as it is. */
export function describe(error: unknown): string {
  if (error instanceof ApiError || error instanceof HostError || error instanceof RangeError) return error.message;
  return `unexpected error: ${error instanceof Error ? error.message : String(error)}`;
}

function png(image: Rgba): Blob {
  return new Blob([rgbaToPng(image) as BlobPart], { type: 'image/png' });
}

/** The selection's mask over `rect` (0 outside the selection), as 1 byte a pixel. */
function maskOver(selection: SelectionMask, rect: Rect): Uint8Array {
  const out = new Uint8Array(rect.width * rect.height);
  const s = selection.bounds;
  for (let y = Math.max(rect.top, s.top); y < Math.min(rect.top + rect.height, s.top + s.height); y++) {
    for (let x = Math.max(rect.left, s.left); x < Math.min(rect.left + rect.width, s.left + s.width); x++) {
      out[(y - rect.top) * rect.width + x - rect.left] = selection.mask[(y - s.top) * s.width + x - s.left];
    }
  }
  return out;
}

/** Submits a generation from the active document; resolves when it is placed (or fails, or is canceled). */
export async function runGeneration(options: RunOptions, callbacks: RunCallbacks, signal: { canceled: boolean; id?: string }): Promise<RunResult> {
  const { api, host, settings, model } = options;
  const document = await host.activeDocument();
  if (!document) throw new HostError('open a document first: the panel generates into the document in front');
  const unsupported = unsupportedReason(document);
  if (unsupported) throw new HostError(unsupported);
  const selection = await host.selection(document.id);
  const native = { width: model.nativeWidth ?? 512, height: model.nativeHeight ?? 512 };
  const limits = modelLimits(options.limits, model);
  const planned = { canvas: document, native, context: settings.context, limits };
  const p: Plan = plan({ ...planned, selection: selection?.bounds ?? null });

  const input: GenerateInput = {
    modelId: model.id,
    prompt: settings.prompt,
    negativePrompt: settings.negativePrompt || undefined,
    steps: settings.steps,
    guidanceScale: settings.guidanceScale,
    scheduler: settings.scheduler as GenerateInput['scheduler'],
    numImages: settings.numImages,
    previewEvery: settings.previews ? 1 : 0,
    seed: settings.seedMode === 'fixed' ? settings.seed : settings.seedMode === 'last' && options.lastSeed !== null ? options.lastSeed : undefined,
  };
  const files: Record<string, Blob> = {};
  const attach = (field: 'initImage' | 'mask', image: Rgba) => {
    files[`input.${field}.file`] = png(image);
    input[field] = { file: null as unknown as Blob };
  };
  let mode = 'txt2img';
  // Where the server's images lie in the document: each is scaled to it, then cut to the selection.
  let covers: Rect = p.region;
  if (!p.read) {
    Object.assign(input, p.size);
  } else {
    if (!model.canImg2img) throw new HostError(`${model.name} has no VAE encoder, so it cannot start from the document's pixels: deselect to generate from nothing, or pick another model`);
    if (p.outpaint) {
      if (!options.editing.outpaint || !model.canInpaint) throw new HostError('the selection reaches past the canvas, which needs outpainting: pick a model that can inpaint (and a server with `outpaint`), or select inside the canvas');
      mode = 'outpaint';
      attach('initImage', resize(await host.read(document.id, p.read), p.initSize!.width, p.initSize!.height));
      input.outpaint = p.outpaint;
      if (settings.selectionMode === 'inpaint') attach('mask', resize(maskToRgba(maskOver(selection!, p.read), p.read.width, p.read.height), p.initSize!.width, p.initSize!.height));
    } else if (settings.selectionMode === 'inpaint' && options.editing.onlyMasked && model.canInpaint) {
      // The server cuts the selection out with its padding, paints it at the model's size and pastes it back.
      mode = 'inpaint';
      const m = planOnlyMasked({ ...planned, selection: selection!.bounds });
      attach('initImage', resize(await host.read(document.id, m.read), m.initSize.width, m.initSize.height));
      attach('mask', resize(maskToRgba(maskOver(selection!, m.read), m.read.width, m.read.height), m.initSize.width, m.initSize.height));
      Object.assign(input, m.size, { inpaintArea: 'ONLY_MASKED', onlyMaskedPadding: m.padding });
      covers = m.read;
    } else {
      // Without the editing fields (or when asked to redraw), img2img of the selection with context; the layer mask does the rest.
      mode = 'img2img';
      attach('initImage', resize(await host.read(document.id, p.read), p.size.width, p.size.height));
      input.strength = settings.strength;
      Object.assign(input, p.size);
    }
  }

  const { generate } = await api.request(PanelGenerateDocument, { input }, files);
  signal.id = generate.id;
  callbacks.submitted(generate, mode);
  if (signal.canceled) await api.request(PanelCancelDocument, { id: generate.id });
  const final = await follow(api, generate, callbacks);
  if (final.status === 'CANCELED') throw new HostError('canceled');
  if (final.status !== 'SUCCEEDED') throw new ApiError(`the generation failed: ${final.error ?? final.status}`, 'graphql');

  const generation = (await api.request(PanelGenerationDocument, { id: generate.id })).generation!;
  const layers: PlacedLayer[] = [];
  for (const image of generation.images) {
    const whole = resize(pngToRgba(await api.image(image.url)), covers.width, covers.height);
    const name = layerName(generation.prompt, image.seed);
    if (!selection) layers.push({ name, image: whole, bounds: covers });
    else {
      // Exactly the selection's bounds, under a layer mask of the selection.
      const s = selection.bounds;
      layers.push({ name, image: crop(whole, { left: s.left - covers.left, top: s.top - covers.top, width: s.width, height: s.height }), bounds: s, mask: selection });
    }
  }
  await host.place(document.id, layers, layers.length > 1 ? generation.prompt.slice(0, 60) : undefined);
  return { generation, documentId: document.id };
}

export function layerName(prompt: string, seed: number): string {
  const short = prompt.length > 48 ? `${prompt.slice(0, 47)}…` : prompt;
  return `${short} · ${seed}`;
}

/** Follows generationProgress to the end, with the queue position while it waits. */
function follow(api: SdqlApi, generation: PanelGenerationFragment, callbacks: RunCallbacks): Promise<Progress> {
  return new Promise((resolve, reject) => {
    let last: Progress | null = null;
    const stop = api.subscribe(PanelProgressDocument, { id: generation.id }, {
      next: async ({ generationProgress: event }) => {
        last = event;
        let position: number | null = null;
        if (event.status === 'QUEUED') {
          const { queue } = await api.request(PanelQueueDocument, {}).catch(() => ({ queue: { queued: [] as { id: string }[] } }));
          const index = queue.queued.findIndex((g) => g.id === generation.id);
          position = index >= 0 ? index + 1 : null;
        }
        callbacks.progress(event, position);
        if (['SUCCEEDED', 'FAILED', 'CANCELED'].includes(event.status)) {
          stop();
          resolve(event);
        }
      },
      error: (error) => reject(error),
      complete: () => (last ? resolve(last) : reject(new ApiError('the server ended the progress stream without a result', 'graphql'))),
    });
  });
}

/** Places an image of the history again: at the selection's bounds, or at its own size in the top left. */
export async function placeAgain(api: SdqlApi, host: Host, image: { url: string; seed: number; width: number; height: number }, prompt: string): Promise<void> {
  const document = await host.activeDocument();
  if (!document) throw new HostError('open a document first');
  const selection = await host.selection(document.id);
  const bounds = selection?.bounds ?? { left: 0, top: 0, width: image.width, height: image.height };
  const rgba = pngToRgba(await api.image(image.url));
  const mask = selection ? { bounds: selection.bounds, mask: selection.mask } : undefined;
  await host.place(document.id, [{ name: layerName(prompt, image.seed), image: resize(rgba, bounds.width, bounds.height), bounds, mask }]);
}
