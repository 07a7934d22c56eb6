// Where a generation reads and writes in the document, and at what size the server runs it. All in
// document pixels (never inches or points), so the resolution (72, 300 ppi …) changes nothing.

export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface Size {
  width: number;
  height: number;
}

export interface Sides {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** What the server accepts (GenerateInput's description): sides 64–2048, at most 589824 (768²) pixels. */
export interface Limits {
  minSide: number;
  maxSide: number;
  maxPixels: number;
  /** The VAE's scale factor: both sides are multiples of it. */
  multiple: number;
}

export const SDQL_LIMITS: Limits = { minSide: 64, maxSide: 2048, maxPixels: 589824, multiple: 8 };

export interface Plan {
  /** Where the result goes in the document: the selection with its context, maybe past the canvas. */
  region: Rect;
  /** The part of `region` on the canvas, which is read as the init image (null for txt2img). */
  read: Rect | null;
  /** The generation's size. */
  size: Size;
  /** Pixels of the generation added past the canvas (outpainting), when `region` leaves the canvas. */
  outpaint: Sides | null;
  /** The init image's size in the generation (`size` less `outpaint`). */
  initSize: Size | null;
}

export function intersect(a: Rect, b: Rect): Rect | null {
  const left = Math.max(a.left, b.left);
  const top = Math.max(a.top, b.top);
  const right = Math.min(a.left + a.width, b.left + b.width);
  const bottom = Math.min(a.top + a.height, b.top + b.height);
  return right > left && bottom > top ? { left, top, width: right - left, height: bottom - top } : null;
}

function union(a: Rect, b: Rect): Rect {
  const left = Math.min(a.left, b.left);
  const top = Math.min(a.top, b.top);
  return { left, top, width: Math.max(a.left + a.width, b.left + b.width) - left, height: Math.max(a.top + a.height, b.top + b.height) - top };
}

function pad(rect: Rect, by: number): Rect {
  return { left: rect.left - by, top: rect.top - by, width: rect.width + 2 * by, height: rect.height + 2 * by };
}

/**
 * The generation size for a region: its aspect ratio at about the model's native area (so a small
 * selection is upscaled to what the model knows, a large one downscaled), within the limits, each
 * side a multiple of `limits.multiple`.
 */
export function fitSize(region: Size, native: Size, limits: Limits = SDQL_LIMITS): Size {
  const area = Math.min(native.width * native.height, limits.maxPixels);
  let scale = Math.sqrt(area / (region.width * region.height));
  scale = Math.min(scale, limits.maxSide / region.width, limits.maxSide / region.height);
  const snap = (side: number) => {
    const m = limits.multiple;
    const floor = Math.ceil(limits.minSide / m) * m;
    const ceil = Math.floor(limits.maxSide / m) * m;
    return Math.min(ceil, Math.max(floor, Math.round(side / m) * m));
  };
  let width = snap(region.width * scale);
  let height = snap(region.height * scale);
  // Rounding up both sides may pass the pixel limit: step the longer one down.
  while (width * height > limits.maxPixels) {
    if (width >= height) width -= limits.multiple;
    else height -= limits.multiple;
  }
  return { width, height };
}

export interface PlanOptions {
  canvas: Size;
  /** The selection's bounds, which may reach past the canvas; null: the whole canvas, txt2img. */
  selection: Rect | null;
  native: Size;
  /** Pixels of context around the selection that the model sees (img2img and inpainting). */
  context: number;
  limits?: Limits;
}

/** Plans a generation for a selection (or the whole document), or says what is wrong with it. */
export function plan({ canvas, selection, native, context, limits = SDQL_LIMITS }: PlanOptions): Plan {
  const whole = { left: 0, top: 0, width: canvas.width, height: canvas.height };
  if (!selection) return { region: whole, read: null, size: fitSize(canvas, native, limits), outpaint: null, initSize: null };
  if (selection.width < 1 || selection.height < 1) throw new RangeError('the selection is empty: select an area, or deselect to generate the whole document');
  const onCanvas = intersect(selection, whole);
  if (!onCanvas) throw new RangeError('the selection lies outside the canvas: select an area that touches the image');
  // Context only where there are pixels, but all of the selection, even past the canvas.
  const region = union(intersect(pad(selection, context), whole) ?? onCanvas, selection);
  const read = intersect(region, whole)!;
  const size = fitSize(region, native, limits);
  const past: Sides = {
    left: read.left - region.left,
    top: read.top - region.top,
    right: region.left + region.width - (read.left + read.width),
    bottom: region.top + region.height - (read.top + read.height),
  };
  if (!past.left && !past.top && !past.right && !past.bottom) return { region, read, size, outpaint: null, initSize: size };
  // The outpaint amounts in generation pixels; the init image takes the rest, so that the sum is `size`.
  const sx = size.width / region.width;
  const sy = size.height / region.height;
  const left = Math.round(past.left * sx);
  const top = Math.round(past.top * sy);
  const initSize = { width: Math.max(1, Math.round(read.width * sx)), height: Math.max(1, Math.round(read.height * sy)) };
  const outpaint = { left, top, right: size.width - initSize.width - left, bottom: size.height - initSize.height - top };
  return { region, read, size, outpaint, initSize };
}

/** Where a rectangle of the document lies in the generation (for the mask), at the plan's scale. */
export function toGeneration(rect: Rect, p: Plan): Rect {
  const sx = p.size.width / p.region.width;
  const sy = p.size.height / p.region.height;
  const left = Math.round((rect.left - p.region.left) * sx);
  const top = Math.round((rect.top - p.region.top) * sy);
  return { left, top, width: Math.round((rect.left + rect.width - p.region.left) * sx) - left, height: Math.round((rect.top + rect.height - p.region.top) * sy) - top };
}
