// DDIM (Song et al., arXiv:2010.02502): the deterministic non-Markovian sampler, formula (12); with
// η > 0 it adds back noise of standard deviation η·σₜ (formula 16), DDPM-like at η = 1.
import {
  alphaProdAt,
  alphasCumprod,
  BETA_SCHEDULES,
  ddpmAddNoise,
  PREDICTION_TYPES,
  resolveConfig,
  roundHalfEven,
  SchedulerConfigError,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
} from './scheduler.ts';
import type { NoiseScheduleConfig, NoiseSource, PredictionType, Scheduler, TimestepSpacing } from './scheduler.ts';

interface DDIMConfig extends NoiseScheduleConfig {
  clip_sample: boolean;
  set_alpha_to_one: boolean;
  steps_offset: number;
  prediction_type: PredictionType;
  thresholding: boolean;
  clip_sample_range: number;
  timestep_spacing: TimestepSpacing;
}

// DDIMScheduler.__init__ defaults of diffusers 0.21.4 (note clip_sample and set_alpha_to_one: true).
const DEFAULTS: DDIMConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  clip_sample_range: 1,
  timestep_spacing: 'leading',
  rescale_betas_zero_snr: false,
};

const f32 = Math.fround;

export class DDIMScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly #config: DDIMConfig;
  readonly #eta: number;
  readonly #cumprod: Float32Array;
  /** ᾱ after the last step: 1, or ᾱ₀ as Stable Diffusion configures it. */
  readonly #finalAlphaCumprod: number;
  #timesteps: number[] = [];
  #numInferenceSteps = 0;

  constructor(rawConfig: Record<string, unknown>, eta = 0) {
    const config = resolveConfig('DDIMScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    if (config.thresholding) {
      throw new SchedulerConfigError('DDIMScheduler: thresholding (for pixel-space models) is not supported');
    }
    if (!Number.isFinite(eta) || eta < 0) throw new SchedulerConfigError(`DDIMScheduler: eta must be ≥ 0, got ${eta}`);
    this.#config = config;
    this.#eta = eta;
    this.#cumprod = alphasCumprod(config);
    this.#finalAlphaCumprod = config.set_alpha_to_one ? 1 : this.#cumprod[0];
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps, timestep_spacing, steps_offset } = this.#config;
    if (numInferenceSteps > num_train_timesteps) {
      throw new SchedulerConfigError(
        `DDIMScheduler: ${numInferenceSteps} steps exceed the model's ${num_train_timesteps} training timesteps`,
      );
    }
    this.#numInferenceSteps = numInferenceSteps;
    this.#timesteps = spacedTimesteps(timestep_spacing, num_train_timesteps, numInferenceSteps, steps_offset).map(
      roundHalfEven,
    );
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    if (this.#numInferenceSteps === 0) throw new Error('DDIMScheduler: call setTimesteps before step');
    const config = this.#config;
    // The previous timestep is one step ratio back whatever the spacing, as diffusers computes it.
    const prevTimestep = timestep - Math.floor(config.num_train_timesteps / this.#numInferenceSteps);
    const alphaProdT = this.#alphaProd(timestep);
    const alphaProdTPrev = prevTimestep >= 0 ? this.#alphaProd(prevTimestep) : this.#finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdTPrev = f32(1 - alphaProdTPrev);
    const sqrtAlphaProdT = f32(Math.sqrt(alphaProdT));
    const sqrtBetaProdT = f32(Math.sqrt(betaProdT));

    const variance = f32(f32(betaProdTPrev / betaProdT) * f32(1 - f32(alphaProdT / alphaProdTPrev)));
    const stdDevT = f32(this.#eta * f32(Math.sqrt(variance)));
    const directionCoeff = f32(Math.sqrt(f32(betaProdTPrev - f32(stdDevT * stdDevT))));
    const sqrtAlphaProdTPrev = f32(Math.sqrt(alphaProdTPrev));
    const clip = config.clip_sample ? config.clip_sample_range : Infinity;

    const prevSample = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const out = modelOutput[i];
      let predOriginal: number;
      let predEpsilon: number;
      if (config.prediction_type === 'epsilon') {
        predOriginal = f32((x - sqrtBetaProdT * out) / sqrtAlphaProdT);
        predEpsilon = out;
      } else if (config.prediction_type === 'sample') {
        predOriginal = out;
        predEpsilon = f32((x - sqrtAlphaProdT * out) / sqrtBetaProdT);
      } else {
        predOriginal = f32(sqrtAlphaProdT * x - sqrtBetaProdT * out);
        predEpsilon = f32(sqrtAlphaProdT * out + sqrtBetaProdT * x);
      }
      predOriginal = Math.min(Math.max(predOriginal, -clip), clip);
      prevSample[i] = sqrtAlphaProdTPrev * predOriginal + directionCoeff * predEpsilon;
    }
    // Only η > 0 draws, as diffusers' step does with a generator.
    if (this.#eta > 0) {
      const varianceNoise = noise();
      for (let i = 0; i < prevSample.length; i++) prevSample[i] += stdDevT * varianceNoise[i];
    }
    return prevSample;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return ddpmAddNoise(this.#cumprod, originalSamples, noise, timestep);
  }

  #alphaProd(timestep: number): number {
    return alphaProdAt('DDIMScheduler', this.#cumprod, timestep);
  }
}
