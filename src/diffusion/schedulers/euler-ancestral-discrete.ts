// Euler ancestral sampling (k-diffusion's sample_euler_ancestral): an Euler step down to σ_down,
// then fresh noise of σ_up, so that σ_down² + σ_up² = σ_next² (η = 1).
import { DiscreteSigmaScheduler, PLAIN_SCHEDULE } from './discrete-sigma-scheduler.ts';
import type { SigmaSchedulerConfig } from './discrete-sigma-scheduler.ts';
import { BETA_SCHEDULES, resolveConfig, TIMESTEP_SPACINGS } from './scheduler.ts';
import type { NoiseSource } from './scheduler.ts';

// EulerAncestralDiscreteScheduler.__init__ defaults of diffusers 0.21.4.
const DEFAULTS: SigmaSchedulerConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

const f32 = Math.fround;

export class EulerAncestralDiscreteScheduler extends DiscreteSigmaScheduler {
  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig('EulerAncestralDiscreteScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      // diffusers 0.21.4 raises NotImplementedError for "sample" at the first step.
      prediction_type: ['epsilon', 'v_prediction'],
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    super(config, PLAIN_SCHEDULE);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index];
    const predOriginalSample = this.predictOriginalSample(modelOutput, sample, sigma);
    const sigmaFromSquared = f32(sigma * sigma);
    const sigmaTo = this.sigmas[index + 1];
    const sigmaToSquared = f32(sigmaTo * sigmaTo);
    const sigmaUp = f32(Math.sqrt(f32(f32(sigmaToSquared * f32(sigmaFromSquared - sigmaToSquared)) / sigmaFromSquared)));
    const sigmaDown = f32(Math.sqrt(f32(sigmaToSquared - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigma);
    const prevSample = sample.map((x, i) => x + f32((x - predOriginalSample[i]) / sigma) * dt);
    const z = noise();
    this.stepIndex = index + 1;
    return prevSample.map((x, i) => x + f32(z[i] * sigmaUp));
  }
}
