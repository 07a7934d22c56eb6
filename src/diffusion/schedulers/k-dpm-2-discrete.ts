// DPM-Solver-2 in k-diffusion's form, as diffusers 0.21.4's KDPM2DiscreteScheduler: each step
// takes an Euler half step to the geometric mean of its two noise levels, then the full step with
// the derivative the model gives there. The UNet therefore also sees fractional timesteps.
import { kInitNoiseSigma, kPredictOriginal, kScaleModelInput } from './heun-discrete.ts';
import {
  alphasCumprod,
  arange,
  BETA_SCHEDULES,
  initStepIndex,
  interp,
  resolveConfig,
  sigmaToT,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  trainingSigmas,
} from './scheduler.ts';
import type { BetaSchedule, Scheduler, TimestepSpacing } from './scheduler.ts';

const DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'linear' as BetaSchedule,
  trained_betas: null as number[] | null,
  prediction_type: 'epsilon' as 'epsilon' | 'v_prediction',
  timestep_spacing: 'linspace' as TimestepSpacing,
  steps_offset: 0,
};

export class KDPM2DiscreteScheduler implements Scheduler {
  readonly order = 2;
  timesteps: number[] = [];
  initNoiseSigma = 1;
  private readonly config: typeof DEFAULTS;
  private readonly trainSigmas: Float32Array;
  private readonly logSigmas: Float32Array;
  /** Indexed like `timesteps` (diffusers' interleaving), with trailing zeros. */
  sigmas = new Float32Array(0);
  sigmasInterpol = new Float32Array(0);
  private stepIndex: number | null = null;
  /** The sample a step started from, kept while its midpoint is evaluated. */
  private startSample: Float32Array | null = null;

  constructor(rawConfig: Record<string, unknown>) {
    this.config = resolveConfig('KDPM2DiscreteScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      // diffusers 0.21.4 raises NotImplementedError for "sample" at the first step
      prediction_type: ['epsilon', 'v_prediction'],
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    this.trainSigmas = trainingSigmas(alphasCumprod({ ...this.config, rescale_betas_zero_snr: false }));
    this.logSigmas = this.trainSigmas.map(Math.log);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config } = this;
    const timesteps = spacedTimesteps(
      config.timestep_spacing,
      config.num_train_timesteps,
      numInferenceSteps,
      config.steps_offset,
    ).map(Math.fround);
    const trainIndices = arange(0, this.trainSigmas.length, 1);
    const sigmas = Float32Array.from([...timesteps.map((t) => interp(t, trainIndices, this.trainSigmas)), 0]);
    // Geometric mean of each level and the one before it: log-space lerp at ½ as torch.lerp computes it
    // (end − (end − start)·½). Entry 0 has no level before it and is never read; the last is 0.
    const sigmasInterpol = sigmas.map((s, i) => {
      const prevLog = Math.log(sigmas[(i + sigmas.length - 1) % sigmas.length]);
      return Math.exp(prevLog - (prevLog - Math.log(s)) * 0.5);
    });
    // diffusers' layout: the first level, every later one twice, then the last (0) once more
    const interleave = (values: Float32Array) => {
      const repeated = Array.from(values.subarray(1)).flatMap((v) => [v, v]);
      return [values[0], ...repeated, values[values.length - 1]];
    };
    this.sigmas = Float32Array.from(interleave(sigmas));
    this.sigmasInterpol = Float32Array.from(interleave(sigmasInterpol));
    const timestepsInterpol = Array.from(sigmasInterpol.subarray(1, -1), (s) =>
      Math.fround(sigmaToT(s, this.logSigmas)),
    );
    this.timesteps = [timesteps[0], ...timestepsInterpol.flatMap((t, i) => [t, timesteps[i + 1]])];
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, config.timestep_spacing);
    this.stepIndex = null;
    this.startSample = null;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    this.stepIndex ??= initStepIndex(this.timesteps, timestep);
    const sigma = this.startSample ? this.sigmasInterpol[this.stepIndex] : this.sigmas[this.stepIndex];
    return kScaleModelInput(sample, sigma);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const index = (this.stepIndex ??= initStepIndex(this.timesteps, timestep));
    const startSample = this.startSample;
    // At the midpoint (second call) the step index has moved one past the step's start.
    const sigma = startSample ? this.sigmas[index - 1] : this.sigmas[index];
    const sigmaInterpol = startSample ? this.sigmasInterpol[index] : this.sigmasInterpol[index + 1];
    const sigmaNext = startSample ? this.sigmas[index] : this.sigmas[index + 1];
    const sigmaInput = startSample ? sigmaInterpol : sigma;
    const predOriginal = kPredictOriginal(this.config.prediction_type, modelOutput, sample, sigmaInput);
    let prevSample: Float32Array;
    if (!startSample) {
      const dt = sigmaInterpol - sigma;
      prevSample = sample.map((x, i) => x + ((x - predOriginal[i]) / sigma) * dt);
      this.startSample = sample;
    } else {
      const dt = sigmaNext - sigma;
      prevSample = startSample.map((x, i) => x + ((sample[i] - predOriginal[i]) / sigmaInterpol) * dt);
      this.startSample = null;
    }
    this.stepIndex = index + 1;
    return prevSample;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[initStepIndex(this.timesteps, timestep)];
    return originalSamples.map((x, i) => x + noise[i] * sigma);
  }
}
