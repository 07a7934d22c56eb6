// Euler's method on the probability-flow ODE in k-diffusion's parameterisation x = x₀ + σ·ε
// (Karras et al., arXiv:2206.00364, algorithm 2 without churn).
import { DiscreteSigmaScheduler } from './discrete-sigma-scheduler.ts';
import type { SigmaScheduleOptions, SigmaSchedulerConfig } from './discrete-sigma-scheduler.ts';
import { BETA_SCHEDULES, PREDICTION_TYPES, resolveConfig, TIMESTEP_SPACINGS } from './scheduler.ts';
import type { NoiseSource } from './scheduler.ts';

const f32 = Math.fround;

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
  // later diffusers' key (see sigmaRamp)
  use_exponential_sigmas: false,
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
