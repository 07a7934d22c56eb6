// Heun's method (Karras et al. 2022, algorithm 1 with γ = 0) as diffusers 0.21.4's
// HeunDiscreteScheduler: every step but the last is an Euler step followed by a correction that
// averages the derivatives at both ends, so the UNet sees each inner timestep twice.
import {
  alphasCumprod,
  arange,
  BETA_SCHEDULES,
  initStepIndex,
  interp,
  karrasSigmas,
  PREDICTION_TYPES,
  resolveConfig,
  sigmaToT,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  trainingSigmas,
} from './scheduler.ts';
import type { BetaSchedule, PredictionType, Scheduler, TimestepSpacing } from './scheduler.ts';

const DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'linear' as BetaSchedule,
  trained_betas: null as number[] | null,
  prediction_type: 'epsilon' as PredictionType,
  use_karras_sigmas: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  timestep_spacing: 'linspace' as TimestepSpacing,
  steps_offset: 0,
};

const f32 = Math.fround;

// The k-diffusion pieces HeunDiscreteScheduler shares with KDPM2DiscreteScheduler (which diffusers
// derives from it), in float32 as torch computes them.

/** init_noise_sigma: σ_max, or sqrt(σ_max² + 1) for "leading" spacing. */
export function kInitNoiseSigma(sigmas: Float32Array, spacing: TimestepSpacing): number {
  const sigmaMax = sigmas.reduce((a, b) => Math.max(a, b));
  return spacing === 'leading' ? f32(Math.sqrt(f32(f32(sigmaMax * sigmaMax) + 1))) : sigmaMax;
}

/** The model input at noise level σ: sample / sqrt(σ² + 1). */
export function kScaleModelInput(sample: Float32Array, sigma: number): Float32Array {
  const scale = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  return sample.map((x) => x / scale);
}

/** x0 as the model predicts it at noise level σ. */
export function kPredictOriginal(
  prediction: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
): Float32Array {
  if (prediction === 'epsilon') return sample.map((x, i) => x - sigma * modelOutput[i]);
  if (prediction === 'sample') return modelOutput;
  const variance = f32(f32(sigma * sigma) + 1);
  const outputScale = f32(-sigma / f32(Math.sqrt(variance)));
  return sample.map((x, i) => f32(modelOutput[i] * outputScale) + f32(x / variance));
}

/** The derivative and step size of a step's Euler half, which its second half corrects. */
interface FirstOrderHalf {
  derivative: Float32Array;
  dt: number;
  sample: Float32Array;
}

export class HeunDiscreteScheduler implements Scheduler {
  readonly order = 2;
  timesteps: number[] = [];
  initNoiseSigma = 1;
  private readonly config: typeof DEFAULTS;
  private readonly trainSigmas: Float32Array;
  private readonly logSigmas: Float32Array;
  /** One noise level per entry of `timesteps`, plus the final 0 (inner levels repeat, as the timesteps do). */
  sigmas = new Float32Array(0);
  private stepIndex: number | null = null;
  private firstOrderHalf: FirstOrderHalf | null = null;

  constructor(rawConfig: Record<string, unknown>) {
    this.config = resolveConfig('HeunDiscreteScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    this.trainSigmas = trainingSigmas(alphasCumprod({ ...this.config, rescale_betas_zero_snr: false }));
    this.logSigmas = this.trainSigmas.map(Math.log);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config } = this;
    // float32, as numpy builds them before interpolating the noise levels
    let timesteps = spacedTimesteps(
      config.timestep_spacing,
      config.num_train_timesteps,
      numInferenceSteps,
      config.steps_offset,
    ).map(Math.fround);
    const trainIndices = arange(0, this.trainSigmas.length, 1);
    let sigmas = timesteps.map((t) => interp(t, trainIndices, this.trainSigmas));
    if (config.use_karras_sigmas) {
      sigmas = karrasSigmas(sigmas, numInferenceSteps);
      timesteps = sigmas.map((sigma) => sigmaToT(sigma, this.logSigmas));
    }
    const inner = (values: number[]) => values.slice(1).flatMap((v) => [v, v]);
    this.sigmas = Float32Array.from([sigmas[0], ...inner(sigmas), 0]);
    this.timesteps = [timesteps[0], ...inner(timesteps)];
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, config.timestep_spacing);
    this.stepIndex = null;
    this.firstOrderHalf = null;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    this.stepIndex ??= initStepIndex(this.timesteps, timestep);
    return kScaleModelInput(sample, this.sigmas[this.stepIndex]);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const index = (this.stepIndex ??= initStepIndex(this.timesteps, timestep));
    const eulerHalf = this.firstOrderHalf;
    // The correction evaluates the model at the end of the Euler step, sigmas[index].
    const sigma = eulerHalf ? this.sigmas[index - 1] : this.sigmas[index];
    const sigmaNext = eulerHalf ? this.sigmas[index] : this.sigmas[index + 1];
    const sigmaInput = eulerHalf ? sigmaNext : sigma;
    const predOriginal = this.clip(kPredictOriginal(this.config.prediction_type, modelOutput, sample, sigmaInput));
    let prevSample: Float32Array;
    if (!eulerHalf) {
      const derivative = sample.map((x, i) => (x - predOriginal[i]) / sigma);
      const dt = sigmaNext - sigma;
      this.firstOrderHalf = { derivative, dt, sample };
      prevSample = sample.map((x, i) => x + derivative[i] * dt);
    } else {
      const { derivative: prevDerivative, dt, sample: startSample } = eulerHalf;
      prevSample = startSample.map(
        (x, i) => x + ((prevDerivative[i] + (sample[i] - predOriginal[i]) / sigmaNext) / 2) * dt,
      );
      this.firstOrderHalf = null;
    }
    this.stepIndex = index + 1;
    return prevSample;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    // Both occurrences of a repeated timestep carry the same noise level, so diffusers' occurrence
    // counting (index_for_timestep) cannot change the result.
    const sigma = this.sigmas[initStepIndex(this.timesteps, timestep)];
    return originalSamples.map((x, i) => x + noise[i] * sigma);
  }

  private clip(predOriginal: Float32Array): Float32Array {
    if (!this.config.clip_sample) return predOriginal;
    const range = this.config.clip_sample_range;
    return predOriginal.map((x) => Math.min(Math.max(x, -range), range));
  }
}
