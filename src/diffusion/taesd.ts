// TAESD (madebyollin/taesd), a tiny decoder of Stable Diffusion's latent space, for live previews
// that look like the image rather than the linear approximation's blur. It runs on the engine thread
// between steps, only at steps that want a preview and only on the previewed image; a decoder that
// is missing, broken or unfit leaves previews to the linear approximation and the generation alone.
import { access } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { invalidModel } from './errors.ts';
import type { ModelFamily, ModelFolderInfo } from './model-folder.ts';
import { OnnxModel, type RuntimeOptions } from './onnx-model.ts';
import type { StepProgress } from './pipeline.ts';
import { wantsPreview, type RgbPixels } from './preview.ts';

/**
 * TAESD preview decoders.
 *
 * **Where.** `vae_approx/<file>` in the model's own folder, else in `SDQL_MODELS_DIR/vae_approx/`. The file
 * name says which latent space it decodes, as ComfyUI (`models/vae_approx/`) and AUTOMATIC1111
 * (`models/VAE-approx/`) name the weights: `taesdxl_decoder.onnx` for SDXL models, `taesd_decoder.onnx`
 * for every other (SD 1.x and 2.x share one latent space).
 *
 * **What.** An ONNX graph (fp32 or fp16) whose first input takes the UNet's latents as they are,
 * [batch, 4, h, w] — already scaled by the VAE's scaling factor, which TAESD expects, so nothing is
 * divided — and whose first output is RGB, [batch, 3, 8h, 8w]. Its value range is told by the output's
 * name: `sample` is diffusers' convention, [-1, 1] (AutoencoderTiny's decoder ends with ×2 − 1, and
 * exports of it, Optimum's `vae_decoder` layout included, name the output so); any other name is
 * taesd.py's `Decoder` convention, [0, 1]. Values outside the range are clamped.
 */
export const TAESD_DECODER_FILES = { sd: 'taesd_decoder.onnx', sdxl: 'taesdxl_decoder.onnx' } as const;

/** The decoder file name for a model family (see {@link TAESD_DECODER_FILES}). */
export function taesdDecoderFile(family: ModelFamily): string {
  return family === 'SDXL' ? TAESD_DECODER_FILES.sdxl : TAESD_DECODER_FILES.sd;
}

/** The TAESD decoder for `model`: its own folder's, else `modelsDir`'s; undefined when neither has one. */
export async function findTaesdDecoder(model: Pick<ModelFolderInfo, 'dir' | 'family'>, modelsDir?: string): Promise<string | undefined> {
  const file = taesdDecoderFile(model.family);
  for (const dir of modelsDir ? [model.dir, modelsDir] : [model.dir]) {
    const path = join(dir, 'vae_approx', file);
    if (await access(path).then(() => true, () => false)) return path;
  }
  return undefined;
}

export class TaesdDecoder {
  private constructor(
    private readonly model: OnnxModel,
    private readonly input: string,
    private readonly output: string,
    /** The output is in [-1, 1] (diffusers), rather than [0, 1] (taesd.py). */
    readonly signed: boolean,
  ) {}

  /** Loads a decoder and checks its declared shapes. INVALID_MODEL when it cannot be one. */
  static async load(path: string, runtime?: RuntimeOptions): Promise<TaesdDecoder> {
    const model = await OnnxModel.load(path, runtime);
    const [input] = model.inputNames;
    const [output] = model.outputNames;
    const problem = input === undefined || output === undefined ? 'it needs an input and an output' : shapeProblem(model, input, output);
    if (problem) {
      await model.release();
      throw invalidModel(`${path} is no TAESD decoder: ${problem}`);
    }
    return new TaesdDecoder(model, input, output, output === 'sample');
  }

  get path(): string {
    return this.model.path;
  }

  /** Decodes image `index` of [batch, 4, h, w] latents (a batch of one goes through the decoder). */
  async decode(latents: Float32Array, shape: readonly [number, number, number, number], index: number): Promise<RgbPixels> {
    const [, channels, h, w] = shape;
    const size = channels * h * w;
    const outputs = await this.model.run({ [this.input]: { data: latents.slice(index * size, (index + 1) * size), dims: [1, channels, h, w] } });
    const { data, dims } = outputs[this.output];
    if (dims.length !== 4 || dims[0] !== 1 || dims[1] !== 3) throw invalidModel(`${this.model.path}: the decoder gave [${dims.join(', ')}], not [1, 3, H, W]`);
    const [height, width] = [dims[2], dims[3]];
    const plane = width * height;
    // Clamped arrays round and clamp to 0…255 on assignment.
    const rgb = new Uint8ClampedArray(plane * 3);
    const [scale, offset] = this.signed ? [127.5, 127.5] : [255, 0];
    for (let c = 0; c < 3; c++) {
      for (let p = 0, i = c * plane; p < plane; p++, i++) rgb[p * 3 + c] = data[i] * scale + offset;
    }
    return { width, height, data: new Uint8Array(rgb.buffer) };
  }

  release(): Promise<void> {
    return this.model.release();
  }
}

/** What keeps a graph from being a TAESD decoder, judged by the shapes it declares (dynamic ones pass). */
function shapeProblem(model: OnnxModel, input: string, output: string): string | undefined {
  const fits = (shape: readonly (number | string)[], channels: number) => shape.length === 4 && (typeof shape[1] !== 'number' || shape[1] === channels);
  const inputShape = model.inputShape(input);
  const outputShape = model.outputShape(output);
  if (!fits(inputShape, 4)) return `its input ${input} is [${inputShape.join(', ')}], not [batch, 4, h, w] latents`;
  // Some exports declare no output shape: the first decode checks it.
  if (outputShape.length > 0 && !fits(outputShape, 3)) return `its output ${output} is [${outputShape.join(', ')}], not [batch, 3, H, W] RGB`;
  return undefined;
}

/**
 * One run's TAESD previews: image 0 at the steps that want one. A decoder that fails is dropped for
 * the rest of the run with a warning, and those steps fall back to the linear approximation.
 */
export class TaesdPreviews {
  /** Milliseconds spent decoding, on the denoising thread. */
  ms = 0;

  constructor(
    private decoder: TaesdDecoder | undefined,
    private readonly every: number,
    readonly warnings: string[] = [],
  ) {}

  async decode(progress: StepProgress): Promise<RgbPixels | undefined> {
    const decoder = this.decoder;
    if (!decoder || !wantsPreview(progress.step, progress.totalSteps, this.every)) return undefined;
    const started = performance.now();
    try {
      return await decoder.decode(progress.latents, progress.latentShape, 0);
    } catch (error) {
      this.decoder = undefined;
      this.warnings.push(taesdWarning(decoder.path, error));
      return undefined;
    } finally {
      this.ms += performance.now() - started;
    }
  }
}

/** The warning for a decoder that could not be used, naming it by its last three path segments (`<model or models folder>/vae_approx/<file>`), not its full path. */
export function taesdWarning(path: string, error: unknown): string {
  const name = path.split(sep).slice(-3).join('/');
  const message = (error as Error).message.replaceAll(path, name);
  return `the preview decoder ${name} could not be used (${message}); previews use the linear approximation`;
}
