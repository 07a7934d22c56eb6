// The multistep DPM-Solver (arXiv:2206.00927) and DPM-Solver++ (arXiv:2211.01095), deterministic
// and SDE variants, as diffusers 0.21.4's DPMSolverMultistepScheduler. It steps between integer
// training timesteps using alpha_t, sigma_t and lambda_t = log(alpha_t / sigma_t); with Karras
// sigmas only the choice of timesteps changes.
import {
  alphasCumprod,
  arange,
  BETA_SCHEDULES,
  ddpmAddNoise,
  PREDICTION_TYPES,
  resolveConfig,
  roundHalfEven,
  SchedulerConfigError,
  sigmaRamp,
  sigmaToT,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  trainingSigmas,
} from './scheduler.ts';
import type { BetaSchedule, NoiseSource, PredictionType, Scheduler, SigmaRampConfig, TimestepSpacing } from './scheduler.ts';

type AlgorithmType = 'dpmsolver' | 'dpmsolver++' | 'sde-dpmsolver' | 'sde-dpmsolver++';

const DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear' as BetaSchedule,
  trained_betas: null as number[] | null,
  solver_order: 2,
  prediction_type: 'epsilon' as PredictionType,
  thresholding: false,
  algorithm_type: 'dpmsolver++' as AlgorithmType | 'deis',
  solver_type: 'midpoint' as 'midpoint' | 'heun' | 'logrho' | 'bh1' | 'bh2',
  lower_order_final: true,
  use_karras_sigmas: false,
  // later diffusers' key (see sigmaRamp)
  use_exponential_sigmas: false,
  lambda_min_clipped: -Infinity,
  timestep_spacing: 'linspace' as TimestepSpacing,
  steps_offset: 0,
};

const NAME = 'DPMSolverMultistepScheduler';
const f32 = Math.fround;

/** alpha_t, sigma_t and lambda_t of the variance-preserving training schedule, in float32 as torch computes them. */
export interface VpSchedule {
  alphaT: Float32Array;
  sigmaT: Float32Array;
  lambdaT: Float32Array;
}

export function vpSchedule(cumprod: Float32Array): VpSchedule {
  const alphaT = cumprod.map(Math.sqrt);
  const sigmaT = cumprod.map((a) => Math.sqrt(f32(1 - a)));
  const lambdaT = alphaT.map((a, i) => f32(Math.log(a)) - f32(Math.log(sigmaT[i])));
  return { alphaT, sigmaT, lambdaT };
}

/**
 * A model output at timestep t, where x_t = alpha_t·x0 + sigma_t·eps, as the data prediction x0
 * or the noise prediction eps that a multistep solver integrates.
 */
export function convertVpModelOutput(
  schedule: VpSchedule,
  prediction: PredictionType,
  target: 'data' | 'noise',
  modelOutput: Float32Array,
  timestep: number,
  sample: Float32Array,
): Float32Array {
  const alpha = schedule.alphaT[timestep];
  const sigma = schedule.sigmaT[timestep];
  if (target === 'data') {
    if (prediction === 'epsilon') return sample.map((x, i) => (x - sigma * modelOutput[i]) / alpha);
    if (prediction === 'v_prediction') return sample.map((x, i) => alpha * x - sigma * modelOutput[i]);
    return modelOutput;
  }
  if (prediction === 'epsilon') return modelOutput;
  if (prediction === 'v_prediction') return sample.map((x, i) => alpha * modelOutput[i] + sigma * x);
  return sample.map((x, i) => (x - alpha * modelOutput[i]) / sigma);
}

/**
 * The integer timesteps of diffusers' multistep solvers (DPM-Solver, UniPC), highest first and
 * without repeats. Unlike the k-samplers they space n + 1 points and drop the last (0), so
 * "leading" starts lower; `lastTimestep` is where lambda_min_clipped cuts the schedule off.
 */
export function multistepTimesteps(
  className: string,
  config: SigmaRampConfig & {
    num_train_timesteps: number;
    timestep_spacing: TimestepSpacing;
    steps_offset: number;
  },
  cumprod: Float32Array,
  numInferenceSteps: number,
  lastTimestep: number,
): number[] {
  let timesteps: number[];
  const ramp = sigmaRamp(className, config);
  if (ramp) {
    // The ramp spans the whole training range, whatever the spacing. Fed the training sigmas lowest
    // first, diffusers' Karras ramp ascends: hence the reverse.
    const sigmas = trainingSigmas(cumprod);
    const logSigmas = sigmas.map(Math.log);
    timesteps = ramp(sigmas, numInferenceSteps)
      .map((sigma) => roundHalfEven(sigmaToT(sigma, logSigmas)))
      .reverse();
  } else if (config.timestep_spacing === 'trailing') {
    // the stride spans all training timesteps even when lambda_min_clipped shortens the range
    const stride = config.num_train_timesteps / numInferenceSteps;
    timesteps = arange(lastTimestep, 0, -stride).map((t) => roundHalfEven(t) - 1);
  } else {
    timesteps = spacedTimesteps(config.timestep_spacing, lastTimestep, numInferenceSteps + 1, config.steps_offset)
      .slice(0, numInferenceSteps)
      .map(roundHalfEven);
  }
  // np.unique's first occurrences, kept in schedule order: many Karras steps can round to one timestep
  return [...new Set(timesteps)];
}

/** Finds a timestep's place in the schedule as diffusers' multistep solvers do: an unknown one counts as the last. */
export function multistepIndex(timesteps: readonly number[], timestep: number): number {
  const index = timesteps.indexOf(timestep);
  return index < 0 ? timesteps.length - 1 : index;
}

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: number[] = [];
  private readonly config: typeof DEFAULTS & { algorithm_type: AlgorithmType; solver_type: 'midpoint' | 'heun' };
  private readonly cumprod: Float32Array;
  private readonly schedule: VpSchedule;
  /** The converted outputs of the last `solver_order` steps, oldest first. */
  private modelOutputs: Float32Array[] = [];
  private lowerOrderNums = 0;

  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig(NAME, DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      algorithm_type: ['dpmsolver', 'dpmsolver++', 'sde-dpmsolver', 'sde-dpmsolver++', 'deis'],
      solver_type: ['midpoint', 'heun', 'logrho', 'bh1', 'bh2'],
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    if (!Number.isInteger(config.solver_order) || config.solver_order < 1) {
      throw new SchedulerConfigError(`${NAME}: solver_order must be a positive integer, got ${config.solver_order}`);
    }
    if (config.thresholding) {
      throw new SchedulerConfigError(`${NAME}: thresholding (dynamic thresholding, for pixel-space models) is not supported`);
    }
    if (rawConfig.variance_type === 'learned' || rawConfig.variance_type === 'learned_range') {
      throw new SchedulerConfigError(`${NAME}: models that predict their variance (variance_type learned) are not supported`);
    }
    // diffusers maps the solvers of other schedulers' configs onto its own
    const algorithmType = config.algorithm_type === 'deis' ? 'dpmsolver++' : config.algorithm_type;
    const solverType = config.solver_type === 'heun' ? 'heun' : 'midpoint';
    if (algorithmType.startsWith('sde-') && config.solver_order > 2) {
      // diffusers 0.21.4 has no third-order SDE update and fails at the third step
      throw new SchedulerConfigError(`${NAME}: ${algorithmType} supports solver_order 1 or 2, got ${config.solver_order}`);
    }
    this.config = { ...config, algorithm_type: algorithmType, solver_type: solverType };
    this.cumprod = alphasCumprod({ ...config, rescale_betas_zero_snr: false });
    this.schedule = vpSchedule(this.cumprod);
  }

  setTimesteps(numInferenceSteps: number): void {
    // lambda falls with t: the timesteps whose lambda is below lambda_min_clipped are left out
    const clipped = this.schedule.lambdaT.filter((lambda) => lambda < this.config.lambda_min_clipped).length;
    const lastTimestep = this.config.num_train_timesteps - clipped;
    this.timesteps = multistepTimesteps(NAME, this.config, this.cumprod, numInferenceSteps, lastTimestep);
    this.modelOutputs = [];
    this.lowerOrderNums = 0;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample.slice();
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    const { timesteps, config } = this;
    if (timesteps.length === 0) throw new Error(`${NAME}: setTimesteps must be called before step`);
    const stepIndex = multistepIndex(timesteps, timestep);
    const last = timesteps.length - 1;
    const prevTimestep = stepIndex === last ? 0 : timesteps[stepIndex + 1];
    // 0.21.4 lowers the order of the final steps only for short schedules
    const lowerOrderFinal = config.lower_order_final && timesteps.length < 15;

    this.modelOutputs.push(this.convertModelOutput(modelOutput, timestep, sample));
    if (this.modelOutputs.length > config.solver_order) this.modelOutputs.shift();
    const stepNoise = config.algorithm_type.startsWith('sde-') ? noise() : null;

    let prevSample: Float32Array;
    if (config.solver_order === 1 || this.lowerOrderNums < 1 || (lowerOrderFinal && stepIndex === last)) {
      prevSample = this.firstOrderUpdate(timestep, prevTimestep, sample, stepNoise);
    } else if (config.solver_order === 2 || this.lowerOrderNums < 2 || (lowerOrderFinal && stepIndex === last - 1)) {
      prevSample = this.secondOrderUpdate([timesteps.at(stepIndex - 1)!, timestep], prevTimestep, sample, stepNoise);
    } else {
      const timestepList = [timesteps.at(stepIndex - 2)!, timesteps.at(stepIndex - 1)!, timestep];
      prevSample = this.thirdOrderUpdate(timestepList, prevTimestep, sample);
    }
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, config.solver_order);
    return prevSample;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return ddpmAddNoise(this.cumprod, originalSamples, noise, timestep);
  }

  /** DPM-Solver++ integrates the data prediction x0, DPM-Solver the noise prediction. */
  private convertModelOutput(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const { prediction_type, algorithm_type } = this.config;
    const target = algorithm_type.endsWith('++') ? 'data' : 'noise';
    return convertVpModelOutput(this.schedule, prediction_type, target, modelOutput, timestep, sample);
  }

  /**
   * The factors of x_t = sampleCoef·x + d0Coef·D0 (+ D1, D2 terms) + noiseCoef·z for a step from
   * timestep s to t that every order shares: the first-order update is exactly this, with D0 the
   * newest model output. midpointD1Coef is the factor of D1 in the second-order midpoint rule;
   * h is the step in lambda.
   */
  private baseCoefficients(s: number, t: number) {
    const { alphaT, sigmaT, lambdaT } = this.schedule;
    const [alpha, sigma, alphaS, sigmaS] = [alphaT[t], sigmaT[t], alphaT[s], sigmaT[s]];
    const h = f32(lambdaT[t] - lambdaT[s]);
    switch (this.config.algorithm_type) {
      case 'dpmsolver++': {
        const phi = alpha * (Math.exp(-h) - 1);
        return { h, alpha, sigma, sampleCoef: sigma / sigmaS, d0Coef: -phi, midpointD1Coef: -0.5 * phi, noiseCoef: 0 };
      }
      case 'dpmsolver': {
        const phi = sigma * (Math.exp(h) - 1);
        return { h, alpha, sigma, sampleCoef: alpha / alphaS, d0Coef: -phi, midpointD1Coef: -0.5 * phi, noiseCoef: 0 };
      }
      case 'sde-dpmsolver++': {
        const phi = alpha * (1 - Math.exp(-2 * h));
        const noiseCoef = sigma * Math.sqrt(1 - Math.exp(-2 * h));
        const sampleCoef = (sigma / sigmaS) * Math.exp(-h);
        return { h, alpha, sigma, sampleCoef, d0Coef: phi, midpointD1Coef: 0.5 * phi, noiseCoef };
      }
      case 'sde-dpmsolver': {
        const phi = sigma * (Math.exp(h) - 1);
        const noiseCoef = sigma * Math.sqrt(Math.exp(2 * h) - 1);
        return { h, alpha, sigma, sampleCoef: alpha / alphaS, d0Coef: -2 * phi, midpointD1Coef: -phi, noiseCoef };
      }
    }
  }

  /** The factor of D1 in the Heun rule, which the third-order update also uses. */
  private heunD1Coef(h: number, alpha: number, sigma: number): number {
    switch (this.config.algorithm_type) {
      case 'dpmsolver++':
        return alpha * ((Math.exp(-h) - 1) / h + 1);
      case 'dpmsolver':
        return -sigma * ((Math.exp(h) - 1) / h - 1);
      case 'sde-dpmsolver++':
        return alpha * ((1 - Math.exp(-2 * h)) / (-2 * h) + 1);
      case 'sde-dpmsolver':
        return -2 * sigma * ((Math.exp(h) - 1) / h - 1);
    }
  }

  private firstOrderUpdate(timestep: number, prevTimestep: number, sample: Float32Array, noise: Float32Array | null) {
    const m0 = this.modelOutputs[this.modelOutputs.length - 1];
    const { sampleCoef, d0Coef, noiseCoef } = this.baseCoefficients(timestep, prevTimestep);
    return sample.map((x, i) => sampleCoef * x + d0Coef * m0[i] + (noise ? noiseCoef * noise[i] : 0));
  }

  private secondOrderUpdate(timestepList: number[], prevTimestep: number, sample: Float32Array, noise: Float32Array | null) {
    const [m1, m0] = this.modelOutputs.slice(-2);
    const [s1, s0] = timestepList;
    const { lambdaT } = this.schedule;
    const coefs = this.baseCoefficients(s0, prevTimestep);
    const { h, sampleCoef, d0Coef, noiseCoef } = coefs;
    const r0 = (lambdaT[s0] - lambdaT[s1]) / h;
    const d1Coef =
      this.config.solver_type === 'midpoint' ? coefs.midpointD1Coef : this.heunD1Coef(h, coefs.alpha, coefs.sigma);
    return sample.map((x, i) => {
      const d1 = (1 / r0) * (m0[i] - m1[i]);
      return sampleCoef * x + d0Coef * m0[i] + d1Coef * d1 + (noise ? noiseCoef * noise[i] : 0);
    });
  }

  private thirdOrderUpdate(timestepList: number[], prevTimestep: number, sample: Float32Array) {
    const [m2, m1, m0] = this.modelOutputs.slice(-3);
    const [s2, s1, s0] = timestepList;
    const { lambdaT } = this.schedule;
    const { h, alpha, sigma, sampleCoef, d0Coef } = this.baseCoefficients(s0, prevTimestep);
    const r0 = (lambdaT[s0] - lambdaT[s1]) / h;
    const r1 = (lambdaT[s1] - lambdaT[s2]) / h;
    const d1Coef = this.heunD1Coef(h, alpha, sigma);
    const d2Coef =
      this.config.algorithm_type === 'dpmsolver++'
        ? -alpha * ((Math.exp(-h) - 1 + h) / h ** 2 - 0.5)
        : -sigma * ((Math.exp(h) - 1 - h) / h ** 2 - 0.5);
    return sample.map((x, i) => {
      const d10 = (1 / r0) * (m0[i] - m1[i]);
      const d11 = (1 / r1) * (m1[i] - m2[i]);
      const d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
      const d2 = (1 / (r0 + r1)) * (d10 - d11);
      return sampleCoef * x + d0Coef * m0[i] + d1Coef * d1 + d2Coef * d2;
    });
  }
}
