// Euler's method on the probability-flow ODE in k-diffusion's parameterisation x = x₀ + σ·ε
// (Karras et al., arXiv:2206.00364, algorithm 2 without churn). DiscreteSigmaScheduler holds what
// the k-diffusion samplers of this folder share: the σ schedule over the training timesteps, the
// step index, the input scaling and the noising.
import {
  alphasCumprod,
  BETA_SCHEDULES,
  initStepIndex,
  interp,
  karrasSigmas,
  linspace32,
  PREDICTION_TYPES,
  resolveConfig,
  sigmaToT,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  trainingSigmas,
} from './scheduler.ts';
import type { NoiseScheduleConfig, NoiseSource, PredictionType, Scheduler, TimestepSpacing } from './scheduler.ts';

/** The configuration keys every k-diffusion sampler here reads (none has rescale_betas_zero_snr in 0.21.4). */
export interface SigmaSchedulerConfig extends Omit<NoiseScheduleConfig, 'rescale_betas_zero_snr'> {
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
}

export type InterpolationType = 'linear' | 'log_linear';

/** How the inference σs are drawn from the training ones; only some samplers expose these keys. */
export interface SigmaScheduleOptions {
  interpolation_type: InterpolationType;
  use_karras_sigmas: boolean;
}

const f32 = Math.fround;

export abstract class DiscreteSigmaScheduler implements Scheduler {
  readonly order = 1;
  protected readonly config: SigmaSchedulerConfig;
  readonly #schedule: SigmaScheduleOptions;
  /** σ of each training timestep, increasing with t (float32). */
  readonly #trainingSigmas: Float32Array;
  readonly #trainingTimesteps: number[];
  #timesteps: number[];
  #sigmas: Float32Array;
  /** Index into `sigmas` of the next step, set from the first timestep seen (diffusers' `_step_index`). */
  protected stepIndex: number | null = null;

  protected constructor(config: SigmaSchedulerConfig, schedule: SigmaScheduleOptions) {
    this.config = config;
    this.#schedule = schedule;
    this.#trainingSigmas = trainingSigmas(alphasCumprod({ ...config, rescale_betas_zero_snr: false }));
    this.#trainingTimesteps = Array.from(this.#trainingSigmas, (_, t) => t);
    // Before setTimesteps: the whole training schedule, as diffusers' constructor leaves it.
    this.#timesteps = this.#trainingTimesteps.toReversed();
    this.#sigmas = Float32Array.from([...this.#trainingSigmas.toReversed(), 0]);
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  /** σ at each timestep, then the final 0 (log_linear leaves one σ more, as diffusers does). */
  get sigmas(): Float32Array {
    return this.#sigmas;
  }

  get initNoiseSigma(): number {
    const sigmaMax = this.sigmas.reduce((a, b) => Math.max(a, b));
    const { timestep_spacing } = this.config;
    return timestep_spacing === 'linspace' || timestep_spacing === 'trailing'
      ? sigmaMax
      : f32(Math.sqrt(f32(f32(sigmaMax * sigmaMax) + 1)));
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps, timestep_spacing, steps_offset } = this.config;
    const training = this.#trainingSigmas;
    // numpy keeps these timesteps as float32.
    let timesteps = spacedTimesteps(timestep_spacing, num_train_timesteps, numInferenceSteps, steps_offset).map(f32);
    let sigmas: number[];
    if (this.#schedule.interpolation_type === 'linear') {
      sigmas = timesteps.map((t) => interp(t, this.#trainingTimesteps, training));
    } else {
      // torch.linspace in float32 over log σ, numInferenceSteps + 1 points: one more σ than timesteps.
      const logMax = f32(Math.log(training[training.length - 1]));
      const logMin = f32(Math.log(training[0]));
      sigmas = Array.from(linspace32(logMax, logMin, numInferenceSteps + 1), (s) => f32(Math.exp(s)));
    }
    if (this.#schedule.use_karras_sigmas) {
      const logSigmas = training.map((s) => f32(Math.log(s)));
      sigmas = karrasSigmas(sigmas, numInferenceSteps);
      timesteps = sigmas.map((sigma) => sigmaToT(sigma, logSigmas));
    }
    this.#timesteps = timesteps;
    this.#sigmas = Float32Array.from([...sigmas, 0]);
    this.stepIndex = null;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.currentIndex(timestep)];
    const scale = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    return sample.map((x) => x / scale);
  }

  abstract step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array;

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    // diffusers takes `.item()` of the matches: the timestep must occur exactly once.
    const index = this.#timesteps.indexOf(timestep);
    if (index < 0 || this.#timesteps.lastIndexOf(timestep) !== index) {
      throw new RangeError(`${this.constructor.name}: timestep ${timestep} is not exactly once in the schedule`);
    }
    const sigma = this.sigmas[index];
    return originalSamples.map((x, i) => x + noise[i] * sigma);
  }

  /** The step index, found from the first timestep the loop passes (img2img may start mid-schedule). */
  protected currentIndex(timestep: number): number {
    this.stepIndex ??= initStepIndex(this.#timesteps, timestep);
    return this.stepIndex;
  }

  /** x₀ as the model predicts it at noise level σ (float32). */
  protected predictOriginalSample(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    switch (this.config.prediction_type) {
      case 'epsilon':
        return sample.map((x, i) => x - sigma * modelOutput[i]);
      case 'v_prediction': {
        // c_out·v + c_skip·x with c_out = −σ/√(σ²+1), c_skip = 1/(σ²+1)
        const sigmaSquaredPlusOne = f32(f32(sigma * sigma) + 1);
        const cOut = f32(-sigma / f32(Math.sqrt(sigmaSquaredPlusOne)));
        return sample.map((x, i) => f32(modelOutput[i] * cOut) + f32(x / sigmaSquaredPlusOne));
      }
      case 'sample':
        return modelOutput;
    }
  }
}

interface EulerDiscreteConfig extends SigmaSchedulerConfig, SigmaScheduleOptions {}

// EulerDiscreteScheduler.__init__ defaults of diffusers 0.21.4.
const DEFAULTS: EulerDiscreteConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  interpolation_type: 'linear',
  use_karras_sigmas: false,
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

export class EulerDiscreteScheduler extends DiscreteSigmaScheduler {
  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig('EulerDiscreteScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      interpolation_type: ['linear', 'log_linear'],
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    super(config, config);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index];
    // diffusers draws the churn noise on every step, though s_churn = 0 leaves it unused.
    noise();
    const predOriginalSample = this.predictOriginalSample(modelOutput, sample, sigma);
    const dt = f32(this.sigmas[index + 1] - sigma);
    this.stepIndex = index + 1;
    return sample.map((x, i) => x + f32((x - predOriginalSample[i]) / sigma) * dt);
  }
}
