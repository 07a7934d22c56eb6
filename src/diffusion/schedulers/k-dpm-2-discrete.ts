// DPM-Solver-2 in k-diffusion's form, as diffusers 0.21.4's KDPM2DiscreteScheduler: each step
// takes an Euler half step to the geometric mean of its two noise levels, then the full step with
// the derivative the model gives there. The UNet therefore also sees fractional timesteps.
import { DiscreteSigmaScheduler, PLAIN_SCHEDULE } from './discrete-sigma-scheduler.ts';
import type { SigmaSchedulerConfig } from './discrete-sigma-scheduler.ts';
import { BETA_SCHEDULES, initStepIndex, resolveConfig, TIMESTEP_SPACINGS } from './scheduler.ts';

// KDPM2DiscreteScheduler.__init__ defaults of diffusers 0.21.4.
const DEFAULTS: SigmaSchedulerConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

export class KDPM2DiscreteScheduler extends DiscreteSigmaScheduler {
  override readonly order = 2;
  /** The midpoint noise levels, indexed like `sigmas` (diffusers' interleaving), with trailing zeros. */
  sigmasInterpol = new Float32Array(0);
  /** The sample a step started from, kept while its midpoint is evaluated. */
  #startSample: Float32Array | null = null;

  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig('KDPM2DiscreteScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      // diffusers 0.21.4 raises NotImplementedError for "sample" at the first step
      prediction_type: ['epsilon', 'v_prediction'],
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    super(config, PLAIN_SCHEDULE);
  }

  override setTimesteps(numInferenceSteps: number): void {
    const { timesteps, sigmas: levels } = this.inferenceSigmas(numInferenceSteps);
    const sigmas = Float32Array.from([...levels, 0]);
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
    this.sigmasInterpol = Float32Array.from(interleave(sigmasInterpol));
    const timestepsInterpol = Array.from(sigmasInterpol.subarray(1, -1), (s) => Math.fround(this.timestepOf(s)));
    this.useSchedule([timesteps[0], ...timestepsInterpol.flatMap((t, i) => [t, timesteps[i + 1]])], interleave(sigmas));
    this.#startSample = null;
  }

  override scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const index = this.currentIndex(timestep);
    return this.scaleToUnitVariance(sample, this.#startSample ? this.sigmasInterpol[index] : this.sigmas[index]);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const index = this.currentIndex(timestep);
    const startSample = this.#startSample;
    // At the midpoint (second call) the step index has moved one past the step's start.
    const sigma = startSample ? this.sigmas[index - 1] : this.sigmas[index];
    const sigmaInterpol = startSample ? this.sigmasInterpol[index] : this.sigmasInterpol[index + 1];
    const sigmaNext = startSample ? this.sigmas[index] : this.sigmas[index + 1];
    const sigmaInput = startSample ? sigmaInterpol : sigma;
    const predOriginal = this.predictOriginalSample(modelOutput, sample, sigmaInput);
    let prevSample: Float32Array;
    if (!startSample) {
      const dt = sigmaInterpol - sigma;
      prevSample = sample.map((x, i) => x + ((x - predOriginal[i]) / sigma) * dt);
      this.#startSample = sample;
    } else {
      const dt = sigmaNext - sigma;
      prevSample = startSample.map((x, i) => x + ((sample[i] - predOriginal[i]) / sigmaInterpol) * dt);
      this.#startSample = null;
    }
    this.stepIndex = index + 1;
    return prevSample;
  }

  protected override noiseIndex(timestep: number): number {
    return initStepIndex(this.timesteps, timestep);
  }
}
