// The VAE over large images in tiles. The decoder's activations grow with the image (at 1024×1024
// SD's last up block holds several 128 × 1024 × 1024 float maps, and its mid-block attention
// tokens² scores), so above a size the latents go through it a tile at a time. Each tile is run
// with a margin of neighbouring latents and only its core is kept: for a decoder built of local
// operators (convolutions, upsampling, activations) the core is then exactly what the whole run
// gives, once the margin covers the decoder's receptive field. SD's VAE also has global operators
// — group norms' statistics and one self-attention over all latents in its mid block — which a
// tile sees over its own area only, so there tiles are an approximation (error measured in
// test/diffusion/vae-tiles.test.ts and bench/memory.ts). The encoder is tiled the same way, in
// latent cells of 8 × 8 pixels.
import type { OutputTensor, TensorData } from './onnx-model.ts';

export interface VaeTiling {
  /** Images of more output pixels than this run in tiles; Infinity: never. */
  thresholdPixels: number;
  /** Side of a tile's core, in latent cells. */
  tile: number;
  /** Latent cells of context around each core (clipped at the image's edges). */
  margin: number;
}

/**
 * Core of 64 latents (512 pixels, the size SD 1.x was trained at) with 16 latents (128 pixels) of
 * context each side: the fixture decoders' local receptive field is 5 latents, SD's VAE decoder's
 * some 18 in theory, and its effective one far less (bench/memory.ts measures the difference).
 */
export const DEFAULT_TILE = 64;
export const DEFAULT_MARGIN = 16;
/** Images above 768 × 768 pixels decode in tiles. */
export const DEFAULT_TILE_PIXELS = 768 * 768;

/**
 * Runs `run` over `input` [1, C, H, W] in tiles on a grid of cells, each `inCell` input pixels and
 * `outCell` output pixels wide (decoder: 1 and 8; encoder: 8 and 1), joining the cores of the outputs.
 */
export async function runTiled(
  run: (tile: TensorData) => Promise<OutputTensor>,
  input: TensorData & { data: Float32Array },
  { inCell, outCell }: { inCell: number; outCell: number },
  { tile, margin }: Pick<VaeTiling, 'tile' | 'margin'>,
): Promise<OutputTensor> {
  const [, channels, height, width] = input.dims;
  const rows = height / inCell;
  const cols = width / inCell;
  let out: Float32Array | undefined;
  let outChannels = 0;
  for (let y0 = 0; y0 < rows; y0 += tile) {
    for (let x0 = 0; x0 < cols; x0 += tile) {
      const y1 = Math.min(rows, y0 + tile);
      const x1 = Math.min(cols, x0 + tile);
      const top = Math.max(0, y0 - margin);
      const left = Math.max(0, x0 - margin);
      const bottom = Math.min(rows, y1 + margin);
      const right = Math.min(cols, x1 + margin);
      const piece = crop(input.data, channels, width, top * inCell, left * inCell, (bottom - top) * inCell, (right - left) * inCell);
      const result = await run({ data: piece, dims: [1, channels, (bottom - top) * inCell, (right - left) * inCell] });
      const pieceWidth = (right - left) * outCell;
      const pieceHeight = (bottom - top) * outCell;
      outChannels = result.dims[1];
      out ??= new Float32Array(outChannels * rows * outCell * cols * outCell);
      const outWidth = cols * outCell;
      const outPlane = rows * outCell * outWidth;
      const coreWidth = (x1 - x0) * outCell;
      for (let c = 0; c < outChannels; c++) {
        for (let y = (y0 - top) * outCell; y < (y1 - top) * outCell; y++) {
          const from = c * pieceHeight * pieceWidth + y * pieceWidth + (x0 - left) * outCell;
          const to = c * outPlane + (top * outCell + y) * outWidth + x0 * outCell;
          out.set(result.data.subarray(from, from + coreWidth), to);
        }
      }
    }
  }
  return { data: out!, dims: [1, outChannels, rows * outCell, cols * outCell] };
}

/** The [channels, height, width] window of a [channels, H, W] image. */
function crop(data: Float32Array, channels: number, fullWidth: number, top: number, left: number, height: number, width: number): Float32Array {
  const fullHeight = data.length / channels / fullWidth;
  const piece = new Float32Array(channels * height * width);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      const from = c * fullHeight * fullWidth + (top + y) * fullWidth + left;
      piece.set(data.subarray(from, from + width), (c * height + y) * width);
    }
  }
  return piece;
}
