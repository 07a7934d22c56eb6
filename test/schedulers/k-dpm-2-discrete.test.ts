import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KDPM2DiscreteScheduler } from '../../src/diffusion/schedulers/k-dpm-2-discrete.ts';
import { SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import type { PredictionType } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose, maxAbsDiff } from '../helpers/numeric.ts';
import { EPS, kExact, kModelOutput, SD15, sd15Sigma, START, varyingDenoised, X0 } from './ode-fixtures.ts';

/** The noise level the model sees at call i: a step's start (even i) or its midpoint (odd i). */
const callSigma = (s: KDPM2DiscreteScheduler, i: number) => (i % 2 === 0 ? s.sigmas[i] : s.sigmasInterpol[i]);

/** Runs calls from..to-1 with a model whose denoised estimate is `denoised(sigma)`; returns the last sample. */
function sample(
  s: KDPM2DiscreteScheduler,
  start: Float32Array,
  prediction: PredictionType,
  denoised: (sigma: number) => number[],
  from = 0,
  to = s.timesteps.length,
) {
  let x = start;
  for (let i = from; i < to; i++) {
    const t = s.timesteps[i];
    const scaled = s.scaleModelInput(x, t);
    const sigma = callSigma(s, i);
    assertClose(scaled, Array.from(x, (v) => v / Math.sqrt(sigma * sigma + 1)), 1e-6, `input scaling at call ${i}`);
    x = s.step(kModelOutput(prediction, x, denoised(sigma), sigma), t, x);
  }
  return x;
}

/** log-linear interpolation of the training sigmas at a fractional timestep (the inverse of sigma_to_t). */
function sigmaAtLogLinear(t: number) {
  const low = Math.floor(t);
  const logLow = Math.log(sd15Sigma(low));
  return Math.exp(logLow + (t - low) * (Math.log(sd15Sigma(low + 1)) - logLow));
}

describe('KDPM2DiscreteScheduler', () => {
  test('SD 1.5, leading, 5 steps: 801, 601, …, 1 with a midpoint timestep before each but the first', () => {
    const s = new KDPM2DiscreteScheduler(SD15);
    s.setTimesteps(5);
    const levels = [801, 601, 401, 201, 1].map(sd15Sigma);
    assert.equal(s.timesteps.length, 9);
    assert.deepEqual(
      s.timesteps.filter((_, i) => i % 2 === 0),
      [801, 601, 401, 201, 1],
    );
    // sigmas: the first level, every later one twice, then 0 three times (diffusers' layout)
    assertClose(s.sigmas, [levels[0], ...levels.slice(1).flatMap((l) => [l, l]), 0, 0, 0], 2e-6, 'sigmas');
    for (let k = 1; k < 5; k++) {
      const midpoint = Math.sqrt(levels[k - 1] * levels[k]);
      assertClose([s.sigmasInterpol[2 * k - 1], s.sigmasInterpol[2 * k]], [midpoint, midpoint], 2e-6 * midpoint, `midpoint ${k}`);
      const t = s.timesteps[2 * k - 1];
      assert.ok(t < s.timesteps[2 * k - 2] && t > s.timesteps[2 * k], `midpoint timestep ${t} lies inside its step`);
      assert.ok(Math.abs(sigmaAtLogLinear(t) - midpoint) < 1e-4 * midpoint, `midpoint timestep ${t} has sigma ${midpoint}`);
    }
    assert.deepEqual(Array.from(s.sigmasInterpol.slice(9)), [0, 0, 0]);
    assert.ok(Math.abs(s.initNoiseSigma - Math.sqrt(levels[0] ** 2 + 1)) < 1e-5);
  });

  test('linspace and trailing, 4 steps: 999, 666, 333, 0 and 999, 749, 499, 249 between the midpoints', () => {
    const linspace = new KDPM2DiscreteScheduler({ ...SD15, timestep_spacing: 'linspace' });
    linspace.setTimesteps(4);
    assert.deepEqual(linspace.timesteps.filter((_, i) => i % 2 === 0), [999, 666, 333, 0]);
    assert.equal(linspace.initNoiseSigma, linspace.sigmas[0]);
    const trailing = new KDPM2DiscreteScheduler({ ...SD15, timestep_spacing: 'trailing' });
    trailing.setTimesteps(4);
    assert.deepEqual(trailing.timesteps.filter((_, i) => i % 2 === 0), [999, 749, 499, 249]);
  });

  test('rejects prediction_type "sample", which diffusers 0.21.4 does not implement for KDPM2', () => {
    assert.throws(() => new KDPM2DiscreteScheduler({ ...SD15, prediction_type: 'sample' }), SchedulerConfigError);
  });

  for (const prediction of ['epsilon', 'v_prediction'] as const) {
    for (const spacing of ['leading', 'linspace', 'trailing'] as const) {
      test(`${prediction}, ${spacing}: a model that knows x0 takes x0 + sigma·eps exactly to x0`, () => {
        const s = new KDPM2DiscreteScheduler({ ...SD15, prediction_type: prediction, timestep_spacing: spacing });
        s.setTimesteps(6);
        const start = Float32Array.from(X0, (x, i) => x + s.sigmas[0] * EPS[i]);
        assertClose(sample(s, start, prediction, () => X0), X0, 2e-5, 'final sample');
      });
    }
  }

  test('is second order: the error at sigma(499) falls about 4× per doubling of steps', () => {
    const errorWith = (n: number) => {
      const s = new KDPM2DiscreteScheduler({ ...SD15, timestep_spacing: 'trailing' });
      s.setTimesteps(n);
      const stop = s.timesteps.indexOf(499);
      const start = START.map((c) => c * s.sigmas[0]);
      const x = sample(s, Float32Array.from(start), 'epsilon', (sigma) => varyingDenoised(Math.log(sigma)), 0, stop);
      return maxAbsDiff(x, kExact(start, s.sigmas[0], s.sigmas[stop]));
    };
    const [e10, e20, e40] = [10, 20, 40].map(errorWith);
    assert.ok(e10 / e40 > 12, `errors ${e10}, ${e20}, ${e40} fall too slowly for a second-order method`);
  });

  test('img2img start: noise to the level of the start timestep and continue from its index', () => {
    const s = new KDPM2DiscreteScheduler(SD15);
    s.setTimesteps(10);
    // strength 0.5: t_start = 5, the pipeline keeps timesteps[5 * order:], which starts at 401
    const start = 10;
    assert.equal(s.timesteps[start], 401);
    const noisy = s.addNoise(Float32Array.from(X0), Float32Array.from(EPS), 401);
    assertClose(noisy, X0.map((x, i) => x + sd15Sigma(401) * EPS[i]), 1e-5, 'addNoise: x0 + sigma(401)·noise');
    assertClose(sample(s, noisy, 'epsilon', () => X0, start), X0, 2e-5, 'final sample');
  });
});
