// The host over Photoshop's UXP API (`photoshop` module, 25.0+): imaging for pixels, the DOM for
// documents and layers. Every change runs in one short core.executeAsModal with suspended history
// (one undo step); nothing waits on the network inside it.
import type { Rect } from '../image/geometry.ts';
import { createRgba, type Rgba } from '../image/rgba.ts';
import { HostError, type DocumentInfo, type Host, type PlacedLayer, type SelectionMask } from './host.ts';

/** The parts of the `photoshop` module the host uses (the tests give a fake with the same shape). */
export type PhotoshopModule = Pick<typeof import('photoshop'), 'app' | 'core' | 'imaging'>;
type ImageData = Awaited<ReturnType<PhotoshopModule['imaging']['createImageDataFromBuffer']>>;
type PsDocument = PhotoshopModule['app']['activeDocument'];

const SRGB = 'sRGB IEC61966-2.1';
const MODES: Record<string, string> = {
  RGBColorMode: 'RGB',
  CMYKColorMode: 'CMYK',
  grayscaleMode: 'Grayscale',
  labColorMode: 'Lab',
  bitmapMode: 'Bitmap',
  indexedColorMode: 'Indexed',
  duotoneMode: 'Duotone',
  multichannelMode: 'Multichannel',
};
const BITS: Record<string, 8 | 16 | 32> = { bitDepth8: 8, bitDepth16: 16, bitDepth32: 32 };

export class PhotoshopHost implements Host {
  constructor(private readonly ps: PhotoshopModule) {}

  async activeDocument(): Promise<DocumentInfo | null> {
    const doc = this.ps.app.activeDocument;
    return doc ? info(doc) : null;
  }

  async selection(id: number): Promise<SelectionMask | null> {
    const doc = this.document(id);
    const bounds = doc.selection.bounds;
    if (!bounds) return null;
    const rect = toRect(bounds);
    return this.modal('Read the selection', async () => {
      const { imageData, sourceBounds } = await this.ps.imaging.getSelection({ documentID: id, sourceBounds: bounds });
      try {
        const data = (await imageData.getData({ chunky: true })) as Uint8Array;
        // The selection's pixels, re-padded to its bounds (Photoshop returns only what lies on the canvas).
        const mask = new Uint8Array(rect.width * rect.height);
        blit(data, toRect(sourceBounds), 1, mask, rect);
        return { bounds: rect, mask };
      } finally {
        await imageData.dispose();
      }
    });
  }

  async read(id: number, rect: Rect): Promise<Rgba> {
    this.document(id);
    return this.modal('Read pixels', async () => {
      const result = await this.ps.imaging.getPixels({
        documentID: id,
        sourceBounds: toBounds(rect),
        // Whatever the document's mode and depth, the server gets 8-bit sRGB.
        colorSpace: 'RGB',
        colorProfile: SRGB,
        componentSize: 8,
      });
      const { imageData } = result;
      try {
        const data = (await imageData.getData({ chunky: true })) as Uint8Array;
        const out = createRgba(rect.width, rect.height);
        const got = toRect(result.sourceBounds);
        if (imageData.components === 4) blit(data, got, 4, out.data, rect);
        else blit(addAlpha(data), got, 4, out.data, rect);
        return out;
      } finally {
        await imageData.dispose();
      }
    });
  }

  async place(id: number, layers: PlacedLayer[], group?: string): Promise<void> {
    const doc = this.document(id);
    await this.modal('Place the sdql result', async (context) => {
      const suspension = await context.hostControl.suspendHistory({ documentID: id, name: group ?? layers[0]?.name ?? 'sdql' });
      const images: ImageData[] = [];
      try {
        const created = [];
        for (const layer of layers) {
          // A pixel layer filled by putPixels: placeEvent would rescale by the document's resolution.
          const target = await doc.createPixelLayer({ name: layer.name });
          if (!target) throw new HostError(`Photoshop did not create the layer "${layer.name}"`);
          const pixels = await this.ps.imaging.createImageDataFromBuffer(layer.image.data, {
            width: layer.image.width,
            height: layer.image.height,
            components: 4,
            chunky: true,
            colorSpace: 'RGB',
            colorProfile: SRGB,
          });
          images.push(pixels);
          await this.ps.imaging.putPixels({ documentID: id, layerID: target.id, imageData: pixels, targetBounds: toBounds(layer.bounds), replace: true });
          if (layer.mask) {
            const mask = await this.ps.imaging.createImageDataFromBuffer(layer.mask.mask, {
              width: layer.mask.bounds.width,
              height: layer.mask.bounds.height,
              components: 1,
              chunky: true,
              colorSpace: 'Grayscale',
            });
            images.push(mask);
            await this.ps.imaging.putLayerMask({ documentID: id, layerID: target.id, imageData: mask, targetBounds: toBounds(layer.mask.bounds), replace: true });
          }
          created.push(target);
          if (context.isCancelled) throw new HostError('canceled in Photoshop');
        }
        if (group && created.length > 1) await doc.createLayerGroup({ name: group, fromLayers: created });
        await context.hostControl.resumeHistory(suspension, true);
      } catch (error) {
        // Nothing half-placed: the document returns to where it was.
        await context.hostControl.resumeHistory(suspension, false);
        throw error;
      } finally {
        for (const image of images) await image.dispose();
      }
    });
  }

  private document(id: number): PsDocument {
    const docs = this.ps.app.documents;
    for (let i = 0; i < docs.length; i++) if (docs[i].id === id) return docs[i];
    throw new HostError('the document this generation was made from has been closed');
  }

  /** Runs `work` modally, turning Photoshop's refusals into messages the user can act on. */
  private async modal<T>(commandName: string, work: (context: Parameters<Parameters<PhotoshopModule['core']['executeAsModal']>[0]>[0]) => Promise<T>): Promise<T> {
    try {
      return (await this.ps.core.executeAsModal(async (context) => {
        const result = await work(context);
        if (context.isCancelled) throw new HostError('canceled in Photoshop');
        return result;
      }, { commandName })) as T;
    } catch (error) {
      if (error instanceof HostError) throw error;
      // Photoshop's error number 9: another plugin or a dialog holds the modal state.
      if ((error as { number?: number }).number === 9) {
        throw new HostError('Photoshop is busy with another plugin or a dialog: close it and try again');
      }
      if (/cancel/i.test((error as Error).message ?? '')) throw new HostError('canceled in Photoshop');
      throw error;
    }
  }
}

function info(doc: PsDocument): DocumentInfo {
  return {
    id: doc.id,
    title: doc.title,
    width: doc.width,
    height: doc.height,
    resolution: doc.resolution,
    mode: MODES[doc.mode] ?? String(doc.mode),
    bitsPerChannel: BITS[doc.bitsPerChannel] ?? 8,
  };
}

function toRect(b: { left: number; top: number; right: number; bottom: number }): Rect {
  return { left: b.left, top: b.top, width: b.right - b.left, height: b.bottom - b.top };
}

function toBounds(r: Rect) {
  return { left: r.left, top: r.top, right: r.left + r.width, bottom: r.top + r.height };
}

function addAlpha(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array((rgb.length / 3) * 4);
  for (let i = 0, o = 0; i < rgb.length; i += 3, o += 4) out.set([rgb[i], rgb[i + 1], rgb[i + 2], 255], o);
  return out;
}

/** Copies `source` (covering `from`) into `target` (covering `to`) where they overlap; the rest stays 0. */
function blit(source: Uint8Array, from: Rect, components: number, target: Uint8Array, to: Rect): void {
  const left = Math.max(from.left, to.left);
  const right = Math.min(from.left + from.width, to.left + to.width);
  for (let y = Math.max(from.top, to.top); y < Math.min(from.top + from.height, to.top + to.height); y++) {
    if (right <= left) return;
    const start = ((y - from.top) * from.width + (left - from.left)) * components;
    target.set(source.subarray(start, start + (right - left) * components), ((y - to.top) * to.width + (left - to.left)) * components);
  }
}
