// An in-memory `photoshop` module that behaves as Adobe's documentation says, for host/photoshop.ts:
// getPixels trims its result to where the composite has pixels and returns chunky RGB(A); writes
// (createPixelLayer, putPixels, putLayerMask, createLayerGroup) fail outside executeAsModal; a second
// executeAsModal while one runs fails with error number 9; the user may cancel a modal scope.
import type { PhotoshopModule } from '../src/host/photoshop.ts';

interface Bounds {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export class FakeImageData {
  disposed = false;
  constructor(
    readonly width: number,
    readonly height: number,
    readonly components: number,
    readonly data: Uint8Array,
    readonly colorSpace: string,
  ) {}
  async getData({ chunky }: { chunky?: boolean } = {}) {
    if (!chunky) throw new Error('the fake only returns chunky data');
    if (this.disposed) throw new Error('image data used after dispose()');
    return this.data;
  }
  async dispose() {
    this.disposed = true;
  }
}

export interface FakeLayer {
  id: number;
  name: string;
  pixels?: { bounds: Bounds; data: Uint8Array };
  mask?: { bounds: Bounds; data: Uint8Array };
  group?: string;
}

export class FakeDocument {
  static nextId = 1;
  readonly id = FakeDocument.nextId++;
  layers: FakeLayer[] = [];
  /** The history panel's states: one per change, or one per suspension. */
  history: string[] = [];
  selectionMask: { bounds: Bounds; data: Uint8Array } | null = null;
  mode = 'RGBColorMode';
  bitsPerChannel = 'bitDepth8';
  constructor(
    readonly owner: FakePhotoshop,
    readonly title: string,
    readonly width: number,
    readonly height: number,
    readonly resolution: number,
    /** The composite, RGBA; alpha 0 where the document has no pixels. */
    readonly composite: Uint8Array,
  ) {}
  get selection() {
    return { bounds: this.selectionMask?.bounds ?? null };
  }
  async createPixelLayer({ name }: { name: string }) {
    this.owner.requireModal('createPixelLayer');
    const layer: FakeLayer = { id: this.owner.nextLayerId++, name };
    this.layers.push(layer);
    this.owner.record(this, `New Layer ${name}`);
    return layer;
  }
  async createLayerGroup({ name, fromLayers }: { name: string; fromLayers: FakeLayer[] }) {
    this.owner.requireModal('createLayerGroup');
    for (const layer of fromLayers) layer.group = name;
    this.owner.record(this, `Group ${name}`);
    return { id: this.owner.nextLayerId++, name };
  }
}

export class FakePhotoshop {
  documents: FakeDocument[] = [];
  active: FakeDocument | null = null;
  nextLayerId = 100;
  private modalDepth = 0;
  private suspended = new Map<number, { document: FakeDocument; name: string; layers: FakeLayer[] }>();
  /** Set to make the next modal scope be canceled by the user while it runs. */
  cancelNext = false;
  /** Resolves when the current modal scope may finish (for the "another plugin is modal" test). */
  hold: Promise<void> | null = null;

  addDocument(title: string, width: number, height: number, resolution = 72, fill?: (x: number, y: number) => [number, number, number, number]) {
    const composite = new Uint8Array(width * height * 4);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) composite.set(fill ? fill(x, y) : [128, 128, 128, 255], (y * width + x) * 4);
    const document = new FakeDocument(this, title, width, height, resolution, composite);
    this.documents.push(document);
    this.active = document;
    return document;
  }

  requireModal(what: string) {
    if (this.modalDepth === 0) throw new Error(`${what}: this function is only available in a modal scope (executeAsModal)`);
    // The user presses Esc (or the progress bar's Cancel) while the plugin writes.
    if (this.cancelNext && this.context) {
      this.cancelNext = false;
      this.context.isCancelled = true;
    }
  }
  private context: { isCancelled: boolean } | null = null;

  record(document: FakeDocument, state: string) {
    if (![...this.suspended.values()].some((s) => s.document === document)) document.history.push(state);
  }

  private find(id: number | undefined) {
    const document = this.documents.find((d) => d.id === id);
    if (!document) throw new Error(`no document ${id}`);
    return document;
  }

  module(): PhotoshopModule {
    // The module's functions close over the fake, as Photoshop's over the application.
    const ps = this; // eslint-disable-line @typescript-eslint/no-this-alias
    const documents = new Proxy(this.documents, {}) as unknown;
    const app = {
      get activeDocument() {
        return ps.active;
      },
      get documents() {
        return documents;
      },
    };
    const core = {
      async executeAsModal(work: (context: unknown) => Promise<unknown>) {
        if (ps.modalDepth > 0) throw Object.assign(new Error('host is in a modal state'), { number: 9 });
        ps.modalDepth++;
        const context = {
          isCancelled: false,
          hostControl: {
            async suspendHistory({ documentID, name }: { documentID: number; name: string }) {
              const id = ps.suspended.size + 1;
              ps.suspended.set(id, { document: ps.find(documentID), name, layers: [...ps.find(documentID).layers] });
              return id;
            },
            async resumeHistory(id: number, commit = true) {
              const suspension = ps.suspended.get(id)!;
              ps.suspended.delete(id);
              if (commit) suspension.document.history.push(suspension.name);
              else suspension.document.layers = suspension.layers;
            },
          },
        };
        ps.context = context;
        try {
          if (ps.hold) await ps.hold;
          return await work(context);
        } finally {
          ps.modalDepth--;
          ps.context = null;
        }
      },
    };
    const imaging = {
      async getPixels({ documentID, sourceBounds, componentSize, colorSpace }: { documentID: number; sourceBounds: Bounds; componentSize: number; colorSpace: string }) {
        if (componentSize !== 8 || colorSpace !== 'RGB') throw new Error('the fake converts to 8-bit RGB only');
        const doc = ps.find(documentID);
        // Trimmed: to the canvas, then to the pixels that exist (alpha > 0).
        let b = { left: Math.max(0, sourceBounds.left), top: Math.max(0, sourceBounds.top), right: Math.min(doc.width, sourceBounds.right), bottom: Math.min(doc.height, sourceBounds.bottom) };
        const alpha = (x: number, y: number) => doc.composite[(y * doc.width + x) * 4 + 3];
        let trimmed = { left: b.right, top: b.bottom, right: b.left, bottom: b.top };
        for (let y = b.top; y < b.bottom; y++)
          for (let x = b.left; x < b.right; x++)
            if (alpha(x, y) > 0) trimmed = { left: Math.min(trimmed.left, x), top: Math.min(trimmed.top, y), right: Math.max(trimmed.right, x + 1), bottom: Math.max(trimmed.bottom, y + 1) };
        if (trimmed.right <= trimmed.left) trimmed = { left: b.left, top: b.top, right: b.left, bottom: b.top };
        b = trimmed;
        const width = b.right - b.left;
        const height = b.bottom - b.top;
        let opaque = true;
        for (let y = b.top; y < b.bottom; y++) for (let x = b.left; x < b.right; x++) opaque &&= alpha(x, y) === 255;
        const components = opaque ? 3 : 4;
        const data = new Uint8Array(width * height * components);
        for (let y = 0; y < height; y++)
          for (let x = 0; x < width; x++) {
            const i = ((b.top + y) * doc.width + b.left + x) * 4;
            data.set(doc.composite.subarray(i, i + components), (y * width + x) * components);
          }
        const imageData = new FakeImageData(width, height, components, data, 'RGB');
        ps.images.push(imageData);
        return { imageData, sourceBounds: b, level: 0 };
      },
      async getSelection({ documentID, sourceBounds }: { documentID: number; sourceBounds: Bounds }) {
        const doc = ps.find(documentID);
        const selection = doc.selectionMask!;
        // Only the part on the canvas.
        const b = { left: Math.max(0, sourceBounds.left), top: Math.max(0, sourceBounds.top), right: Math.min(doc.width, sourceBounds.right), bottom: Math.min(doc.height, sourceBounds.bottom) };
        const width = b.right - b.left;
        const data = new Uint8Array(width * (b.bottom - b.top));
        const sw = selection.bounds.right - selection.bounds.left;
        for (let y = b.top; y < b.bottom; y++)
          for (let x = b.left; x < b.right; x++) data[(y - b.top) * width + x - b.left] = selection.data[(y - selection.bounds.top) * sw + x - selection.bounds.left];
        const imageData = new FakeImageData(width, b.bottom - b.top, 1, data, 'Grayscale');
        ps.images.push(imageData);
        return { imageData, sourceBounds: b };
      },
      async createImageDataFromBuffer(data: Uint8Array, options: { width: number; height: number; components: number; chunky?: boolean; colorSpace: string }) {
        if (data.length !== options.width * options.height * options.components) throw new Error('buffer size does not match width × height × components');
        if (options.chunky === false) throw new Error('the fake only takes chunky data');
        const imageData = new FakeImageData(options.width, options.height, options.components, data.slice(), options.colorSpace);
        ps.images.push(imageData);
        return imageData;
      },
      async putPixels({ documentID, layerID, imageData, targetBounds }: { documentID: number; layerID: number; imageData: FakeImageData; targetBounds: Bounds }) {
        ps.requireModal('putPixels');
        const layer = ps.find(documentID).layers.find((l) => l.id === layerID)!;
        layer.pixels = { bounds: { left: targetBounds.left, top: targetBounds.top, right: targetBounds.left + imageData.width, bottom: targetBounds.top + imageData.height }, data: await imageData.getData({ chunky: true }) };
      },
      async putLayerMask({ documentID, layerID, imageData, targetBounds }: { documentID: number; layerID: number; imageData: FakeImageData; targetBounds: Bounds }) {
        ps.requireModal('putLayerMask');
        if (imageData.components !== 1) throw new Error('a layer mask is grayscale');
        const layer = ps.find(documentID).layers.find((l) => l.id === layerID)!;
        layer.mask = { bounds: { left: targetBounds.left, top: targetBounds.top, right: targetBounds.left + imageData.width, bottom: targetBounds.top + imageData.height }, data: await imageData.getData({ chunky: true }) };
      },
    };
    return { app, core, imaging } as unknown as PhotoshopModule;
  }

  /** Every image data handed out, to check that each was disposed. */
  images: FakeImageData[] = [];
}
