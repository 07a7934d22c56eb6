import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HeunDiscreteScheduler } from '../../src/diffusion/schedulers/heun-discrete.ts';
import type { PredictionType } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose, maxAbsDiff } from '../helpers/numeric.ts';
import { EPS, kExact, kModelOutput, SD15, sd15Sigma, START, varyingDenoised, X0 } from './ode-fixtures.ts';

/** The training noise level at a fractional timestep, interpolated linearly as np.interp does. */
const sigmaAt = (t: number) => {
  const low = Math.floor(t);
  return low === t ? sd15Sigma(t) : sd15Sigma(low) + (t - low) * (sd15Sigma(low + 1) - sd15Sigma(low));
};

/**
 * Runs the sampler over timesteps[from..to) with a model whose denoised estimate is
 * `denoised(sigma)`; each call i sees noise level sigmas[i]. Returns the last sample.
 */
function sample(
  s: HeunDiscreteScheduler,
  start: Float32Array,
  prediction: PredictionType,
  denoised: (sigma: number) => number[],
  from = 0,
  to = s.timesteps.length,
) {
  let x = start;
  for (let i = from; i < to; i++) {
    const t = s.timesteps[i];
    s.scaleModelInput(x, t);
    x = s.step(kModelOutput(prediction, x, denoised(s.sigmas[i]), s.sigmas[i]), t, x);
  }
  return x;
}

describe('HeunDiscreteScheduler', () => {
  test('SD 1.5, leading, 5 steps: 801, 601, …, 1 (ratio 200, offset 1), every timestep after the first twice', () => {
    const s = new HeunDiscreteScheduler(SD15);
    s.setTimesteps(5);
    assert.deepEqual(s.timesteps, [801, 601, 601, 401, 401, 201, 201, 1, 1]);
    const levels = [801, 601, 601, 401, 401, 201, 201, 1, 1].map(sd15Sigma);
    assertClose(s.sigmas, [...levels, 0], 2e-6, 'sigmas');
    // leading: init_noise_sigma is sqrt(sigma_max² + 1)
    assert.ok(Math.abs(s.initNoiseSigma - Math.sqrt(sd15Sigma(801) ** 2 + 1)) < 1e-5);
  });

  test('SD 1.5, linspace, 5 steps: np.linspace(0, 999, 5) reversed, fractional timesteps and interpolated sigmas', () => {
    const s = new HeunDiscreteScheduler({ ...SD15, timestep_spacing: 'linspace' });
    s.setTimesteps(5);
    assert.deepEqual(s.timesteps, [999, 749.25, 749.25, 499.5, 499.5, 249.75, 249.75, 0, 0]);
    assertClose(s.sigmas, [...s.timesteps.map(sigmaAt), 0], 2e-6, 'sigmas');
    // SD's well-known noise range, and init_noise_sigma = sigma_max for linspace
    assert.ok(Math.abs(s.initNoiseSigma - 14.6146) < 1e-3);
    assert.ok(Math.abs(s.sigmas[s.sigmas.length - 2] - 0.0291675) < 1e-6);
  });

  test('SD 1.5, trailing, 5 steps: arange(1000, 0, -200) - 1 = 999, 799, …, 199', () => {
    const s = new HeunDiscreteScheduler({ ...SD15, timestep_spacing: 'trailing' });
    s.setTimesteps(5);
    assert.deepEqual(s.timesteps, [999, 799, 799, 599, 599, 399, 399, 199, 199]);
    assert.equal(s.initNoiseSigma, s.sigmas[0]);
  });

  test('Karras sigmas span the spaced schedule with sigma^(1/7) evenly spaced, timesteps mapped back in log sigma', () => {
    const s = new HeunDiscreteScheduler({ ...SD15, use_karras_sigmas: true });
    s.setTimesteps(5);
    const levels = [0, 1, 3, 5, 7].map((i) => s.sigmas[i]);
    assertClose([levels[0], levels[4]], [sd15Sigma(801), sd15Sigma(1)], 2e-6, 'ends');
    const roots = levels.map((l) => l ** (1 / 7));
    for (let i = 1; i < 4; i++) assert.ok(Math.abs(roots[i + 1] - 2 * roots[i] + roots[i - 1]) < 1e-5, 'even in sigma^(1/7)');
    const distinct = [0, 1, 3, 5, 7].map((i) => s.timesteps[i]);
    assert.deepEqual([s.timesteps[1], s.timesteps[3]], [s.timesteps[2], s.timesteps[4]]);
    distinct.forEach((t, i) => {
      const low = Math.floor(t);
      const logSigma = Math.log(sd15Sigma(low)) + (t - low) * (Math.log(sd15Sigma(low + 1)) - Math.log(sd15Sigma(low)));
      assert.ok(Math.abs(Math.exp(logSigma) - levels[i]) < 1e-5 * levels[i], `timestep ${t} maps back to sigma ${levels[i]}`);
    });
  });

  for (const prediction of ['epsilon', 'v_prediction', 'sample'] as const) {
    for (const spacing of ['leading', 'linspace', 'trailing'] as const) {
      test(`${prediction}, ${spacing}: a model that knows x0 takes x0 + sigma·eps exactly to x0 in 2n − 1 calls`, () => {
        const s = new HeunDiscreteScheduler({ ...SD15, prediction_type: prediction, timestep_spacing: spacing });
        s.setTimesteps(6);
        assert.equal(s.timesteps.length, 11);
        const start = Float32Array.from(X0, (x, i) => x + s.sigmas[0] * EPS[i]);
        assertClose(sample(s, start, prediction, () => X0), X0, 2e-5, 'final sample');
      });
    }
  }

  test('is second order: the error at sigma(499) falls about 4× per doubling of steps', () => {
    const errorWith = (n: number) => {
      const s = new HeunDiscreteScheduler({ ...SD15, timestep_spacing: 'trailing' });
      s.setTimesteps(n);
      // trailing grids all contain 499: stop where the sample has reached it (its second occurrence)
      const stop = s.timesteps.lastIndexOf(499);
      const start = START.map((c) => c * s.sigmas[0]);
      const x = sample(s, Float32Array.from(start), 'epsilon', (sigma) => varyingDenoised(Math.log(sigma)), 0, stop);
      return maxAbsDiff(x, kExact(start, s.sigmas[0], s.sigmas[stop]));
    };
    const [e10, e20, e40] = [10, 20, 40].map(errorWith);
    assert.ok(e10 / e40 > 12, `errors ${e10}, ${e20}, ${e40} fall too slowly for a second-order method`);
  });

  test('clip_sample clamps the predicted x0 to clip_sample_range', () => {
    const config = { ...SD15, prediction_type: 'sample', clip_sample: true, clip_sample_range: 1 };
    const s = new HeunDiscreteScheduler(config);
    s.setTimesteps(4);
    const start = Float32Array.from(EPS, (e) => 3 + s.sigmas[0] * e);
    const final = sample(s, start, 'sample', () => [3, 3, 3, 3]);
    assertClose(final, [1, 1, 1, 1], 1e-5, 'clipped result');
  });

  test('img2img start: noise at the second occurrence of the start timestep, then a first-order step from there', () => {
    const s = new HeunDiscreteScheduler(SD15);
    s.setTimesteps(10);
    // strength 0.5: t_start = 5, the pipeline keeps timesteps[5 * order:]
    const timesteps = s.timesteps.slice(10);
    assert.equal(timesteps[0], 401);
    assert.equal(s.timesteps.indexOf(401), 9);
    const noisy = s.addNoise(Float32Array.from(X0), Float32Array.from(EPS), timesteps[0]);
    assertClose(noisy, X0.map((x, i) => x + sd15Sigma(401) * EPS[i]), 1e-5, 'addNoise: x0 + sigma(401)·noise');
    const scaled = s.scaleModelInput(noisy, timesteps[0]);
    assertClose(scaled, Array.from(noisy, (x) => x / Math.sqrt(sd15Sigma(401) ** 2 + 1)), 1e-6, 'scaled input');
    // the first step lands exactly on sigma(301), the next level
    const next = s.step(kModelOutput('epsilon', noisy, X0, sd15Sigma(401)), timesteps[0], noisy);
    assertClose(next, X0.map((x, i) => x + sd15Sigma(301) * EPS[i]), 1e-5, 'after the first step');
    assertClose(sample(s, next, 'epsilon', () => X0, 11), X0, 2e-5, 'final sample');
  });

  test('setTimesteps restarts a finished run', () => {
    const s = new HeunDiscreteScheduler(SD15);
    s.setTimesteps(3);
    const start = Float32Array.from(X0, (x, i) => x + s.sigmas[0] * EPS[i]);
    const first = sample(s, start, 'epsilon', () => X0);
    s.setTimesteps(3);
    assert.deepEqual(sample(s, start, 'epsilon', () => X0), first);
  });
});
