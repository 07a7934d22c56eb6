// Latent Consistency Model sampling (Luo et al., arXiv:2310.04378), as diffusers v0.40.0's
// LCMScheduler (the class is newer than diffusers 0.21.4, which the other schedulers follow): each
// step maps the sample straight to a denoised estimate through the consistency model's boundary
// condition, then noises that estimate to the next timestep's level with fresh noise.
import {
  alphaProdAt,
  alphasCumprod,
  BETA_SCHEDULES,
  ddpmAddNoise,
  initStepIndex,
  PREDICTION_TYPES,
  resolveConfig,
  SchedulerConfigError,
  TIMESTEP_SPACINGS,
} from './scheduler.ts';
import type { NoiseScheduleConfig, NoiseSource, PredictionType, Scheduler, TimestepSpacing } from './scheduler.ts';

interface LCMConfig extends NoiseScheduleConfig {
  original_inference_steps: number;
  clip_sample: boolean;
  clip_sample_range: number;
  set_alpha_to_one: boolean;
  steps_offset: number;
  prediction_type: PredictionType;
  thresholding: boolean;
  timestep_spacing: TimestepSpacing;
  timestep_scaling: number;
}

// LCMScheduler.__init__ defaults of diffusers v0.40.0. `steps_offset` and `timestep_spacing` are
// declared there but its set_timesteps reads neither: LCM has its own spacing (below).
const DEFAULTS: LCMConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  trained_betas: null,
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  timestep_spacing: 'leading',
  timestep_scaling: 10,
  rescale_betas_zero_snr: false,
};

/** σ_data of the consistency model's boundary condition (diffusers' fixed 0.5). */
const SIGMA_DATA = 0.5;

const f32 = Math.fround;

export class LCMScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly #config: LCMConfig;
  readonly #cumprod: Float32Array;
  readonly #finalAlphaCumprod: number;
  #timesteps: number[] = [];
  #stepIndex: number | undefined;

  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig('LCMScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    if (config.thresholding) {
      throw new SchedulerConfigError('LCMScheduler: thresholding (for pixel-space models) is not supported');
    }
    const { original_inference_steps: original, num_train_timesteps } = config;
    if (!Number.isInteger(original) || original < 1 || original > num_train_timesteps) {
      throw new SchedulerConfigError(
        `LCMScheduler: original_inference_steps must be an integer from 1 to the ${num_train_timesteps} training timesteps, got ${original}`,
      );
    }
    this.#config = config;
    this.#cumprod = alphasCumprod(config);
    this.#finalAlphaCumprod = config.set_alpha_to_one ? 1 : this.#cumprod[0];
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  /**
   * The distillation schedule is `original_inference_steps` timesteps k − 1, 2k − 1, …, k = T // that
   * count; the inference steps are evenly spaced indices into it, from its noisiest end.
   */
  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps, original_inference_steps: original } = this.#config;
    if (numInferenceSteps > original) {
      throw new SchedulerConfigError(
        `LCMScheduler: ${numInferenceSteps} steps exceed the model's original_inference_steps (${original}), whose schedule the steps are taken from`,
      );
    }
    const k = Math.floor(num_train_timesteps / original);
    const origin = Array.from({ length: original }, (_, i) => (original - i) * k - 1);
    // np.floor(np.linspace(0, original, numInferenceSteps, endpoint=False)): the skipping step.
    this.#timesteps = Array.from({ length: numInferenceSteps }, (_, i) => origin[Math.floor((i * original) / numInferenceSteps)]);
    this.#stepIndex = undefined;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    if (this.#timesteps.length === 0) throw new Error('LCMScheduler: call setTimesteps before step');
    const config = this.#config;
    const index = this.#stepIndex ?? initStepIndex(this.#timesteps, timestep);
    const prevTimestep = this.#timesteps[index + 1] ?? timestep;
    const alphaProdT = this.#alphaProd(timestep);
    const alphaProdTPrev = prevTimestep >= 0 ? this.#alphaProd(prevTimestep) : this.#finalAlphaCumprod;
    const sqrtAlphaProdT = f32(Math.sqrt(alphaProdT));
    const sqrtBetaProdT = f32(Math.sqrt(f32(1 - alphaProdT)));
    // The boundary condition in float64 (Python floats), applied in float32 as torch scales a tensor.
    const scaled = timestep * config.timestep_scaling;
    const cSkip = f32(SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2));
    const cOut = f32(scaled / Math.sqrt(scaled ** 2 + SIGMA_DATA ** 2));
    const clip = config.clip_sample ? config.clip_sample_range : Infinity;

    const denoised = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const out = modelOutput[i];
      let predOriginal =
        config.prediction_type === 'epsilon'
          ? f32(f32(x - f32(sqrtBetaProdT * out)) / sqrtAlphaProdT)
          : config.prediction_type === 'sample'
            ? out
            : f32(f32(sqrtAlphaProdT * x) - f32(sqrtBetaProdT * out));
      predOriginal = Math.min(Math.max(predOriginal, -clip), clip);
      denoised[i] = f32(cOut * predOriginal) + f32(cSkip * x);
    }
    this.#stepIndex = index + 1;
    // The last step returns the denoised estimate; the others draw noise (one generator draw per image).
    if (index === this.#timesteps.length - 1) return denoised;
    const z = noise();
    const sqrtAlphaProdTPrev = f32(Math.sqrt(alphaProdTPrev));
    const sqrtBetaProdTPrev = f32(Math.sqrt(f32(1 - alphaProdTPrev)));
    return denoised.map((d, i) => f32(sqrtAlphaProdTPrev * d) + f32(sqrtBetaProdTPrev * z[i]));
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return ddpmAddNoise(this.#cumprod, originalSamples, noise, timestep);
  }

  #alphaProd(timestep: number): number {
    return alphaProdAt('LCMScheduler', this.#cumprod, timestep);
  }
}
