// The UNet over a batch in sub-batches sized to memory. onnxruntime allocates each activation of a
// call for the whole batch at once, and SD 1.x's first self-attention holds heads × tokens² floats per
// sample (tokens: the latent's height × width): 8 GiB at 1024×1024, so 16 images with guidance asked
// for 256 GiB in one call. Every sample of a batch is computed on its own, so the pieces give the
// batch's outputs.
import type { AttentionLevel } from './model-folder.ts';
import type { OnnxModel, OutputTensor, TensorData } from './onnx-model.ts';

/** SD 1.x's attention: 8 heads at every level from full resolution on; for a model whose config does not tell. */
export const SD1_ATTENTION: readonly AttentionLevel[] = [0, 1, 2].map((level) => ({ level, heads: 8 }));
/**
 * Peak memory of a UNet call over its attention scores alone: the scores and their softmax are alive
 * at once. Measured on the fixture UNet (8 heads at full latent resolution, as SD 1.x) as the growth of
 * the peak resident memory for one call: 2.09× at 32×32 latents, 2.11× at 48×48, 2.08× at 64×64, for
 * one sample and for two. One sample at 768×768 peaked at 5,577 MiB with onnxruntime's memory pattern
 * and 5,570 MiB without (5.3 GiB here plus a 120 MiB process): turning the pattern off, which lowers
 * the rest of a UNet call's peak, leaves the scores as they are.
 */
const SCORE_COPIES = 2.1;

/**
 * Bytes of activations one sample of a UNet call takes at this latent size (see SCORE_COPIES): its
 * largest attention's, over the levels with attention (each level halves the sides, downsampling
 * with padding: SDXL has none at full resolution).
 */
export function unetSampleBytes(latentHeight: number, latentWidth: number, levels: readonly AttentionLevel[] = SD1_ATTENTION): number {
  return Math.max(
    ...levels.map(({ level, heads }) => {
      const tokens = Math.ceil(latentHeight / 2 ** level) * Math.ceil(latentWidth / 2 ** level);
      return SCORE_COPIES * heads * tokens * tokens * 4;
    }),
  );
}

/** How many of `batch` samples one UNet call takes within `budgetBytes` (at least one); the whole batch without a budget. */
export function unetSamplesPerCall(batch: number, latentHeight: number, latentWidth: number, budgetBytes: number | undefined, levels?: readonly AttentionLevel[]): number {
  if (budgetBytes === undefined) return batch;
  return Math.max(1, Math.min(batch, Math.floor(budgetBytes / unetSampleBytes(latentHeight, latentWidth, levels))));
}

/**
 * Runs `model` over `batch` samples, `perCall` at a time: inputs whose first dimension is the batch
 * are cut along it (others, a scalar timestep, go whole to each call) and the outputs joined again.
 */
export async function runInSubBatches(model: OnnxModel, feeds: Record<string, TensorData>, batch: number, perCall: number): Promise<Record<string, OutputTensor>> {
  if (perCall >= batch) return model.run(feeds);
  const parts: Record<string, OutputTensor>[] = [];
  for (let start = 0; start < batch; start += perCall) {
    const size = Math.min(perCall, batch - start);
    const piece = Object.entries(feeds).map(([name, { data, dims }]): [string, TensorData] => {
      if (dims[0] !== batch) return [name, { data, dims }];
      const stride = data.length / batch;
      return [name, { data: data.subarray(start * stride, (start + size) * stride), dims: [size, ...dims.slice(1)] }];
    });
    parts.push(await model.run(Object.fromEntries(piece)));
  }
  return Object.fromEntries(
    Object.entries(parts[0]).map(([name, { dims }]) => {
      const joined = new Float32Array(parts.reduce((sum, part) => sum + part[name].data.length, 0));
      let offset = 0;
      for (const part of parts) {
        joined.set(part[name].data, offset);
        offset += part[name].data.length;
      }
      return [name, { data: joined, dims: [batch, ...dims.slice(1)] }];
    }),
  );
}
