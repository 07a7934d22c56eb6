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

/** What the server accepts: its `system.limits`, with the model's VAE factor and pixel limit (modelLimits). */
export interface Limits {
  minSide: number;
  maxSide: number;
  maxPixels: number;
  /** The VAE's scale factor: both sides are multiples of it. */
  multiple: number;
  /** Denoising steps and images of one request (the panel's sliders). */
  maxSteps: number;
  maxImages: number;
}

/** For a server without `system.limits` (sdql before it had them): what those servers accepted. */
export const FALLBACK_LIMITS: Limits = { minSide: 64, maxSide: 2048, maxPixels: 589824, multiple: 8, maxSteps: 150, maxImages: 16 };

/** The limits for `model`: its VAE factor as `multiple`, its own `maxPixels` where the server states one (Model.maxPixels). */
export function modelLimits(limits: Limits, model: { vaeScaleFactor: number | null; maxPixels?: number | null }): Limits {
  return { ...limits, multiple: model.vaeScaleFactor ?? limits.multiple, maxPixels: model.maxPixels ?? limits.maxPixels };
}

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
export function fitSize(region: Size, native: Size, limits: Limits = FALLBACK_LIMITS): Size {
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
export function plan({ canvas, selection, native, context, limits = FALLBACK_LIMITS }: PlanOptions): Plan {
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
  // The outpaint amounts in generation pixels, each a multiple of the VAE factor as the server requires;
  // the init image takes the rest, so that the sum is `size`.
  const sx = size.width / region.width;
  const sy = size.height / region.height;
  const m = limits.multiple;
  const snap = (side: number) => (side > 0 ? Math.max(m, Math.round(side / m) * m) : 0);
  const outpaint = { left: snap(past.left * sx), top: snap(past.top * sy), right: snap(past.right * sx), bottom: snap(past.bottom * sy) };
  const initSize = { width: size.width - outpaint.left - outpaint.right, height: size.height - outpaint.top - outpaint.bottom };
  if (initSize.width < m || initSize.height < m) throw new RangeError('the selection lies almost all past the canvas: select more of the image to paint from');
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

/** An inpainting request in which the server cuts out and pastes back the selection (`inpaintArea: ONLY_MASKED`). */
export interface MaskedPlan {
  /** The part of the canvas sent as the init image (and the mask): the selection with room around it. */
  read: Rect;
  /** The init image's size as sent: `read`, or smaller when the model paints the selection at fewer pixels than it has. */
  initSize: Size;
  /** The size the server paints the selection (with its padding) at. */
  size: Size;
  /** `onlyMaskedPadding`, in init-image pixels. */
  padding: number;
}

/**
 * Plans inpainting with `inpaintArea: ONLY_MASKED` for a selection inside the canvas. The server finds
 * the mask's box, pads it by `padding`, grows it to the aspect of `size`, paints it at `size` and
 * pastes it back: its result has the init image's size, so it maps onto `read` pixel for pixel
 * (scaled by `read`/`initSize` only when the upload was reduced) at any document resolution.
 * `read` has twice the context around the selection, so that the server's box has room to grow.
 */
export function planOnlyMasked({ canvas, selection, native, context, limits = FALLBACK_LIMITS }: PlanOptions & { selection: Rect }): MaskedPlan {
  const whole = { left: 0, top: 0, width: canvas.width, height: canvas.height };
  const painted = intersect(pad(selection, context), whole);
  if (!painted) throw new RangeError('the selection lies outside the canvas: select an area that touches the image');
  const size = fitSize(painted, native, limits);
  // A small selection goes up at full resolution (the server upscales it); a large one is reduced to
  // about the pixels the model paints, which is all the detail the result can have.
  const scale = Math.min(1, Math.sqrt((size.width * size.height) / (painted.width * painted.height)));
  const read = intersect(pad(selection, 2 * context), whole)!;
  const initSize = { width: Math.max(1, Math.round(read.width * scale)), height: Math.max(1, Math.round(read.height * scale)) };
  return { read, initSize, size, padding: Math.round(context * scale) };
}
