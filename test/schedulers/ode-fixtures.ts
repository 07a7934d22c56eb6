// Problems with known answers for the solver tests. A "model" whose prediction of the clean
// sample is D makes every sampler integrate the probability-flow ODE; with D constant each step is
// exact, and with D varying smoothly the exact solution has a closed form, so the error of a
// solver — and how fast it falls with more steps, its order — can be measured.
import { alphasCumprod } from '../../src/diffusion/schedulers/scheduler.ts';
import type { NoiseSource, PredictionType, Scheduler } from '../../src/diffusion/schedulers/scheduler.ts';
import { SD15_SCHEDULER_CONFIG as SD15 } from '../../src/diffusion/fixtures/index.ts';

/** The SD 1.5 scheduler_config.json (as the reference tiny-sd ships it). */
export { SD15 };

export const SD15_ALPHAS_CUMPROD = alphasCumprod({ ...SD15, beta_schedule: 'scaled_linear', rescale_betas_zero_snr: false });
/** k-diffusion noise level sqrt((1 - ᾱ) / ᾱ) of training timestep t, float64. */
export const sd15Sigma = (t: number) => Math.sqrt((1 - SD15_ALPHAS_CUMPROD[t]) / SD15_ALPHAS_CUMPROD[t]);
export const vpAlpha = (t: number) => Math.sqrt(SD15_ALPHAS_CUMPROD[t]);
export const vpSigma = (t: number) => Math.sqrt(1 - SD15_ALPHAS_CUMPROD[t]);
export const vpLambda = (t: number) => Math.log(vpAlpha(t) / vpSigma(t));

/** A clean sample and the noise that was added to it. */
export const X0 = [0.5, -1.25, 0.75, 0.1];
export const EPS = [1.3, -0.4, -2.1, 0.8];

/**
 * What a model of each prediction type outputs at sample x (k-diffusion scaling: x = x0 + sigma·eps)
 * when its denoised estimate is d.
 */
export function kModelOutput(prediction: PredictionType, x: ArrayLike<number>, d: readonly number[], sigma: number): Float32Array {
  const c = 1 / Math.sqrt(sigma * sigma + 1);
  return Float32Array.from(d, (di, i) => {
    const eps = (x[i] - di) / sigma;
    if (prediction === 'epsilon') return eps;
    if (prediction === 'v_prediction') return c * (eps - sigma * di);
    return di;
  });
}

/** The same for the variance-preserving scaling of the multistep solvers: x = alpha·x0 + sigma·eps. */
export function vpModelOutput(prediction: PredictionType, x: ArrayLike<number>, d: readonly number[], t: number): Float32Array {
  const alpha = vpAlpha(t);
  const sigma = vpSigma(t);
  return Float32Array.from(d, (di, i) => {
    const eps = (x[i] - alpha * di) / sigma;
    if (prediction === 'epsilon') return eps;
    if (prediction === 'v_prediction') return alpha * eps - sigma * di;
    return di;
  });
}

// A denoiser that varies along the trajectory, for the convergence-order tests: D = A + B·sin(3u)
// with u the log-SNR λ for the VP solvers and u = log σ for the k-diffusion ones.
const A = [0.5, -1, 2];
const B = [1, 0.5, -0.3];
export const START = [0.3, -0.7, 1.1];

export const varyingDenoised = (u: number) => A.map((a, i) => a + B[i] * Math.sin(3 * u));

/**
 * The exact VP solution x(t) from x(s) when the data prediction is varyingDenoised(λ):
 * x_t = σ_t·(x_s / σ_s + ∫ e^λ D(λ) dλ), the integral in closed form.
 */
export function vpExact(xs: readonly number[], s: number, t: number): number[] {
  const integral = (l: number, i: number) => Math.exp(l) * (A[i] + (B[i] * (Math.sin(3 * l) - 3 * Math.cos(3 * l))) / 10);
  return xs.map((x, i) => vpSigma(t) * (x / vpSigma(s) + integral(vpLambda(t), i) - integral(vpLambda(s), i)));
}

/**
 * The exact k-diffusion solution x(σ) from x(σ1) of dx/dσ = (x − D)/σ with D = varyingDenoised(log σ):
 * x/σ changes by −∫ D(s)/s² ds, in closed form in u = log s.
 */
export function kExact(x1: readonly number[], sigma1: number, sigma: number): number[] {
  const integral = (u: number, i: number) => Math.exp(-u) * (-A[i] - (B[i] * (Math.sin(3 * u) + 3 * Math.cos(3 * u))) / 10);
  return x1.map((x, i) => sigma * (x / sigma1 - (integral(Math.log(sigma), i) - integral(Math.log(sigma1), i))));
}

/** A NoiseSource for deterministic samplers: drawing from it fails the test. */
export const noNoise = (): Float32Array => {
  throw new Error('a deterministic sampler drew noise');
};

/** x_t = alpha_t·x0 + sigma_t·eps: the trajectory's sample at training timestep t. */
export const vpNoised = (t: number) => Float32Array.from(X0, (x, i) => vpAlpha(t) * x + vpSigma(t) * EPS[i]);

/** varyingDenoised along the VP schedule, by log-SNR. */
export const vpVarying = (t: number) => varyingDenoised(vpLambda(t));

/** Runs steps from..to-1 with a VP model whose data prediction at timestep t is `denoised(t)`; returns every result. */
export function vpRun(
  s: Scheduler,
  start: Float32Array,
  prediction: PredictionType,
  denoised: (t: number) => number[],
  { from = 0, to = s.timesteps.length, noise = noNoise as NoiseSource } = {},
): Float32Array[] {
  const samples: Float32Array[] = [];
  let x = start;
  for (const t of s.timesteps.slice(from, to)) {
    x = s.step(vpModelOutput(prediction, s.scaleModelInput(x, t), denoised(t), t), t, x, noise);
    samples.push(x);
  }
  return samples;
}

export const lastOf = (samples: Float32Array[]) => samples[samples.length - 1];
