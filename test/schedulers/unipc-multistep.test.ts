import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DPMSolverMultistepScheduler } from '../../src/diffusion/schedulers/dpmsolver-multistep.ts';
import { SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import { UniPCMultistepScheduler } from '../../src/diffusion/schedulers/unipc-multistep.ts';
import { assertClose, maxAbsDiff } from '../helpers/numeric.ts';
import {
  EPS,
  lastOf,
  SD15,
  SD15_ALPHAS_CUMPROD,
  START,
  vpAlpha,
  vpExact,
  vpLambda,
  vpNoised,
  vpRun,
  vpVarying,
  X0,
} from './ode-fixtures.ts';

const make = (config: Record<string, unknown> = {}, steps = 10) => {
  const s = new UniPCMultistepScheduler({ ...SD15, ...config });
  s.setTimesteps(steps);
  return s;
};

const noCorrector = { disable_corrector: Array.from({ length: 200 }, (_, i) => i) };


describe('UniPCMultistepScheduler', () => {
  test('timesteps: DPM-Solver\'s n + 1 spacing over the whole training range', () => {
    // leading: 1000 // 13 = 76, offset 1; linspace(0, 999, 13) rounded half to even; arange(1000, 0, -83.33) − 1
    assert.deepEqual(make({}, 12).timesteps, [913, 837, 761, 685, 609, 533, 457, 381, 305, 229, 153, 77]);
    assert.deepEqual(
      make({ timestep_spacing: 'linspace' }, 12).timesteps,
      [999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83],
    );
    assert.deepEqual(
      make({ timestep_spacing: 'trailing' }, 12).timesteps,
      [999, 916, 832, 749, 666, 582, 499, 416, 332, 249, 166, 82],
    );
    assert.deepEqual(make({ use_karras_sigmas: true }, 12).timesteps, [999, 933, 854, 761, 646, 506, 345, 190, 78, 23, 4, 0]);
  });

  const variants = [
    {},
    { solver_type: 'bh1' },
    { predict_x0: false },
    { predict_x0: false, solver_type: 'bh1' },
    { solver_order: 1 },
    { solver_order: 3 },
    { solver_order: 3, solver_type: 'bh1', lower_order_final: false },
  ];

  for (const prediction of ['epsilon', 'v_prediction', 'sample'] as const) {
    for (const variant of variants) {
      test(`${prediction}, ${JSON.stringify(variant)}: a model that knows x0 keeps x on alpha_t·x0 + sigma_t·eps to t = 0`, () => {
        for (const [spacing, steps] of [['leading', 8], ['linspace', 20], ['trailing', 12]] as const) {
          const s = make({ ...variant, prediction_type: prediction, timestep_spacing: spacing }, steps);
          const final = lastOf(vpRun(s, vpNoised(s.timesteps[0]), prediction, () => X0));
          assertClose(final, vpNoised(0), 1e-5, `${spacing}, ${steps} steps`);
        }
      });
    }
  }

  test('predictor + corrector converge at least quadratically; UniP-1 alone (DDIM) only linearly', () => {
    const errorAt499 = (variant: Record<string, unknown>, steps: number) => {
      const s = make({ ...variant, timestep_spacing: 'trailing' }, steps);
      const samples = vpRun(s, Float32Array.from(START), 'epsilon', vpVarying, { to: s.timesteps.indexOf(499) });
      return maxAbsDiff(lastOf(samples), vpExact(START, 999, 499));
    };
    for (const variant of variants) {
      const [e10, e40] = [10, 40].map((n) => errorAt499(variant, n));
      assert.ok(e10 / e40 > 12, `${JSON.stringify(variant)}: error fell only ${e10 / e40}× over two doublings`);
    }
    const [e10, e40] = [10, 40].map((n) => errorAt499({ ...noCorrector, solver_order: 1 }, n));
    assert.ok(e10 / e40 < 6, `UniP-1 fell ${e10 / e40}×`);
  });

  test('without its corrector, UniP-2 (B(h) = e^h − 1) is DPM-Solver++(2M)', () => {
    const unip = vpRun(make(noCorrector, 10), Float32Array.from(START), 'epsilon', vpVarying);
    const dpm = new DPMSolverMultistepScheduler({ ...SD15, lower_order_final: false });
    dpm.setTimesteps(10);
    const reference = vpRun(dpm, Float32Array.from(START), 'epsilon', vpVarying);
    // UniPC lowers only the very last step, DPM-Solver (lower_order_final off) none: compare the rest
    unip.slice(0, -1).forEach((x, i) => assertClose(x, reference[i], 1e-5, `step ${i}`));
  });

  test('bh1 and bh2 differ only in B(h): −h versus e^(−h) − 1 in front of the predictor\'s D1 term', () => {
    const [bh1, bh2] = ['bh1', 'bh2'].map((solver_type) =>
      vpRun(make({ ...noCorrector, solver_type }, 6), Float32Array.from(START), 'epsilon', vpVarying, { to: 2 }),
    );
    assert.deepEqual(bh1[0], bh2[0], 'the first step has no D1 term');
    const [s1, s0, t] = make({}, 6).timesteps;
    const h = vpLambda(t) - vpLambda(s0);
    const rk = (vpLambda(s1) - vpLambda(s0)) / h;
    const [m1, m0] = [vpVarying(s1), vpVarying(s0)];
    // x_t = σt/σs0·x − αt·(e^(−h) − 1)·m0 − αt·B(h)·½·(m1 − m0)/rk
    const expected = m0.map((m, i) => -vpAlpha(t) * (-h - Math.expm1(-h)) * 0.5 * ((m1[i] - m) / rk));
    assertClose(
      bh1[1].map((x, i) => x - bh2[1][i]),
      expected,
      1e-6,
      'bh1 − bh2',
    );
  });

  test('disable_corrector [2] skips only the correction at step 3 (of step 2\'s result)', () => {
    const start = Float32Array.from(START);
    const a = vpRun(make({}, 8), start, 'epsilon', vpVarying);
    const b = vpRun(make({ disable_corrector: [2] }, 8), start, 'epsilon', vpVarying);
    assert.deepEqual(
      a.map((x, i) => maxAbsDiff(x, b[i]) > 0),
      [false, false, false, true, true, true, true, true],
    );
  });

  test('lower_order_final lowers the final step at any length (no 15-step limit in UniPC 0.21.4)', () => {
    const start = Float32Array.from(START);
    const a = vpRun(make({ lower_order_final: true }, 20), start, 'epsilon', vpVarying);
    const b = vpRun(make({ lower_order_final: false }, 20), start, 'epsilon', vpVarying);
    assert.deepEqual(
      a.map((x, i) => maxAbsDiff(x, b[i]) > 0),
      [...Array(19).fill(false), true],
    );
  });

  test('img2img start: DDPM noising at the start timestep, no correction at the first step', () => {
    const s = make({}, 10);
    // strength 0.6: t_start = 4, the pipeline keeps timesteps[4:]
    const t = s.timesteps[4];
    assert.equal(t, 541);
    const noisy = s.addNoise(Float32Array.from(X0), Float32Array.from(EPS), t);
    const a = Math.sqrt(SD15_ALPHAS_CUMPROD[541]);
    assertClose(noisy, X0.map((x, i) => a * x + Math.sqrt(1 - SD15_ALPHAS_CUMPROD[541]) * EPS[i]), 1e-6, 'addNoise');
    const withCorrector = vpRun(s, Float32Array.from(START), 'epsilon', vpVarying, { from: 4 });
    const without = vpRun(make(noCorrector, 10), Float32Array.from(START), 'epsilon', vpVarying, { from: 4 });
    assert.deepEqual(withCorrector[0], without[0]);
    assert.ok(maxAbsDiff(withCorrector[1], without[1]) > 0, 'the second step corrects the first');
    const final = lastOf(vpRun(make({}, 10), noisy, 'epsilon', () => X0, { from: 4 }));
    assertClose(final, vpNoised(0), 1e-5, 'final sample');
  });

  test('solver types of DPM-Solver configs map to bh2; disable_corrector null means none', () => {
    const reference = vpRun(make({}, 6), Float32Array.from(START), 'epsilon', vpVarying);
    for (const solver_type of ['midpoint', 'heun', 'logrho']) {
      assert.deepEqual(vpRun(make({ solver_type }, 6), Float32Array.from(START), 'epsilon', vpVarying), reference);
    }
    assert.deepEqual(vpRun(make({ disable_corrector: null }, 6), Float32Array.from(START), 'epsilon', vpVarying), reference);
  });

  test('rejects what it cannot do, naming the setting', () => {
    for (const config of [{ thresholding: true }, { solver_order: 1.5 }, { solver_type: 'bh3' }]) {
      assert.throws(() => new UniPCMultistepScheduler({ ...SD15, ...config }), SchedulerConfigError, JSON.stringify(config));
    }
  });
});
