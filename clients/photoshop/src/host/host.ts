// The one interface behind which the panel touches the application: Photoshop (photoshop.ts) or an
// in-page canvas (browser.ts, for the end-to-end tests). Rectangles are in document pixels.
import type { Rect } from '../image/geometry.ts';
import type { Rgba } from '../image/rgba.ts';

export interface DocumentInfo {
  id: number;
  title: string;
  width: number;
  height: number;
  /** Pixels per inch: shown, never used to size anything. */
  resolution: number;
  /** RGB, CMYK, Grayscale, Lab; other modes are refused by `unsupportedReason`. */
  mode: string;
  bitsPerChannel: 8 | 16 | 32;
}

export interface SelectionMask {
  /** The selection's bounding box; it may reach past the canvas. */
  bounds: Rect;
  /** One byte a pixel over `bounds`, 255 selected, 0 not, between for feathering. */
  mask: Uint8Array;
}

export interface PlacedLayer {
  name: string;
  image: Rgba;
  /** Where the image goes; it is scaled to these bounds by the caller, never by the host. */
  bounds: Rect;
  /** A layer mask, when the result should show only within the selection. */
  mask?: SelectionMask;
}

export interface Host {
  /** The document in front, or null when none is open. */
  activeDocument(): Promise<DocumentInfo | null>;
  /** The selection of document `id`, or null when nothing is selected. */
  selection(id: number): Promise<SelectionMask | null>;
  /** The composite pixels of `rect` (inside the canvas), 8-bit sRGB RGBA, transparent where there are none. */
  read(id: number, rect: Rect): Promise<Rgba>;
  /** New layers in document `id` (which need not be in front), grouped under `group` when given, as one undo step. */
  place(id: number, layers: PlacedLayer[], group?: string): Promise<void>;
}

/** Thrown with a message for the user: the panel shows it as it is. */
export class HostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostError';
  }
}

const UNSUPPORTED_MODES: Record<string, string> = {
  Bitmap: 'Bitmap',
  Indexed: 'Indexed Color',
  Duotone: 'Duotone',
  Multichannel: 'Multichannel',
};

/** Why the panel cannot work on a document, or null: 16/32-bit, CMYK, Grayscale and Lab are converted. */
export function unsupportedReason(document: DocumentInfo): string | null {
  const mode = UNSUPPORTED_MODES[document.mode];
  return mode ? `"${document.title}" is in ${mode} mode, which the panel cannot read or write: convert it with Image › Mode › RGB Color` : null;
}
