// Model upscalers: ONNX exports of Real-ESRGAN and similar super-resolution networks, found in
// SDQL_MODELS_DIR/upscalers/<id>.onnx. One takes RGB in [0, 1], [1, 3, h, w], and gives
// [1, 3, s·h, s·w] for an integer scale s; it runs tile by tile so that memory stays bounded
// whatever the image's size.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidModel } from './errors.ts';
import type { RgbImage } from './image.ts';
import { OnnxModel, type RuntimeOptions } from './onnx-model.ts';

export const UPSCALERS_FOLDER = 'upscalers';

/** Tile side in input pixels, and the context read around each tile: Real-ESRGAN's receptive field is far below 32 px. */
export const DEFAULT_TILING = { tile: 192, overlap: 32 } as const;

export interface Tiling {
  tile: number;
  /** Input pixels of context on each side of a tile; the output is exact when it covers the network's receptive field. */
  overlap: number;
}

export interface UpscalerFile {
  id: string;
  path: string;
}

/** The `.onnx` files of `modelsDir/upscalers/`, by id (the file name without `.onnx`); none when the folder is missing. */
export async function upscalerFiles(modelsDir: string): Promise<UpscalerFile[]> {
  const dir = join(modelsDir, UPSCALERS_FOLDER);
  const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return names
    .filter((name) => name.endsWith('.onnx'))
    .sort()
    .map((name) => ({ id: name.slice(0, -'.onnx'.length), path: join(dir, name) }));
}

/** A side of the probe image that measures the scale. */
const PROBE = 16;

export class OnnxUpscaler {
  private constructor(
    private readonly model: OnnxModel,
    private readonly input: string,
    private readonly output: string,
    readonly scale: number,
  ) {}

  /** Loads an upscaler and measures its scale on a small image; INVALID_MODEL when it is not one. */
  static async load(path: string, runtime?: RuntimeOptions): Promise<OnnxUpscaler> {
    const model = await OnnxModel.load(path, runtime);
    const [input] = model.inputNames;
    const [output] = model.outputNames;
    if (input === undefined || output === undefined) throw invalidModel(`upscaler ${path}: it needs an input and an output`);
    const probe = await model.run({ [input]: { data: new Float32Array(3 * PROBE * PROBE), dims: [1, 3, PROBE, PROBE] } });
    const dims = probe[output].dims;
    const scale = dims[3] / PROBE;
    if (dims.length !== 4 || dims[1] !== 3 || !Number.isInteger(scale) || scale < 1 || dims[2] !== scale * PROBE) {
      throw invalidModel(`upscaler ${path}: a [1, 3, ${PROBE}, ${PROBE}] image gives [${dims.join(', ')}], not an RGB image an integer times larger`);
    }
    return new OnnxUpscaler(model, input, output, scale);
  }

  /**
   * The image `scale` times larger, computed tile by tile: each tile is run with `overlap` pixels of
   * the image around it and only its own part of the output kept, so tiles join without seams.
   * `onTile` is told after each tile.
   */
  async upscale(image: RgbImage, tiling: Tiling = DEFAULT_TILING, onTile?: (done: number, total: number) => void | Promise<void>): Promise<RgbImage> {
    const { width, height } = image;
    const s = this.scale;
    const out: RgbImage = { width: width * s, height: height * s, data: new Float32Array(width * s * height * s * 3) };
    const columns = Math.ceil(width / tiling.tile);
    const rows = Math.ceil(height / tiling.tile);
    for (let row = 0; row < rows; row++) {
      for (let column = 0; column < columns; column++) {
        const x0 = column * tiling.tile;
        const y0 = row * tiling.tile;
        const x1 = Math.min(x0 + tiling.tile, width);
        const y1 = Math.min(y0 + tiling.tile, height);
        // The tile with its context, clipped to the image.
        const cx0 = Math.max(x0 - tiling.overlap, 0);
        const cy0 = Math.max(y0 - tiling.overlap, 0);
        const cx1 = Math.min(x1 + tiling.overlap, width);
        const cy1 = Math.min(y1 + tiling.overlap, height);
        const tw = cx1 - cx0;
        const th = cy1 - cy0;
        const planar = new Float32Array(3 * tw * th);
        for (let y = 0; y < th; y++) {
          for (let x = 0; x < tw; x++) {
            const src = ((cy0 + y) * width + cx0 + x) * 3;
            for (let c = 0; c < 3; c++) planar[c * tw * th + y * tw + x] = image.data[src + c];
          }
        }
        const result = (await this.model.run({ [this.input]: { data: planar, dims: [1, 3, th, tw] } }))[this.output].data;
        const ow = tw * s;
        const oh = th * s;
        for (let y = (y0 - cy0) * s; y < (y1 - cy0) * s; y++) {
          for (let x = (x0 - cx0) * s; x < (x1 - cx0) * s; x++) {
            const dst = ((cy0 * s + y) * out.width + cx0 * s + x) * 3;
            for (let c = 0; c < 3; c++) out.data[dst + c] = Math.min(Math.max(result[c * ow * oh + y * ow + x], 0), 1);
          }
        }
        await onTile?.(row * columns + column + 1, rows * columns);
      }
    }
    return out;
  }

  async release(): Promise<void> {
    await this.model.release();
  }
}

export interface UpscalerInfo extends UpscalerFile {
  /** How many times larger its images come out; absent when it cannot be loaded. */
  scale?: number;
  /** Why it cannot be used. */
  error?: string;
}

const scales = new Map<string, { key: string; scale?: number; error?: string }>();

/** Every upscaler of `modelsDir/upscalers/` with its scale, measured once per version of its file. */
export async function listUpscalers(modelsDir: string, runtime?: RuntimeOptions): Promise<UpscalerInfo[]> {
  const infos: UpscalerInfo[] = [];
  for (const file of await upscalerFiles(modelsDir)) {
    const { size, mtimeMs } = await stat(file.path);
    const key = `${size}:${mtimeMs}`;
    let known = scales.get(file.path);
    if (known?.key !== key) {
      try {
        const upscaler = await OnnxUpscaler.load(file.path, runtime);
        known = { key, scale: upscaler.scale };
        await upscaler.release();
      } catch (error) {
        known = { key, error: (error as Error).message };
      }
      scales.set(file.path, known);
    }
    infos.push({ ...file, scale: known.scale, error: known.error });
  }
  return infos;
}
