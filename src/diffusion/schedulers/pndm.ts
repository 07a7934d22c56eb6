// Pseudo numerical methods (Liu et al., arXiv:2202.09778): a few Runge-Kutta (PRK) steps to warm up,
// then linear multistep (PLMS) steps that reuse the last four noise predictions (`ets`). With
// skip_prk_steps, as Stable Diffusion runs it, the warm-up is crowsonkb's PLMS instead: the first
// step is redone with the average of two predictions, so the second timestep appears twice.
import {
  alphaProdAt,
  alphasCumprod,
  BETA_SCHEDULES,
  ddpmAddNoise,
  resolveConfig,
  roundHalfEven,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
} from './scheduler.ts';
import type { NoiseScheduleConfig, PredictionType, Scheduler, TimestepSpacing } from './scheduler.ts';

interface PNDMConfig extends Omit<NoiseScheduleConfig, 'rescale_betas_zero_snr'> {
  skip_prk_steps: boolean;
  set_alpha_to_one: boolean;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
}

// PNDMScheduler.__init__ defaults of diffusers 0.21.4.
const DEFAULTS: PNDMConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
};

const f32 = Math.fround;

export class PNDMScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly #config: PNDMConfig;
  readonly #cumprod: Float32Array;
  readonly #finalAlphaCumprod: number;
  #numInferenceSteps = 0;
  #prkTimesteps: number[] = [];
  #timesteps: number[] = [];
  /** UNet calls so far: selects the PRK/PLMS stage, as diffusers' `counter` does (not the timestep). */
  #counter = 0;
  /** Past noise predictions, newest last: one per PRK step, one per PLMS call. */
  #ets: Float32Array[] = [];
  /** The Runge-Kutta average being accumulated over a PRK step's four calls. */
  #curModelOutput: Float32Array | null = null;
  /** The sample at the start of the current PRK step, or of PLMS's first step. */
  #curSample: Float32Array | null = null;

  constructor(rawConfig: Record<string, unknown>) {
    this.#config = resolveConfig('PNDMScheduler', DEFAULTS, rawConfig, {
      beta_schedule: BETA_SCHEDULES,
      // diffusers' PNDM raises for "sample" at the first step.
      prediction_type: ['epsilon', 'v_prediction'],
      timestep_spacing: TIMESTEP_SPACINGS,
    });
    this.#cumprod = alphasCumprod({ ...this.#config, rescale_betas_zero_snr: false });
    this.#finalAlphaCumprod = this.#config.set_alpha_to_one ? 1 : this.#cumprod[0];
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps, timestep_spacing, steps_offset, skip_prk_steps } = this.#config;
    this.#numInferenceSteps = numInferenceSteps;
    const ascending = spacedTimesteps(timestep_spacing, num_train_timesteps, numInferenceSteps, steps_offset)
      .map(roundHalfEven)
      .reverse();
    if (skip_prk_steps) {
      this.#prkTimesteps = [];
      const plms = [...ascending.slice(0, -1), ...ascending.slice(-2, -1), ...ascending.slice(-1)];
      this.#timesteps = plms.reverse();
    } else {
      // diffusers' numpy broadcasting fails below four steps.
      if (numInferenceSteps < 4) throw new RangeError('PNDMScheduler: the PRK warm-up needs at least 4 steps');
      // Each of the last four timesteps and its midpoint towards the next, every inner point twice.
      const half = Math.floor(Math.floor(num_train_timesteps / numInferenceSteps) / 2);
      const points = ascending.slice(-4).flatMap((t) => [t, t + half]);
      const prk = points
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse();
      this.#prkTimesteps = prk;
      this.#timesteps = [...prk, ...ascending.slice(0, -3).reverse()];
    }
    this.#counter = 0;
    this.#ets = [];
    this.#curModelOutput = null;
    this.#curSample = null;
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    if (this.#numInferenceSteps === 0) throw new Error('PNDMScheduler: call setTimesteps before step');
    const prevSample =
      this.#counter < this.#prkTimesteps.length && !this.#config.skip_prk_steps
        ? this.#stepPrk(modelOutput, timestep, sample)
        : this.#stepPlms(modelOutput, timestep, sample);
    this.#counter++;
    return prevSample;
  }

  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return ddpmAddNoise(this.#cumprod, originalSamples, noise, timestep);
  }

  /** One of the four calls of a classic Runge-Kutta step, weights 1/6, 1/3, 1/3, 1/6. */
  #stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const counter = this.#counter;
    const diffToPrev =
      counter % 2 ? 0 : Math.floor(Math.floor(this.#config.num_train_timesteps / this.#numInferenceSteps) / 2);
    const prevTimestep = timestep - diffToPrev;
    const stepStart = this.#prkTimesteps[Math.floor(counter / 4) * 4];
    let output = modelOutput;
    switch (counter % 4) {
      case 0:
        this.#curModelOutput = combine([modelOutput], [1 / 6]);
        this.#ets.push(modelOutput);
        this.#curSample = sample;
        break;
      case 1:
      case 2:
        this.#curModelOutput = combine([this.#curModelOutput!, modelOutput], [1, 1 / 3]);
        break;
      case 3:
        output = combine([this.#curModelOutput!, modelOutput], [1, 1 / 6]);
        this.#curModelOutput = null;
        break;
    }
    return this.#prevSample(this.#curSample ?? sample, stepStart, prevTimestep, output);
  }

  /** Adams–Bashforth over the stored predictions, of the order the history allows. */
  #stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    if (!this.#config.skip_prk_steps && this.#ets.length < 3) {
      throw new Error('PNDMScheduler: PLMS steps need the three predictions of the PRK warm-up first');
    }
    const stepRatio = Math.floor(this.#config.num_train_timesteps / this.#numInferenceSteps);
    let prevTimestep = timestep - stepRatio;
    if (this.#counter !== 1) {
      this.#ets = [...this.#ets.slice(-3), modelOutput];
    } else {
      // The repeated timestep: redo the first step, from its start, with the averaged prediction.
      prevTimestep = timestep;
      timestep += stepRatio;
    }
    const ets = this.#ets;
    const n = ets.length;
    let output: Float32Array;
    if (n === 1 && this.#counter === 0) {
      output = modelOutput;
      this.#curSample = sample;
    } else if (n === 1 && this.#counter === 1) {
      output = combine([modelOutput, ets[0]], [1 / 2, 1 / 2]);
      sample = this.#curSample!;
      this.#curSample = null;
    } else if (n === 2) {
      output = combine([ets[1], ets[0]], [3 / 2, -1 / 2]);
    } else if (n === 3) {
      output = combine([ets[2], ets[1], ets[0]], [23 / 12, -16 / 12, 5 / 12]);
    } else {
      output = combine([ets[n - 1], ets[n - 2], ets[n - 3], ets[n - 4]], [55 / 24, -59 / 24, 37 / 24, -9 / 24]);
    }
    return this.#prevSample(sample, timestep, prevTimestep, output);
  }

  /** Formula (9) of the PNDM paper: the DDIM step from `timestep` to `prevTimestep`. */
  #prevSample(sample: Float32Array, timestep: number, prevTimestep: number, modelOutput: Float32Array): Float32Array {
    const alphaProdT = this.#alphaProd(timestep);
    const alphaProdTPrev = prevTimestep >= 0 ? this.#alphaProd(prevTimestep) : this.#finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdTPrev = f32(1 - alphaProdTPrev);
    const sqrtAlphaProdT = f32(Math.sqrt(alphaProdT));
    const sqrtBetaProdT = f32(Math.sqrt(betaProdT));
    const sampleCoeff = f32(Math.sqrt(f32(alphaProdTPrev / alphaProdT)));
    const modelOutputDenomCoeff = f32(
      f32(alphaProdT * f32(Math.sqrt(betaProdTPrev))) + f32(Math.sqrt(f32(f32(alphaProdT * betaProdT) * alphaProdTPrev))),
    );
    const alphaDiff = f32(alphaProdTPrev - alphaProdT);
    const v = this.#config.prediction_type === 'v_prediction';
    return sample.map((x, i) => {
      // v-prediction becomes the noise prediction ε = √ᾱ·v + √(1−ᾱ)·x first.
      const epsilon = v ? f32(sqrtAlphaProdT * modelOutput[i] + sqrtBetaProdT * x) : modelOutput[i];
      return sampleCoeff * x - f32(alphaDiff * epsilon) / modelOutputDenomCoeff;
    });
  }

  #alphaProd(timestep: number): number {
    return alphaProdAt('PNDMScheduler', this.#cumprod, timestep);
  }
}

/** Σ weights[k]·tensors[k], elementwise, into a new float32 tensor. */
function combine(tensors: Float32Array[], weights: number[]): Float32Array {
  const out = new Float32Array(tensors[0].length);
  for (let i = 0; i < out.length; i++) {
    let sum = 0;
    for (let k = 0; k < tensors.length; k++) sum += weights[k] * tensors[k][i];
    out[i] = sum;
  }
  return out;
}
