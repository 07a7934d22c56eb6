import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DDIMScheduler } from '../../src/diffusion/schedulers/ddim.ts';
import { alphasCumprod, SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose, maxAbsDiff } from '../helpers/numeric.ts';
import {
  countingNoise,
  denoise,
  epsilon,
  perfectModel,
  PREDICTION_TYPES,
  SD15_CONFIG,
  vpSample,
  x0,
} from './sampling-harness.ts';

const sdCumprod = alphasCumprod({ ...SD15_CONFIG, rescale_betas_zero_snr: false });

function timestepsOf(config: Record<string, unknown>, steps: number): readonly number[] {
  const scheduler = new DDIMScheduler({ ...SD15_CONFIG, ...config });
  scheduler.setTimesteps(steps);
  return scheduler.timesteps;
}

describe('DDIMScheduler timesteps', () => {
  test('leading (SD 1.5): step ratio 1000 // 10 = 100, 0…900 reversed, + steps_offset 1', () => {
    assert.deepEqual(timestepsOf({}, 10), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    // 1000 // 3 = 333: 0, 333, 666 → 667, 334, 1
    assert.deepEqual(timestepsOf({}, 3), [667, 334, 1]);
  });

  test('trailing: round(arange(1000, 0, -1000/n)) - 1, no offset', () => {
    assert.deepEqual(timestepsOf({ timestep_spacing: 'trailing' }, 10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    // 1000, 833.3, 666.7, 500, 333.3, 166.7 → round → - 1
    assert.deepEqual(timestepsOf({ timestep_spacing: 'trailing' }, 6), [999, 832, 666, 499, 332, 166]);
    // numpy's arange fills with (1000 + step) - 1000, which puts the fourth value at 937.4999…, not 937.5,
    // so it rounds to 937 (a half-even 937.5 would give 938).
    assert.deepEqual(timestepsOf({ timestep_spacing: 'trailing' }, 48).slice(0, 6), [999, 978, 957, 936, 916, 895]);
  });

  test('linspace: round(linspace(0, 999, n)) reversed, halves to even, no offset', () => {
    assert.deepEqual(timestepsOf({ timestep_spacing: 'linspace' }, 10), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    // 999/6 = 166.5: 0, 166.5, 333, 499.5, 666, 832.5, 999 → 0, 166, 333, 500, 666, 832, 999
    assert.deepEqual(timestepsOf({ timestep_spacing: 'linspace' }, 7), [999, 832, 666, 500, 333, 166, 0]);
  });

  test('more steps than training timesteps are refused', () => {
    assert.throws(() => timestepsOf({ num_train_timesteps: 100 }, 101), SchedulerConfigError);
  });
});

describe('DDIMScheduler step', () => {
  for (const type of PREDICTION_TYPES) {
    test(`a perfect ${type} model lands on x0 (set_alpha_to_one)`, () => {
      const scheduler = new DDIMScheduler({ ...SD15_CONFIG, prediction_type: type, set_alpha_to_one: true });
      scheduler.setTimesteps(10);
      const start = vpSample(sdCumprod[901]);
      const result = denoise(scheduler, start, (input, t) => perfectModel(type, input, sdCumprod[t]));
      assertClose(result, x0, 2e-5);
    });
  }

  test('SD 1.5 (set_alpha_to_one false) ends at the noise level of ᾱ₀, not at x0', () => {
    const scheduler = new DDIMScheduler(SD15_CONFIG);
    scheduler.setTimesteps(10);
    const result = denoise(scheduler, vpSample(sdCumprod[901]), (input, t) => perfectModel('epsilon', input, sdCumprod[t]));
    assertClose(result, vpSample(sdCumprod[0]), 2e-5);
    assert.ok(maxAbsDiff(result, x0) > 1e-3);
  });

  test('the previous timestep is t - 1000 // n whatever the spacing (trailing 6: 999 → 833, not 832)', () => {
    const scheduler = new DDIMScheduler({ ...SD15_CONFIG, timestep_spacing: 'trailing', set_alpha_to_one: true });
    scheduler.setTimesteps(6);
    const noisy = vpSample(sdCumprod[999]);
    const next = scheduler.step(perfectModel('epsilon', noisy, sdCumprod[999]), 999, noisy, countingNoise().noise);
    assertClose(next, vpSample(sdCumprod[833]), 1e-5);
    assert.ok(maxAbsDiff(next, vpSample(sdCumprod[832])) > 1e-4);
  });

  test('eta = 0 never draws noise; eta = 1 draws once per step and adds σₜ·z (formula 16)', () => {
    const deterministic = new DDIMScheduler(SD15_CONFIG);
    deterministic.setTimesteps(10);
    // denoise's default noise source fails the test when called.
    denoise(deterministic, vpSample(sdCumprod[901]), (input, t) => perfectModel('epsilon', input, sdCumprod[t]));

    const scheduler = new DDIMScheduler(SD15_CONFIG, 1);
    scheduler.setTimesteps(10);
    const drawn: Float32Array[] = [];
    const counting = countingNoise();
    const noise = () => {
      drawn.push(counting.noise());
      return drawn[drawn.length - 1];
    };
    const sample = vpSample(sdCumprod[901]);
    const next = scheduler.step(epsilon, 901, sample, noise);
    assert.equal(counting.calls(), 1);
    const [a, aPrev] = [sdCumprod[901], sdCumprod[801]];
    const variance = ((1 - aPrev) / (1 - a)) * (1 - a / aPrev);
    const expected = x0.map(
      (x, i) => Math.sqrt(aPrev) * x + Math.sqrt(1 - aPrev - variance) * epsilon[i] + Math.sqrt(variance) * drawn[0][i],
    );
    assertClose(next, expected, 1e-5);

    scheduler.setTimesteps(10);
    const run = countingNoise();
    denoise(scheduler, sample, () => epsilon, { noise: run.noise });
    assert.equal(run.calls(), 10);
  });

  test('DDIM defaults clip x0 to ±1 (clip_sample true) but keep the unclipped ε', () => {
    // Empty config: linear betas 0.0001…0.02, clip_sample and set_alpha_to_one true, offset 0 → 900, 800, …
    const cumprod = alphasCumprod({
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: 'linear',
      trained_betas: null,
      rescale_betas_zero_snr: false,
    });
    const sample = vpSample(cumprod[900]);
    const modelOutput = new Float32Array(sample.length).fill(5);
    for (const [config, bound] of [
      [{}, 1],
      [{ clip_sample_range: 2 }, 2],
      [{ clip_sample: false }, 5],
    ] as const) {
      const scheduler = new DDIMScheduler({ prediction_type: 'sample', ...config });
      scheduler.setTimesteps(10);
      assert.equal(scheduler.timesteps[0], 900);
      const [a, aPrev] = [cumprod[900], cumprod[800]];
      const expected = sample.map((x) => {
        const eps = (x - Math.sqrt(a) * 5) / Math.sqrt(1 - a);
        return Math.sqrt(aPrev) * bound + Math.sqrt(1 - aPrev) * eps;
      });
      assertClose(scheduler.step(modelOutput, 900, sample, countingNoise().noise), expected, 1e-4, JSON.stringify(config));
    }
  });
});

describe('DDIMScheduler img2img', () => {
  test('addNoise is √ᾱₜ·x0 + √(1 − ᾱₜ)·ε', () => {
    const scheduler = new DDIMScheduler(SD15_CONFIG);
    assertClose(scheduler.addNoise(x0, epsilon, 501), vpSample(sdCumprod[501]), 1e-6);
    assert.throws(() => scheduler.addNoise(x0, epsilon, 1000), RangeError);
  });

  test('strength 0.6 of 10 steps starts at timesteps[4] = 501 and lands on x0', () => {
    const scheduler = new DDIMScheduler({ ...SD15_CONFIG, set_alpha_to_one: true });
    scheduler.setTimesteps(10);
    // init_timestep = int(10 · 0.6) = 6, t_start = 10 - 6 = 4
    const tStart = 4;
    const start = scheduler.timesteps[tStart];
    assert.equal(start, 501);
    const seen: number[] = [];
    const result = denoise(
      scheduler,
      scheduler.addNoise(x0, epsilon, start),
      (input, t) => {
        seen.push(t);
        return perfectModel('epsilon', input, sdCumprod[t]);
      },
      { tStart },
    );
    assert.deepEqual(seen, [501, 401, 301, 201, 101, 1]);
    assertClose(result, x0, 2e-5);
  });
});

describe('DDIMScheduler configuration', () => {
  test('rejects thresholding, unknown values and a negative eta', () => {
    assert.throws(() => new DDIMScheduler({ thresholding: true }), SchedulerConfigError);
    assert.throws(() => new DDIMScheduler({ prediction_type: 'x0' }), SchedulerConfigError);
    assert.throws(() => new DDIMScheduler({ timestep_spacing: 'karras' }), SchedulerConfigError);
    assert.throws(() => new DDIMScheduler({}, -0.5), SchedulerConfigError);
  });
});
