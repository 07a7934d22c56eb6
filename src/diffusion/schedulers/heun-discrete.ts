// Heun's method (Karras et al. 2022, algorithm 1 with γ = 0) as diffusers 0.21.4's
// HeunDiscreteScheduler: every step but the last is an Euler step followed by a correction that
// averages the derivatives at both ends, so the UNet sees each inner timestep twice.
import { DiscreteSigmaScheduler } from './discrete-sigma-scheduler.ts';
import type { SigmaSchedulerConfig } from './discrete-sigma-scheduler.ts';
import { BETA_SCHEDULES, initStepIndex, PREDICTION_TYPES, resolveConfig, TIMESTEP_SPACINGS } from './scheduler.ts';

interface HeunDiscreteConfig extends SigmaSchedulerConfig {
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  clip_sample: boolean;
  clip_sample_range: number;
}

// HeunDiscreteScheduler.__init__ defaults of diffusers 0.21.4.
const DEFAULTS: HeunDiscreteConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  use_karras_sigmas: false,
  // later diffusers' key (see sigmaRamp)
  use_exponential_sigmas: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

/** The derivative and step size of a step's Euler half, which its second half corrects. */
interface FirstOrderHalf {
  derivative: Float32Array;
  dt: number;
  sample: Float32Array;
}

export class HeunDiscreteScheduler extends DiscreteSigmaScheduler<HeunDiscreteConfig> {
  override readonly order = 2;
  #firstOrderHalf: FirstOrderHalf | null = null;

  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig('HeunDiscreteScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    super(config, { ...config, interpolation_type: 'linear' });
  }

  /** One σ per entry of `timesteps`, plus the final 0: every level after the first twice, as the timesteps. */
  override setTimesteps(numInferenceSteps: number): void {
    const { timesteps, sigmas } = this.inferenceSigmas(numInferenceSteps);
    const inner = (values: number[]) => values.slice(1).flatMap((v) => [v, v]);
    this.useSchedule([timesteps[0], ...inner(timesteps)], [sigmas[0], ...inner(sigmas), 0]);
    this.#firstOrderHalf = null;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const index = this.currentIndex(timestep);
    const eulerHalf = this.#firstOrderHalf;
    // The correction evaluates the model at the end of the Euler step, sigmas[index].
    const sigma = eulerHalf ? this.sigmas[index - 1] : this.sigmas[index];
    const sigmaNext = eulerHalf ? this.sigmas[index] : this.sigmas[index + 1];
    const sigmaInput = eulerHalf ? sigmaNext : sigma;
    const predOriginal = this.#clipped(this.predictOriginalSample(modelOutput, sample, sigmaInput));
    let prevSample: Float32Array;
    if (!eulerHalf) {
      const derivative = sample.map((x, i) => (x - predOriginal[i]) / sigma);
      const dt = sigmaNext - sigma;
      this.#firstOrderHalf = { derivative, dt, sample };
      prevSample = sample.map((x, i) => x + derivative[i] * dt);
    } else {
      const { derivative: prevDerivative, dt, sample: startSample } = eulerHalf;
      prevSample = startSample.map(
        (x, i) => x + ((prevDerivative[i] + (sample[i] - predOriginal[i]) / sigmaNext) / 2) * dt,
      );
      this.#firstOrderHalf = null;
    }
    this.stepIndex = index + 1;
    return prevSample;
  }

  // Both occurrences of a repeated timestep carry the same noise level, so diffusers' occurrence
  // counting (index_for_timestep) cannot change the result.
  protected override noiseIndex(timestep: number): number {
    return initStepIndex(this.timesteps, timestep);
  }

  #clipped(predOriginal: Float32Array): Float32Array {
    if (!this.config.clip_sample) return predOriginal;
    const range = this.config.clip_sample_range;
    return predOriginal.map((x) => Math.min(Math.max(x, -range), range));
  }
}
