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
import { plan, type Plan, type Rect } from '../image/geometry.ts';
import { pngToRgba, rgbaToPng } from '../image/png.ts';
import { resize } from '../image/resample.ts';
import { maskToRgba, type Rgba } from '../image/rgba.ts';
import type { Settings } from './settings.ts';

export interface ModelInfo {
  id: string;
  name: string;
  canImg2img: boolean;
  canInpaint: boolean;
  nativeWidth: number | null;
  nativeHeight: number | null;
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
  /** Whether the server has the editing fields (`mask`, `outpaint`). */
  canEdit: boolean;
  /** The last generation's seed, for "reuse last". */
  lastSeed: number | null;
}

export interface RunResult {
  generation: PanelGenerationFragment;
  documentId: number;
}

/** What the user sees for an error: the server's or host's own message, anything else as it is. */
export function describe(error: unknown): string {
  if (error instanceof ApiError && error.kind === 'unauthorized') return `the server refused the token: ${error.message} (set the token in Connection)`;
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
  const p: Plan = plan({ canvas: document, selection: selection?.bounds ?? null, native, context: settings.context });

  const input: GenerateInput = {
    modelId: model.id,
    prompt: settings.prompt,
    negativePrompt: settings.negativePrompt || undefined,
    steps: settings.steps,
    guidanceScale: settings.guidanceScale,
    scheduler: settings.scheduler as GenerateInput['scheduler'],
    numImages: settings.numImages,
    seed: settings.seedMode === 'fixed' ? settings.seed : settings.seedMode === 'last' && options.lastSeed !== null ? options.lastSeed : undefined,
  };
  const files: Record<string, Blob> = {};
  let mode = 'txt2img';
  // Without the editing fields, the selection shows through a layer mask instead.
  let layerMask = selection !== null;
  if (!p.read) {
    Object.assign(input, p.size);
  } else {
    if (!model.canImg2img) throw new HostError(`${model.name} has no VAE encoder, so it cannot start from the document's pixels: deselect to generate from nothing, or pick another model`);
    const pixels = await host.read(document.id, p.read);
    files['input.initImage.file'] = png(resize(pixels, p.initSize!.width, p.initSize!.height));
    input.initImage = { file: null as unknown as Blob };
    const editing = options.canEdit && model.canInpaint;
    if (p.outpaint) {
      if (!editing) throw new HostError('the selection reaches past the canvas, which needs outpainting: pick a model that can inpaint (and a server with `outpaint`), or select inside the canvas');
      mode = 'outpaint';
      input.outpaint = p.outpaint;
      if (settings.selectionMode === 'inpaint') {
        files['input.mask.file'] = png(resize(maskToRgba(maskOver(selection!, p.read), p.read.width, p.read.height), p.initSize!.width, p.initSize!.height));
        input.mask = { file: null as unknown as Blob };
      }
    } else if (settings.selectionMode === 'inpaint' && editing) {
      mode = 'inpaint';
      files['input.mask.file'] = png(resize(maskToRgba(maskOver(selection!, p.region), p.region.width, p.region.height), p.size.width, p.size.height));
      input.mask = { file: null as unknown as Blob };
      Object.assign(input, p.size);
    } else {
      mode = 'img2img';
      input.strength = settings.strength;
      Object.assign(input, p.size);
    }
    layerMask = true;
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
  const mask = selection && layerMask ? { bounds: p.region, mask: maskOver(selection, p.region) } : undefined;
  for (const image of generation.images) {
    const rgba = pngToRgba(await api.image(image.url));
    layers.push({ name: layerName(generation.prompt, image.seed), image: resize(rgba, p.region.width, p.region.height), bounds: p.region, mask });
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
