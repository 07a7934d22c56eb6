// UniPC (arXiv:2302.04867) as diffusers 0.21.4's UniPCMultistepScheduler: a multistep predictor
// (UniP) and, from the second step on, a corrector (UniC) that refines the previous step's result
// with the model output just computed at it, at no extra model call.
import { convertVpModelOutput, multistepIndex, multistepTimesteps, vpSchedule } from './dpmsolver-multistep.ts';
import type { VpSchedule } from './dpmsolver-multistep.ts';
import {
  alphasCumprod,
  BETA_SCHEDULES,
  ddpmAddNoise,
  PREDICTION_TYPES,
  resolveConfig,
  SchedulerConfigError,
  TIMESTEP_SPACINGS,
} from './scheduler.ts';
import type { BetaSchedule, PredictionType, Scheduler, TimestepSpacing } from './scheduler.ts';

const DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear' as BetaSchedule,
  trained_betas: null as number[] | null,
  solver_order: 2,
  prediction_type: 'epsilon' as PredictionType,
  thresholding: false,
  predict_x0: true,
  solver_type: 'bh2' as 'bh1' | 'bh2' | 'midpoint' | 'heun' | 'logrho',
  lower_order_final: true,
  disable_corrector: [] as number[] | null,
  use_karras_sigmas: false,
  // later diffusers' key (see sigmaRamp)
  use_exponential_sigmas: false,
  timestep_spacing: 'linspace' as TimestepSpacing,
  steps_offset: 0,
};

const NAME = 'UniPCMultistepScheduler';
const f32 = Math.fround;

/** Solves the small dense system a·x = b (Gaussian elimination with partial pivoting, as LU does). */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row.slice(0, n), b[i]]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r][col]) > Math.abs(m[pivot][col])) pivot = r;
    [m[col], m[pivot]] = [m[pivot], m[col]];
    for (let r = col + 1; r < n; r++) {
      const factor = m[r][col] / m[col][col];
      for (let c = col; c <= n; c++) m[r][c] -= factor * m[col][c];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let sum = m[r][n];
    for (let c = r + 1; c < n; c++) sum -= m[r][c] * x[c];
    x[r] = sum / m[r][r];
  }
  return x;
}

export class UniPCMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: number[] = [];
  private readonly config: typeof DEFAULTS & { solver_type: 'bh1' | 'bh2' };
  private readonly cumprod: Float32Array;
  private readonly schedule: VpSchedule;
  private readonly disableCorrector: ReadonlySet<number>;
  /** The converted model outputs of the last `solver_order` steps and their timesteps, oldest first. */
  private modelOutputs: Float32Array[] = [];
  private timestepList: number[] = [];
  private lowerOrderNums = 0;
  /** The predictor's order at the previous step, which its correction reuses. */
  private thisOrder = 0;
  /** The sample the previous step started from (null until a step has been taken). */
  private lastSample: Float32Array | null = null;

  constructor(rawConfig: Record<string, unknown>) {
    const config = resolveConfig(NAME, DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      prediction_type: PREDICTION_TYPES,
      solver_type: ['bh1', 'bh2', 'midpoint', 'heun', 'logrho'],
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    if (!Number.isInteger(config.solver_order) || config.solver_order < 1) {
      throw new SchedulerConfigError(`${NAME}: solver_order must be a positive integer, got ${config.solver_order}`);
    }
    if (config.thresholding) {
      throw new SchedulerConfigError(`${NAME}: thresholding (dynamic thresholding, for pixel-space models) is not supported`);
    }
    // diffusers maps DPM-Solver's solver types onto bh2
    const solverType = config.solver_type === 'bh1' ? 'bh1' : 'bh2';
    this.config = { ...config, solver_type: solverType };
    this.disableCorrector = new Set(config.disable_corrector ?? []);
    this.cumprod = alphasCumprod({ ...config, rescale_betas_zero_snr: false });
    this.schedule = vpSchedule(this.cumprod);
  }

  setTimesteps(numInferenceSteps: number): void {
    this.timesteps = multistepTimesteps(NAME, this.config, this.cumprod, numInferenceSteps, this.config.num_train_timesteps);
    this.modelOutputs = [];
    this.timestepList = [];
    this.lowerOrderNums = 0;
    this.lastSample = null;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample.slice();
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const { timesteps, config } = this;
    if (timesteps.length === 0) throw new Error(`${NAME}: setTimesteps must be called before step`);
    const stepIndex = multistepIndex(timesteps, timestep);
    const converted = this.convertModelOutput(modelOutput, timestep, sample);
    // An img2img start has no previous step to correct.
    const useCorrector = stepIndex > 0 && !this.disableCorrector.has(stepIndex - 1) && this.lastSample !== null;
    const corrected = useCorrector
      ? this.correct(converted, timestep, this.lastSample!, sample, this.thisOrder)
      : sample;

    const prevTimestep = stepIndex === timesteps.length - 1 ? 0 : timesteps[stepIndex + 1];
    this.modelOutputs.push(converted);
    this.timestepList.push(timestep);
    if (this.modelOutputs.length > config.solver_order) {
      this.modelOutputs.shift();
      this.timestepList.shift();
    }
    // Unlike DPM-Solver's, this lowers the order at the end of schedules of any length.
    const order = config.lower_order_final
      ? Math.min(config.solver_order, timesteps.length - stepIndex)
      : config.solver_order;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1);
    this.lastSample = corrected;
    const prevSample = this.predict(prevTimestep, corrected, this.thisOrder);
    this.lowerOrderNums = Math.min(this.lowerOrderNums + 1, config.solver_order);
    return prevSample;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return ddpmAddNoise(this.cumprod, originalSamples, noise, timestep);
  }

  /** With predict_x0 the solver integrates the data prediction, otherwise the noise prediction. */
  private convertModelOutput(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const target = this.config.predict_x0 ? 'data' : 'noise';
    return convertVpModelOutput(this.schedule, this.config.prediction_type, target, modelOutput, timestep, sample);
  }

  /**
   * What UniP and UniC share for a step from the newest stored timestep s0 to t with `order`
   * stored outputs: the step's scalars, the ratios rk of the older outputs' lambda offsets to h
   * (with a final 1), and the B(h) system R·rho = b whose solution weighs the differences D1.
   */
  private bhTerms(t: number, order: number) {
    const { alphaT, sigmaT, lambdaT } = this.schedule;
    const last = this.timestepList.length - 1;
    const s0 = this.timestepList[last];
    const h = f32(lambdaT[t] - lambdaT[s0]);
    const rks: number[] = [];
    for (let i = 1; i < order; i++) rks.push(f32((lambdaT[this.timestepList[last - i]] - lambdaT[s0]) / h));
    rks.push(1);
    const hh = this.config.predict_x0 ? -h : h;
    const hPhi1 = Math.expm1(hh);
    const bh = this.config.solver_type === 'bh1' ? hh : Math.expm1(hh);
    const r: number[][] = [];
    const b: number[] = [];
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    for (let i = 1; i <= order; i++) {
      r.push(rks.map((rk) => rk ** (i - 1)));
      b.push((hPhiK * factorial) / bh);
      factorial *= i + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    return {
      alphaT: alphaT[t],
      sigmaT: sigmaT[t],
      alphaS0: alphaT[s0],
      sigmaS0: sigmaT[s0],
      hPhi1,
      bh,
      rks,
      r,
      b,
    };
  }

  /** x_t without the higher-order terms, and the factor of those terms (first-order UniP is exactly this). */
  private baseUpdate(terms: ReturnType<UniPCMultistepScheduler['bhTerms']>) {
    const { alphaT, sigmaT, alphaS0, sigmaS0, hPhi1, bh } = terms;
    return this.config.predict_x0
      ? { sampleCoef: sigmaT / sigmaS0, m0Coef: -alphaT * hPhi1, resCoef: -alphaT * bh }
      : { sampleCoef: alphaT / alphaS0, m0Coef: -sigmaT * hPhi1, resCoef: -sigmaT * bh };
  }

  /** Σ rho_k·D1_k at element i, with D1_k = (m_k − m0) / r_k over the older stored outputs. */
  private weightedDifferences(rhos: readonly number[], rks: readonly number[], i: number): number {
    const outputs = this.modelOutputs;
    const last = outputs.length - 1;
    const m0 = outputs[last][i];
    let sum = 0;
    for (let k = 0; k < rhos.length; k++) sum += rhos[k] * ((outputs[last - 1 - k][i] - m0) / rks[k]);
    return sum;
  }

  /** UniP: the sample at prevTimestep. */
  private predict(prevTimestep: number, sample: Float32Array, order: number): Float32Array {
    const terms = this.bhTerms(prevTimestep, order);
    const { sampleCoef, m0Coef, resCoef } = this.baseUpdate(terms);
    // order 2 uses the simplified rho = 1/2
    const rhos = order === 1 ? [] : order === 2 ? [0.5] : solve(terms.r.slice(0, -1), terms.b.slice(0, -1));
    const m0 = this.modelOutputs[this.modelOutputs.length - 1];
    return sample.map(
      (x, i) => sampleCoef * x + m0Coef * m0[i] + resCoef * this.weightedDifferences(rhos, terms.rks, i),
    );
  }

  /** UniC: corrects `thisSample` (the last prediction, at `thisTimestep`) with the model output there. */
  private correct(
    thisModelOutput: Float32Array,
    thisTimestep: number,
    lastSample: Float32Array,
    thisSample: Float32Array,
    order: number,
  ): Float32Array {
    const terms = this.bhTerms(thisTimestep, order);
    const { sampleCoef, m0Coef, resCoef } = this.baseUpdate(terms);
    // order 1 uses the simplified rho = 1/2
    const rhos = order === 1 ? [0.5] : solve(terms.r, terms.b);
    const olderRhos = rhos.slice(0, -1);
    const rhoT = rhos[rhos.length - 1];
    const m0 = this.modelOutputs[this.modelOutputs.length - 1];
    return thisSample.map((_, i) => {
      const correction = this.weightedDifferences(olderRhos, terms.rks, i) + rhoT * (thisModelOutput[i] - m0[i]);
      return sampleCoef * lastSample[i] + m0Coef * m0[i] + resCoef * correction;
    });
  }
}
