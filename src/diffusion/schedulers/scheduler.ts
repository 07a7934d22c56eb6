// What every scheduler shares: the interface the denoising loop drives, configuration read the
// way diffusers' `from_config` reads it, the training noise schedule, and the numpy idioms the
// schedulers are written in. Each scheduler lives in its own file, named after diffusers' class.

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';

/** Draws one standard-normal tensor shaped like the latents, each image from its own generator. */
export type NoiseSource = () => Float32Array;

/**
 * The denoising loop's view of a scheduler, mirroring diffusers' method names.
 * Latents are flat float32 arrays ([batch, channels, height, width]); every operation is
 * elementwise, so the batch layout does not matter to schedulers.
 */
export interface Scheduler {
  /** The timesteps of the UNet calls, in order; second-order schedulers repeat or interleave them. */
  readonly timesteps: readonly number[];
  /** How many UNet calls make one step of the user's step count (diffusers' `order`). */
  readonly order: number;
  /** Standard deviation of the initial noise, by which the pipeline scales the first latents. */
  readonly initNoiseSigma: number;
  setTimesteps(numInferenceSteps: number): void;
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /** One solver step: the sample at the previous timestep. `noise` is called only by schedulers that draw noise. */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array;
  /** Noises clean latents to the level of `timestep` (img2img's start). */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}

export class SchedulerConfigError extends Error {
  override name = 'SchedulerConfigError';
}

/** The keys of `scheduler_config.json` that the training noise schedule depends on. */
export interface NoiseScheduleConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  rescale_betas_zero_snr: boolean;
}

type ConfigValue = number | string | boolean | number[] | null;

/**
 * Reads a scheduler's configuration as diffusers' `from_config` does: each key the class declares
 * takes the value from `scheduler_config.json` when present, its own default otherwise; other keys
 * are ignored. `allowed` lists the accepted values of string-valued keys.
 */
export function resolveConfig<T extends { [K in keyof T]: ConfigValue }>(
  className: string,
  defaults: T,
  raw: Record<string, unknown>,
  allowed: { [K in keyof T]?: readonly string[] } = {},
): T {
  const config = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof T & string)[]) {
    const value = raw[key];
    if (value === undefined) continue;
    const fallback = defaults[key];
    const ok =
      value === null
        ? fallback === null || Array.isArray(fallback)
        : Array.isArray(fallback) || fallback === null
          ? Array.isArray(value) && value.every((v) => typeof v === 'number')
          : typeof value === typeof fallback;
    if (!ok) throw new SchedulerConfigError(`${className}: ${key} must be a ${typeof fallback}, got ${JSON.stringify(value)}`);
    const choices = allowed[key];
    if (choices && !choices.includes(value as string)) {
      throw new SchedulerConfigError(`${className}: ${key} "${String(value)}" is not supported (use ${choices.join(', ')})`);
    }
    config[key] = value as T[typeof key];
  }
  return config;
}

export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'trailing', 'linspace'];
export const BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];

const f32 = Math.fround;

/**
 * alphas_cumprod of the training schedule, in float32 as torch computes it: the betas, then
 * the running product of (1 - beta).
 */
export function alphasCumprod(config: NoiseScheduleConfig): Float32Array {
  const n = config.num_train_timesteps;
  let betas: Float32Array;
  if (config.trained_betas) {
    betas = Float32Array.from(config.trained_betas);
  } else if (config.beta_schedule === 'linear') {
    betas = linspace32(config.beta_start, config.beta_end, n);
  } else if (config.beta_schedule === 'scaled_linear') {
    betas = linspace32(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n).map((b) => f32(b * b));
  } else {
    betas = cosineBetas(n);
  }
  const cumprod = new Float32Array(n);
  let product = 1;
  for (let i = 0; i < n; i++) {
    product = f32(product * f32(1 - betas[i]));
    cumprod[i] = product;
  }
  return config.rescale_betas_zero_snr ? rescaleZeroTerminalSnr(cumprod) : cumprod;
}

/** torch.linspace in float32: the first half steps up from `start`, the second half down from `end`. */
export function linspace32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const step = f32((end - start) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? f32(start + step * i) : f32(end - step * (steps - i - 1));
  return out;
}

/** The "squaredcos_cap_v2" (Glide cosine) schedule, capped at 0.999. */
function cosineBetas(n: number): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  return Float32Array.from({ length: n }, (_, i) => Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999));
}

/** Rescales the schedule to zero terminal SNR (arXiv:2305.08891, algorithm 1). */
function rescaleZeroTerminalSnr(cumprod: Float32Array): Float32Array {
  const sqrt = Array.from(cumprod, Math.sqrt);
  const first = sqrt[0];
  const last = sqrt[sqrt.length - 1];
  const rescaled = sqrt.map((s) => ((s - last) * first) / (first - last));
  return Float32Array.from(rescaled, (s) => s * s);
}

/** numpy.linspace (float64): `num` evenly spaced values from start to stop inclusive. */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  return Array.from({ length: num }, (_, i) => (i === num - 1 ? stop : start + i * step));
}

/** numpy.arange(start, stop, step) for a step of either sign. */
export function arange(start: number, stop: number, step: number): number[] {
  const length = Math.max(Math.ceil((stop - start) / step), 0);
  // numpy fills with the step as it lands after one addition, (start + step) - start, which decides
  // how values such as 937.5 round (trailing spacing, 48 steps).
  const delta = start + step - start;
  return Array.from({ length }, (_, i) => (i === 1 ? start + step : start + i * delta));
}

/** numpy.interp for increasing `xp`. */
export function interp(x: number, xp: ArrayLike<number>, fp: ArrayLike<number>): number {
  const n = xp.length;
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid] <= x) lo = mid;
    else hi = mid;
  }
  const t = (x - xp[lo]) / (xp[hi] - xp[lo]);
  return fp[lo] + t * (fp[hi] - fp[lo]);
}

/** numpy.round: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The k-diffusion noise levels of the training schedule: sqrt((1 - ᾱ) / ᾱ), in float32. */
export function trainingSigmas(cumprod: Float32Array): Float32Array {
  return cumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
}

/** The (fractional) training timestep of a noise level, interpolating in log-sigma (diffusers' `_sigma_to_t`). */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(sigma);
  let lowIdx = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i] >= 0) lowIdx = i;
  lowIdx = Math.min(lowIdx, logSigmas.length - 2);
  const low = logSigmas[lowIdx];
  const high = logSigmas[lowIdx + 1];
  const w = Math.min(Math.max((low - logSigma) / (low - high), 0), 1);
  return (1 - w) * lowIdx + w * (lowIdx + 1);
}

/** The noise levels of Karras et al. (2022), rho = 7, between the first and last of `sigmas`. */
export function karrasSigmas(sigmas: ArrayLike<number>, numInferenceSteps: number): number[] {
  const rho = 7;
  const minInvRho = sigmas[sigmas.length - 1] ** (1 / rho);
  const maxInvRho = sigmas[0] ** (1 / rho);
  return linspace(0, 1, numInferenceSteps).map((ramp) => (maxInvRho + ramp * (minInvRho - maxInvRho)) ** rho);
}

/**
 * Noise levels evenly spaced in log σ between the first and last of `sigmas`: k-diffusion's
 * get_sigmas_exponential, as later diffusers' `_convert_to_exponential` computes it (float64).
 */
export function exponentialSigmas(sigmas: ArrayLike<number>, numInferenceSteps: number): number[] {
  return linspace(Math.log(sigmas[0]), Math.log(sigmas[sigmas.length - 1]), numInferenceSteps).map(Math.exp);
}

/** The keys that replace a scheduler's σ spacing: diffusers 0.21.4's Karras ramp, and later diffusers' exponential one. */
export interface SigmaRampConfig {
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
}

/** The ramp the configuration asks for, if any; both at once is an error, as in diffusers. */
export function sigmaRamp(className: string, config: SigmaRampConfig): typeof karrasSigmas | undefined {
  if (config.use_karras_sigmas && config.use_exponential_sigmas) {
    throw new SchedulerConfigError(`${className}: use_karras_sigmas and use_exponential_sigmas cannot both be set`);
  }
  return config.use_karras_sigmas ? karrasSigmas : config.use_exponential_sigmas ? exponentialSigmas : undefined;
}

/**
 * The step index a sampler starts from, as diffusers' `_init_step_index`: the second occurrence of
 * a repeated timestep, so that an img2img start in a second-order schedule skips no noise level.
 */
export function initStepIndex(timesteps: readonly number[], timestep: number): number {
  const first = timesteps.indexOf(timestep);
  if (first < 0) throw new RangeError(`timestep ${timestep} is not in the schedule`);
  const second = timesteps.indexOf(timestep, first + 1);
  return second < 0 ? first : second;
}

/**
 * The inference timesteps of diffusers' `timestep_spacing` (table 2 of arXiv:2305.08891), highest
 * first, in float64. "linspace" is left unrounded: the alpha-schedule samplers round it, the sigma
 * samplers keep it as float32. Only "leading" adds `steps_offset`.
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  numInferenceSteps: number,
  stepsOffset: number,
): number[] {
  switch (spacing) {
    case 'linspace':
      return linspace(0, numTrainTimesteps - 1, numInferenceSteps).reverse();
    case 'leading': {
      const stepRatio = Math.floor(numTrainTimesteps / numInferenceSteps);
      return arange(0, numInferenceSteps, 1).map((i) => i * stepRatio + stepsOffset).reverse();
    }
    case 'trailing':
      return arange(numTrainTimesteps, 0, -numTrainTimesteps / numInferenceSteps).map((t) => roundHalfEven(t) - 1);
  }
}

/** ᾱ at a training timestep, for the samplers that step between integer timesteps; a RangeError names the class otherwise. */
export function alphaProdAt(className: string, cumprod: Float32Array, timestep: number): number {
  const alphaProd = cumprod[timestep];
  if (!Number.isInteger(timestep) || alphaProd === undefined) {
    throw new RangeError(`${className}: timestep ${timestep} is not a training timestep`);
  }
  return alphaProd;
}

/** DDPM's forward process √ᾱₜ·x₀ + √(1 − ᾱₜ)·ε (DDPMScheduler.add_noise), in float32. */
export function ddpmAddNoise(
  cumprod: Float32Array,
  originalSamples: Float32Array,
  noise: Float32Array,
  timestep: number,
): Float32Array {
  if (!Number.isInteger(timestep) || timestep < 0 || timestep >= cumprod.length) {
    throw new RangeError(`addNoise: timestep ${timestep} is not a training timestep`);
  }
  const alphaProd = cumprod[timestep];
  const sqrtAlphaProd = f32(Math.sqrt(alphaProd));
  const sqrtOneMinusAlphaProd = f32(Math.sqrt(f32(1 - alphaProd)));
  return originalSamples.map((x, i) => sqrtAlphaProd * x + sqrtOneMinusAlphaProd * noise[i]);
}
