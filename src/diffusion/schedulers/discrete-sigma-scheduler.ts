// What the k-diffusion samplers of this folder (Euler, Euler a, Heun, DPM2, LMS) share, each of
// their diffusers classes repeating it: the σ of every training timestep, the inference σs drawn
// from it, the step index, the input scaling, x₀ from the model output and the noising. The
// samplers that call the UNet twice a step lay the σ table out their own way (useSchedule).
import {
  alphasCumprod,
  initStepIndex,
  interp,
  linspace32,
  sigmaRamp,
  sigmaToT,
  spacedTimesteps,
  trainingSigmas,
} from './scheduler.ts';
import type { NoiseScheduleConfig, NoiseSource, PredictionType, Scheduler, SigmaRampConfig, TimestepSpacing } from './scheduler.ts';

/** The configuration keys every k-diffusion sampler here reads (none has rescale_betas_zero_snr in 0.21.4). */
export interface SigmaSchedulerConfig extends Omit<NoiseScheduleConfig, 'rescale_betas_zero_snr'> {
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
}

export type InterpolationType = 'linear' | 'log_linear';

/** How the inference σs are drawn from the training ones; only some samplers expose these keys. */
export interface SigmaScheduleOptions extends SigmaRampConfig {
  interpolation_type: InterpolationType;
}

/** The schedule of the samplers that have no keys for it. */
export const PLAIN_SCHEDULE: SigmaScheduleOptions = { interpolation_type: 'linear', use_karras_sigmas: false, use_exponential_sigmas: false };

const f32 = Math.fround;

/** `C`: the sampler's own configuration, which adds its keys to the shared ones. */
export abstract class DiscreteSigmaScheduler<C extends SigmaSchedulerConfig = SigmaSchedulerConfig> implements Scheduler {
  readonly order: number = 1;
  protected readonly config: C;
  readonly #schedule: SigmaScheduleOptions;
  readonly #ramp: ReturnType<typeof sigmaRamp>;
  /** σ of each training timestep, increasing with t (float32). */
  readonly #trainingSigmas: Float32Array;
  readonly #logSigmas: Float32Array;
  readonly #trainingTimesteps: number[];
  #timesteps: number[];
  #sigmas: Float32Array;
  /** Index into `sigmas` of the next UNet call, set from the first timestep seen (diffusers' `_step_index`). */
  protected stepIndex: number | null = null;

  protected constructor(config: C, schedule: SigmaScheduleOptions) {
    this.config = config;
    this.#schedule = schedule;
    this.#ramp = sigmaRamp(new.target.name, schedule);
    this.#trainingSigmas = trainingSigmas(alphasCumprod({ ...config, rescale_betas_zero_snr: false }));
    this.#logSigmas = this.#trainingSigmas.map(Math.log);
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
    const { timesteps, sigmas } = this.inferenceSigmas(numInferenceSteps);
    this.useSchedule(timesteps, [...sigmas, 0]);
  }

  /**
   * The spaced timesteps, highest first, and the σ of each (one σ more for log_linear): the table
   * before a sampler lays it out for its UNet calls.
   */
  protected inferenceSigmas(numInferenceSteps: number): { timesteps: number[]; sigmas: number[] } {
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
    if (this.#ramp) {
      // diffusers 0.21.4 ramps between the σs of the first and last spaced timesteps.
      sigmas = this.#ramp(sigmas, numInferenceSteps);
      timesteps = sigmas.map((sigma) => this.timestepOf(sigma));
    }
    return { timesteps, sigmas };
  }

  /** Sets the timesteps of the UNet calls and the σ of each, with the final zeros (float32); restarts the count. */
  protected useSchedule(timesteps: number[], sigmas: ArrayLike<number>): void {
    this.#timesteps = timesteps;
    this.#sigmas = Float32Array.from(sigmas);
    this.stepIndex = null;
  }

  /** The (fractional) training timestep of a noise level. */
  protected timestepOf(sigma: number): number {
    return sigmaToT(sigma, this.#logSigmas);
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return this.scaleToUnitVariance(sample, this.sigmas[this.currentIndex(timestep)]);
  }

  abstract step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array;

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.noiseIndex(timestep)];
    return originalSamples.map((x, i) => x + noise[i] * sigma);
  }

  /** The index of the σ that addNoise uses for `timestep`. */
  protected noiseIndex(timestep: number): number {
    // diffusers takes `.item()` of the matches: the timestep must occur exactly once.
    const index = this.#timesteps.indexOf(timestep);
    if (index < 0 || this.#timesteps.lastIndexOf(timestep) !== index) {
      throw new RangeError(`${this.constructor.name}: timestep ${timestep} is not exactly once in the schedule`);
    }
    return index;
  }

  /** The step index, found from the first timestep the loop passes (img2img may start mid-schedule). */
  protected currentIndex(timestep: number): number {
    this.stepIndex ??= initStepIndex(this.#timesteps, timestep);
    return this.stepIndex;
  }

  /** The model input at noise level σ: sample / √(σ² + 1), in float32. */
  protected scaleToUnitVariance(sample: Float32Array, sigma: number): Float32Array {
    const scale = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    return sample.map((x) => x / scale);
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
