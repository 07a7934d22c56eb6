// The guidance-scale embedding that LCM-distilled UNets take as `timestep_cond` (diffusers' UNet
// config `time_cond_proj_dim`): the guidance is distilled into the model, so such a UNet runs once per
// image, without the unconditional pass, and is told the guidance as w = guidanceScale − 1, as
// diffusers' LatentConsistencyModelPipeline and StableDiffusionPipeline (v0.40.0) compute it.

const f32 = Math.fround;

/**
 * diffusers' `get_guidance_scale_embedding` (VDM's sinusoidal embedding of 1000·w) for each image of
 * the batch, [batch × dim] in float32 as torch computes it: sines of the first half, cosines of the second.
 */
export function guidanceScaleEmbedding(guidanceScale: number, dim: number, batch: number): Float32Array {
  const w = f32(f32(guidanceScale - 1) * 1000);
  const half = Math.floor(dim / 2);
  const step = f32(f32(Math.log(10000)) / (half - 1));
  const row = new Float32Array(dim);
  for (let i = 0; i < half; i++) {
    const angle = f32(w * f32(Math.exp(f32(i * -step))));
    row[i] = Math.sin(angle);
    row[half + i] = Math.cos(angle);
  }
  // An odd width leaves the last value 0 (diffusers pads with a zero).
  const out = new Float32Array(batch * dim);
  for (let b = 0; b < batch; b++) out.set(row, b * dim);
  return out;
}
