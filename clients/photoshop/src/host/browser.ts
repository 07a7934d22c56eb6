// The host over an in-page canvas, for the end-to-end tests: the canvas is the document, a rectangle
// set by `select` is the selection, and placed layers are drawn over it (and listed in `layers`).
import type { Rect } from '../image/geometry.ts';
import type { Rgba } from '../image/rgba.ts';
import { HostError, type DocumentInfo, type Host, type PlacedLayer, type SelectionMask } from './host.ts';

export interface BrowserLayer {
  name: string;
  bounds: Rect;
  group?: string;
  masked: boolean;
}

export class BrowserHost implements Host {
  private selected: Rect | null = null;
  readonly layers: BrowserLayer[] = [];
  private readonly context: CanvasRenderingContext2D;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly title = 'canvas',
  ) {
    this.context = canvas.getContext('2d', { willReadFrequently: true })!;
  }

  /** Sets the selection (a rectangle; it may reach past the canvas), or clears it. */
  select(rect: Rect | null): void {
    this.selected = rect;
  }

  async activeDocument(): Promise<DocumentInfo> {
    return { id: 1, title: this.title, width: this.canvas.width, height: this.canvas.height, resolution: 72, mode: 'RGB', bitsPerChannel: 8 };
  }

  async selection(id: number): Promise<SelectionMask | null> {
    this.check(id);
    if (!this.selected) return null;
    return { bounds: { ...this.selected }, mask: new Uint8Array(this.selected.width * this.selected.height).fill(255) };
  }

  async read(id: number, rect: Rect): Promise<Rgba> {
    this.check(id);
    const image = this.context.getImageData(rect.left, rect.top, rect.width, rect.height);
    return { width: rect.width, height: rect.height, data: new Uint8Array(image.data.buffer.slice(0)) };
  }

  async place(id: number, layers: PlacedLayer[], group?: string): Promise<void> {
    this.check(id);
    for (const layer of layers) {
      const { image, bounds, mask } = layer;
      const pixels = new Uint8ClampedArray(image.data);
      if (mask) {
        // The layer mask over the layer's pixels: alpha times the mask where they overlap, 0 elsewhere.
        for (let y = 0; y < image.height; y++) {
          for (let x = 0; x < image.width; x++) {
            const mx = bounds.left + x - mask.bounds.left;
            const my = bounds.top + y - mask.bounds.top;
            const inside = mx >= 0 && my >= 0 && mx < mask.bounds.width && my < mask.bounds.height;
            const i = (y * image.width + x) * 4 + 3;
            pixels[i] = inside ? Math.round((pixels[i] * mask.mask[my * mask.bounds.width + mx]) / 255) : 0;
          }
        }
      }
      const scratch = document.createElement('canvas');
      scratch.width = image.width;
      scratch.height = image.height;
      scratch.getContext('2d')!.putImageData(new ImageData(pixels, image.width, image.height), 0, 0);
      this.context.drawImage(scratch, bounds.left, bounds.top);
      this.layers.push({ name: layer.name, bounds: { ...bounds }, group, masked: !!mask });
    }
  }

  private check(id: number) {
    if (id !== 1) throw new HostError('the document this generation was made from has been closed');
  }
}
