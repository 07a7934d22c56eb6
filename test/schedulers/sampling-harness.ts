// Shared by the scheduler tests: a denoising problem whose answer is known (a perfect model of a
// fixed clean sample x₀), the loop the pipeline drives, and small assertion helpers.
import assert from 'node:assert/strict';
import type { NoiseSource, PredictionType, Scheduler } from '../../src/diffusion/schedulers/scheduler.ts';
import { SD15_SCHEDULER_CONFIG as SD15_CONFIG } from '../../src/diffusion/fixtures/index.ts';

/** The SD 1.5 scheduler_config.json (as the reference tiny-sd ships it). */
export { SD15_CONFIG };

export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];

/** Deterministic standard normals (mulberry32 + Box-Muller), independent of the torch generator. */
export function normals(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297;
  };
  return Float32Array.from({ length: count }, () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()));
}

const SIZE = 64;
/** The clean sample, inside (−1, 1) so that DDIM's default clipping leaves it alone. */
export const x0 = normals(SIZE, 1).map((v) => 0.9 * Math.tanh(v));
/** The noise of the trajectory. */
export const epsilon = normals(SIZE, 2);

/**
 * What a perfect model outputs for `modelInput` (the UNet's input, variance-preserving) at noise level
 * ᾱ when its clean sample is x₀: ε = (x − √ᾱ·x₀)/√(1 − ᾱ), v = √ᾱ·ε − √(1 − ᾱ)·x₀, or x₀ itself.
 */
export function perfectModel(type: PredictionType, modelInput: Float32Array, alphaProd: number, clean = x0): Float32Array {
  const a = Math.sqrt(alphaProd);
  const b = Math.sqrt(1 - alphaProd);
  return modelInput.map((x, i) => {
    const eps = (x - a * clean[i]) / b;
    return type === 'epsilon' ? eps : type === 'v_prediction' ? a * eps - b * clean[i] : clean[i];
  });
}

/** ᾱ of the variance-preserving input that a σ-scheduler gives the model: 1/(σ² + 1). */
export const alphaProdOfSigma = (sigma: number) => 1 / (sigma * sigma + 1);

/** A noise source that counts its calls. */
export function countingNoise(seed = 3): { noise: NoiseSource; calls: () => number } {
  let calls = 0;
  return {
    noise: () => normals(SIZE, seed + 1000 * ++calls),
    calls: () => calls,
  };
}

export const noNoise: NoiseSource = () => assert.fail('this scheduler must not draw noise');

/**
 * The pipeline's loop: timesteps from `tStart · order`, the model called on the scaled input.
 * `model` gets the call index within the run and the schedule position the call started from.
 */
export function denoise(
  scheduler: Scheduler,
  sample: Float32Array,
  model: (modelInput: Float32Array, timestep: number, call: number) => Float32Array,
  options: { tStart?: number; noise?: NoiseSource; onStep?: (sample: Float32Array, call: number) => void } = {},
): Float32Array {
  const timesteps = scheduler.timesteps.slice((options.tStart ?? 0) * scheduler.order);
  timesteps.forEach((t, call) => {
    const input = scheduler.scaleModelInput(sample, t);
    const output = model(input, t, call);
    const [sampleBefore, outputBefore] = [sample.slice(), output.slice()];
    const next = scheduler.step(output, t, sample, options.noise ?? noNoise);
    assert.deepEqual([sample, output], [sampleBefore, outputBefore], 'step must not mutate its inputs');
    assert.notEqual(next, sample, 'step must return a new array');
    sample = next;
    options.onStep?.(sample, call);
  });
  return sample;
}

/** √ᾱ·x₀ + √(1 − ᾱ)·ε: the trajectory's sample at noise level ᾱ. */
export function vpSample(alphaProd: number, clean = x0, noise = epsilon): Float32Array {
  return clean.map((x, i) => Math.sqrt(alphaProd) * x + Math.sqrt(1 - alphaProd) * noise[i]);
}
