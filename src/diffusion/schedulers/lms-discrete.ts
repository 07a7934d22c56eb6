// Linear multistep (k-diffusion's sample_lms): the ODE derivative is interpolated through the last
// four steps by a Lagrange polynomial in σ and integrated exactly over the next σ interval.
import { DiscreteSigmaScheduler } from './discrete-sigma-scheduler.ts';
import type { SigmaSchedulerConfig } from './discrete-sigma-scheduler.ts';
import { BETA_SCHEDULES, PREDICTION_TYPES, resolveConfig, TIMESTEP_SPACINGS } from './scheduler.ts';

interface LMSDiscreteConfig extends SigmaSchedulerConfig {
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
}

// LMSDiscreteScheduler.__init__ defaults of diffusers 0.21.4.
const DEFAULTS: LMSDiscreteConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  use_karras_sigmas: false,
  // later diffusers' key (see sigmaRamp)
  use_exponential_sigmas: false,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

/** diffusers' default `order` argument of step(). */
const LMS_ORDER = 4;

export class LMSDiscreteScheduler extends DiscreteSigmaScheduler {
  /** The ODE derivatives of the last steps, newest last. */
  #derivatives: Float32Array[] = [];

  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig('LMSDiscreteScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    super(config, { ...config, interpolation_type: 'linear' });
  }

  override setTimesteps(numInferenceSteps: number): void {
    super.setTimesteps(numInferenceSteps);
    this.#derivatives = [];
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index];
    const predOriginalSample = this.predictOriginalSample(modelOutput, sample, sigma);
    this.#derivatives.push(sample.map((x, i) => (x - predOriginalSample[i]) / sigma));
    if (this.#derivatives.length > LMS_ORDER) this.#derivatives.shift();
    // The order follows the step index, not the history: an img2img start at index ≥ 3 weights its
    // single derivative by the fourth-order coefficient, as diffusers does.
    const order = Math.min(index + 1, LMS_ORDER);
    const coeffs = Array.from({ length: order }, (_, k) => this.#lmsCoefficient(order, index, k));
    const terms = Math.min(order, this.#derivatives.length);
    const newest = this.#derivatives.length - 1;
    this.stepIndex = index + 1;
    return sample.map((x, i) => {
      let sum = 0;
      for (let k = 0; k < terms; k++) sum += coeffs[k] * this.#derivatives[newest - k][i];
      return x + sum;
    });
  }

  /**
   * ∫ from σ_t to σ_{t+1} of the Lagrange basis polynomial that is 1 at σ_{t−current} and 0 at the
   * other `order` − 1 nodes σ_t, σ_{t−1}, …: degree ≤ 3, which two-point Gauss–Legendre integrates exactly.
   */
  #lmsCoefficient(order: number, t: number, current: number): number {
    const sigmas = this.sigmas;
    const basis = (tau: number) => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (k === current) continue;
        prod *= (tau - sigmas[t - k]) / (sigmas[t - current] - sigmas[t - k]);
      }
      return prod;
    };
    const mid = (sigmas[t] + sigmas[t + 1]) / 2;
    const halfWidth = (sigmas[t + 1] - sigmas[t]) / 2;
    const offset = halfWidth / Math.sqrt(3);
    return halfWidth * (basis(mid - offset) + basis(mid + offset));
  }
}
