import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DPMSolverMultistepScheduler } from '../../src/diffusion/schedulers/dpmsolver-multistep.ts';
import { SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose, maxAbsDiff } from '../helpers/numeric.ts';
import {
  EPS,
  lastOf,
  noNoise,
  SD15,
  SD15_ALPHAS_CUMPROD,
  START,
  vpAlpha,
  vpExact,
  vpLambda,
  vpModelOutput,
  vpNoised,
  vpRun,
  vpSigma,
  vpVarying,
  X0,
} from './ode-fixtures.ts';

const make = (config: Record<string, unknown> = {}, steps = 10) => {
  const s = new DPMSolverMultistepScheduler({ ...SD15, ...config });
  s.setTimesteps(steps);
  return s;
};

describe('DPMSolverMultistepScheduler timesteps', () => {
  test('SD 1.5, leading, 12 steps: 1000 // 13 = 76 → 76·12 + 1, …, 76 + 1 (n + 1 points, the 0 dropped)', () => {
    assert.deepEqual(make({}, 12).timesteps, [913, 837, 761, 685, 609, 533, 457, 381, 305, 229, 153, 77]);
    assert.deepEqual(make({}, 10).timesteps, [901, 811, 721, 631, 541, 451, 361, 271, 181, 91]);
  });

  test('linspace, 12 steps: np.linspace(0, 999, 13) rounded half to even (166.5 → 166, 499.5 → 500, 832.5 → 832)', () => {
    assert.deepEqual(
      make({ timestep_spacing: 'linspace' }, 12).timesteps,
      [999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83],
    );
  });

  test('trailing, 12 steps: np.arange(1000, 0, -83.33).round() - 1', () => {
    assert.deepEqual(
      make({ timestep_spacing: 'trailing' }, 12).timesteps,
      [999, 916, 832, 749, 666, 582, 499, 416, 332, 249, 166, 82],
    );
  });

  test('Karras, 12 steps (the reference case txt2img-dpmpp2m-karras-batch): the same for every spacing', () => {
    // These are the timesteps with which this engine reproduces diffusers' images for that case.
    const expected = [999, 933, 854, 761, 646, 506, 345, 190, 78, 23, 4, 0];
    for (const spacing of ['leading', 'linspace', 'trailing']) {
      assert.deepEqual(make({ use_karras_sigmas: true, timestep_spacing: spacing }, 12).timesteps, expected);
    }
  });

  test('exponential (EXPONENTIAL), 12 steps: σ evenly spaced in log over the whole training range, rounded as Karras', () => {
    // numpy: np.exp(np.linspace(log σ(0), log σ(999), 12)) → _sigma_to_t → round → flip → np.unique's first occurrences.
    assert.deepEqual(make({ use_exponential_sigmas: true }, 12).timesteps, [999, 899, 782, 644, 482, 311, 166, 72, 26, 8, 2, 0]);
    assert.throws(() => make({ use_exponential_sigmas: true, use_karras_sigmas: true }, 12), SchedulerConfigError);
  });

  test('Karras timesteps that round to the same value are kept once, in order (np.unique)', () => {
    const { timesteps } = make({ use_karras_sigmas: true }, 100);
    assert.ok(timesteps.length < 100 && timesteps.length > 80, `${timesteps.length} timesteps`);
    assert.equal(timesteps[0], 999);
    assert.equal(timesteps[timesteps.length - 1], 0);
    for (let i = 1; i < timesteps.length; i++) assert.ok(timesteps[i] < timesteps[i - 1]);
  });

  test('lambda_min_clipped cuts the schedule where log-SNR falls below it', () => {
    // Cosine schedule: ᾱ(995) ≈ 3.9e-5 gives λ ≈ −5.08, ᾱ(996) ≈ 2.2e-5 gives λ ≈ −5.37, so with
    // λ_min −5.1 the last 4 timesteps are cut and last_timestep = 996:
    // linspace(0, 995, 11) = 0, 99.5, 199, 298.5, … rounds half to even; leading 996 // 11 = 90;
    // trailing arange(996, 0, -100) - 1.
    const cosine = { beta_schedule: 'squaredcos_cap_v2', lambda_min_clipped: -5.1 };
    const withSpacing = (timestep_spacing: string) =>
      new DPMSolverMultistepScheduler({ ...cosine, timestep_spacing, steps_offset: 0 });
    const [linspace, leading, trailing] = ['linspace', 'leading', 'trailing'].map((spacing) => {
      const s = withSpacing(spacing);
      s.setTimesteps(10);
      return s.timesteps;
    });
    assert.deepEqual(linspace, [995, 896, 796, 696, 597, 498, 398, 298, 199, 100]);
    assert.deepEqual(leading, [900, 810, 720, 630, 540, 450, 360, 270, 180, 90]);
    assert.deepEqual(trailing, [995, 895, 795, 695, 595, 495, 395, 295, 195, 95]);
  });
});

describe('DPMSolverMultistepScheduler steps', () => {
  const deterministic = [
    { algorithm_type: 'dpmsolver++', solver_type: 'midpoint' },
    { algorithm_type: 'dpmsolver++', solver_type: 'heun' },
    { algorithm_type: 'dpmsolver', solver_type: 'midpoint' },
    { algorithm_type: 'dpmsolver', solver_type: 'heun' },
    { algorithm_type: 'dpmsolver++', solver_order: 3 },
    { algorithm_type: 'dpmsolver', solver_order: 3 },
    { algorithm_type: 'dpmsolver++', solver_order: 1 },
  ];

  for (const prediction of ['epsilon', 'v_prediction', 'sample'] as const) {
    for (const variant of deterministic) {
      test(`${prediction}, ${JSON.stringify(variant)}: a model that knows x0 keeps x on alpha_t·x0 + sigma_t·eps to t = 0`, () => {
        for (const [spacing, steps] of [['leading', 8], ['linspace', 20], ['trailing', 12]] as const) {
          const s = make({ ...variant, prediction_type: prediction, timestep_spacing: spacing }, steps);
          const final = lastOf(vpRun(s, vpNoised(s.timesteps[0]), prediction, () => X0));
          assertClose(final, vpNoised(0), 1e-5, `${spacing}, ${steps} steps`);
        }
      });
    }
  }

  test('second- and third-order variants converge at least quadratically, first order linearly', () => {
    // trailing grids of 10, 20, 40 steps all contain 499: the error of x(499) against the exact solution
    const errorAt499 = (variant: Record<string, unknown>, steps: number) => {
      const s = make({ ...variant, timestep_spacing: 'trailing', prediction_type: 'epsilon' }, steps);
      const samples = vpRun(s, Float32Array.from(START), 'epsilon', vpVarying, { to: s.timesteps.indexOf(499) });
      return maxAbsDiff(lastOf(samples), vpExact(START, 999, 499));
    };
    for (const variant of deterministic) {
      const [e10, e40] = [10, 40].map((n) => errorAt499(variant, n));
      if (variant.solver_order === 1) assert.ok(e10 / e40 < 6, `first order fell ${e10 / e40}×`);
      else assert.ok(e10 / e40 > 12, `${JSON.stringify(variant)}: error fell only ${e10 / e40}× over two doublings`);
    }
  });

  test('lower_order_final: below 15 steps the last step is first order (and the one before second order for order 3)', () => {
    const compare = (config: Record<string, unknown>, steps: number) => {
      const start = Float32Array.from(START);
      const a = vpRun(make({ ...config, lower_order_final: true }, steps), start, 'epsilon', vpVarying);
      const b = vpRun(make({ ...config, lower_order_final: false }, steps), start, 'epsilon', vpVarying);
      return a.map((x, i) => maxAbsDiff(x, b[i]) > 0);
    };
    assert.deepEqual(compare({}, 10), [...Array(9).fill(false), true]);
    assert.deepEqual(compare({ solver_order: 3 }, 10), [...Array(8).fill(false), true, true]);
    assert.deepEqual(compare({}, 15), Array(15).fill(false));
    // and the lowered last step is exactly a first-order step
    const second = make({}, 10);
    const first = make({ solver_order: 1 }, 10);
    const before = lastOf(vpRun(second, Float32Array.from(START), 'epsilon', vpVarying, { to: 9 }));
    const t = second.timesteps[9];
    const output = vpModelOutput('epsilon', before, vpVarying(t), t);
    vpRun(first, Float32Array.from(START), 'epsilon', vpVarying, { to: 9 });
    assert.deepEqual(second.step(output, t, before, noNoise), first.step(output, t, before, noNoise));
  });

  test('with Karras sigmas the final step goes from timestep 0 to 0 and leaves the sample as it is (0.21.4)', () => {
    const s = make({ use_karras_sigmas: true }, 12);
    const samples = vpRun(s, Float32Array.from(START), 'epsilon', vpVarying);
    assert.deepEqual(samples[11], samples[10]);
  });

  test('img2img start: DDPM noising at the start timestep, then a first-order step', () => {
    const s = make({}, 10);
    // strength 0.6: t_start = 4, the pipeline keeps timesteps[4:]
    const t = s.timesteps[4];
    assert.equal(t, 541);
    const noisy = s.addNoise(Float32Array.from(X0), Float32Array.from(EPS), t);
    const a = Math.sqrt(SD15_ALPHAS_CUMPROD[541]);
    assertClose(noisy, X0.map((x, i) => a * x + Math.sqrt(1 - SD15_ALPHAS_CUMPROD[541]) * EPS[i]), 1e-6, 'addNoise');
    const firstOrder = make({ solver_order: 1 }, 10);
    const output = vpModelOutput('epsilon', noisy, vpVarying(t), t);
    assert.deepEqual(s.step(output, t, noisy, noNoise), firstOrder.step(output, t, noisy, noNoise));
    const fresh = make({}, 10);
    const final = lastOf(vpRun(fresh, noisy, 'epsilon', () => X0, { from: 4 }));
    assertClose(final, vpNoised(0), 1e-5, 'final sample');
  });

  test('sde-dpmsolver++ draws one noise tensor per step and adds it as sigma_t·sqrt(1 − e^(−2h))', () => {
    const s = make({ algorithm_type: 'sde-dpmsolver++' }, 6);
    let draws = 0;
    const z = [0.3, -1.2, 0.9, 0.05];
    const noise = () => {
      draws++;
      return Float32Array.from(z);
    };
    const [t, next] = s.timesteps;
    const x = vpNoised(t);
    const result = s.step(vpModelOutput('epsilon', x, X0, t), t, x, noise);
    const h = vpLambda(next) - vpLambda(t);
    const expected = X0.map(
      (x0, i) => vpAlpha(next) * x0 + vpSigma(next) * (Math.exp(-h) * EPS[i] + Math.sqrt(1 - Math.exp(-2 * h)) * z[i]),
    );
    assertClose(result, expected, 1e-5, 'first SDE step');
    vpRun(s, result, 'epsilon', vpVarying, { from: 1, noise });
    assert.equal(draws, 6);
  });

  test('sde-dpmsolver (noise form) second-order steps also draw once per step', () => {
    const s = make({ algorithm_type: 'sde-dpmsolver', solver_type: 'heun' }, 7);
    let draws = 0;
    vpRun(s, Float32Array.from(START), 'epsilon', vpVarying, {
      noise: () => {
        draws++;
        return new Float32Array(3).fill(0.5);
      },
    });
    assert.equal(draws, 7);
  });

  test('configurations of other solvers map as in diffusers: deis → dpmsolver++, bh2 → midpoint', () => {
    const reference = vpRun(make({}, 8), Float32Array.from(START), 'epsilon', vpVarying);
    const mapped = vpRun(make({ algorithm_type: 'deis', solver_type: 'bh2' }, 8), Float32Array.from(START), 'epsilon', vpVarying);
    assert.deepEqual(mapped, reference);
  });

  test('rejects what it cannot do, naming the setting', () => {
    for (const config of [
      { thresholding: true },
      { variance_type: 'learned_range' },
      { algorithm_type: 'sde-dpmsolver++', solver_order: 3 },
      { solver_order: 0 },
      { algorithm_type: 'unipc' },
    ]) {
      assert.throws(() => new DPMSolverMultistepScheduler({ ...SD15, ...config }), SchedulerConfigError, JSON.stringify(config));
    }
  });
});
