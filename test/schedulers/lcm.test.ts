// LCMScheduler against values worked out from diffusers v0.40.0's scheduling_lcm.py: the skipping
// schedule taken from `original_inference_steps`, the boundary condition c_skip·x + c_out·x̂₀, and
// one noise draw for every step but the last.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createScheduler } from '../../src/diffusion/schedulers/index.ts';
import { LCMScheduler } from '../../src/diffusion/schedulers/lcm.ts';
import { alphasCumprod, SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose, maxAbsDiff } from '../helpers/numeric.ts';
import { countingNoise, denoise, epsilon, perfectModel, PREDICTION_TYPES, SD15_CONFIG, vpSample, x0 } from './sampling-harness.ts';

const cumprod = alphasCumprod({ ...SD15_CONFIG, rescale_betas_zero_snr: false });

function timestepsOf(config: Record<string, unknown>, steps: number): readonly number[] {
  const scheduler = new LCMScheduler({ ...SD15_CONFIG, ...config });
  scheduler.setTimesteps(steps);
  return scheduler.timesteps;
}

/** c_skip and c_out of the boundary condition at `timestep` (σ_data 0.5). */
function scalings(timestep: number, timestepScaling = 10): [number, number] {
  const s = timestep * timestepScaling;
  return [0.25 / (s * s + 0.25), s / Math.sqrt(s * s + 0.25)];
}

describe('LCMScheduler timesteps', () => {
  test('k = 1000 // 50 = 20: the schedule 19, 39, …, 999, taken at floor(linspace(0, 50, n, endpoint=False)) from the top', () => {
    assert.deepEqual(timestepsOf({}, 1), [999]);
    // indices 0, 16, 33
    assert.deepEqual(timestepsOf({}, 3), [999, 679, 339]);
    // indices 0, 12, 25, 37
    assert.deepEqual(timestepsOf({}, 4), [999, 759, 499, 259]);
    // indices 0, 6, 12, 18, 25, 31, 37, 43
    assert.deepEqual(timestepsOf({}, 8), [999, 879, 759, 639, 499, 379, 259, 139]);
    assert.deepEqual(timestepsOf({}, 50), Array.from({ length: 50 }, (_, i) => 999 - 20 * i));
  });

  test('original_inference_steps comes from the config; timestep_spacing and steps_offset do not apply', () => {
    // k = 10: indices 0, 25, 50, 75 of 999, 989, …, 9
    assert.deepEqual(timestepsOf({ original_inference_steps: 100 }, 4), [999, 749, 499, 249]);
    for (const timestep_spacing of ['leading', 'trailing', 'linspace']) {
      assert.deepEqual(timestepsOf({ timestep_spacing, steps_offset: 1 }, 4), [999, 759, 499, 259]);
    }
  });

  test('more steps than original_inference_steps, a bad original_inference_steps and thresholding are refused', () => {
    assert.throws(() => timestepsOf({}, 51), SchedulerConfigError);
    assert.throws(() => new LCMScheduler({ original_inference_steps: 1001 }), SchedulerConfigError);
    assert.throws(() => new LCMScheduler({ original_inference_steps: 0 }), SchedulerConfigError);
    assert.throws(() => new LCMScheduler({ thresholding: true }), SchedulerConfigError);
  });

  test('created by name from a model config, and an identity on the model input with unit initial noise', () => {
    const scheduler = createScheduler('LCM', { ...SD15_CONFIG, _class_name: 'LCMScheduler' });
    assert.ok(scheduler instanceof LCMScheduler);
    assert.equal(scheduler.initNoiseSigma, 1);
    assert.equal(scheduler.order, 1);
    assert.equal(scheduler.scaleModelInput(x0), x0);
  });
});

describe('LCMScheduler step', () => {
  for (const type of PREDICTION_TYPES) {
    test(`a perfect ${type} model: denoised = c_skip·x + c_out·x₀, then noised to the next timestep's level`, () => {
      const scheduler = new LCMScheduler({ ...SD15_CONFIG, prediction_type: type, timestep_scaling: 0.001 });
      scheduler.setTimesteps(4);
      const sample = vpSample(cumprod[999]);
      const counting = countingNoise();
      const drawn: Float32Array[] = [];
      const next = scheduler.step(perfectModel(type, sample, cumprod[999]), 999, sample, () => (drawn.push(counting.noise()), drawn[0]));
      assert.equal(drawn.length, 1);
      // timestep_scaling 0.001 makes both terms count: s = 0.999, c_skip ≈ 0.200, c_out ≈ 0.894.
      const [cSkip, cOut] = scalings(999, 0.001);
      const denoised = sample.map((x, i) => cSkip * x + cOut * x0[i]);
      const a = cumprod[759];
      assertClose(next, denoised.map((d, i) => Math.sqrt(a) * d + Math.sqrt(1 - a) * drawn[0][i]), 2e-5);
    });
  }

  test('the default timestep_scaling of 10 makes c_skip ≈ 0 and c_out ≈ 1 at every timestep: one step lands on x₀', () => {
    for (const steps of [1, 2, 4]) {
      const scheduler = new LCMScheduler(SD15_CONFIG);
      scheduler.setTimesteps(steps);
      const run = countingNoise();
      const result = denoise(scheduler, vpSample(cumprod[999]), (input, t) => perfectModel('epsilon', input, cumprod[t]), { noise: run.noise });
      assert.equal(run.calls(), steps - 1, 'every step but the last draws noise');
      const [cSkip, cOut] = scalings(scheduler.timesteps.at(-1)!);
      assert.ok(cSkip < 1e-4 && cOut > 0.9999);
      assertClose(result, x0, 1e-3);
    }
  });

  test('the last step returns the denoised estimate itself, with no noise', () => {
    const scheduler = new LCMScheduler({ ...SD15_CONFIG, timestep_scaling: 0.001 });
    scheduler.setTimesteps(2);
    const calls: number[] = [];
    const run = countingNoise();
    let before: Float32Array = new Float32Array();
    denoise(scheduler, vpSample(cumprod[999]), (input, t) => {
      calls.push(t);
      before = input;
      return epsilon;
    }, {
      noise: run.noise,
      onStep: (sample, call) => {
        if (call !== 1) return;
        const [cSkip, cOut] = scalings(499, 0.001);
        const [a, b] = [Math.sqrt(cumprod[499]), Math.sqrt(1 - cumprod[499])];
        assertClose(sample, before.map((x, i) => cSkip * x + cOut * ((x - b * epsilon[i]) / a)), 2e-5);
      },
    });
    assert.deepEqual(calls, [999, 499]);
    assert.equal(run.calls(), 1);
  });

  test('clip_sample clamps x̂₀ before the boundary condition', () => {
    const clipped = new LCMScheduler({ ...SD15_CONFIG, clip_sample: true, clip_sample_range: 0.1, timestep_scaling: 0.001, prediction_type: 'sample' });
    clipped.setTimesteps(1);
    const sample = vpSample(cumprod[999]);
    const out = clipped.step(perfectModel('sample', sample, cumprod[999]), 999, sample, countingNoise().noise);
    const [cSkip, cOut] = scalings(999, 0.001);
    assertClose(out, sample.map((x, i) => cSkip * x + cOut * Math.min(Math.max(x0[i], -0.1), 0.1)), 2e-5);
    assert.ok(maxAbsDiff(out, sample.map((x, i) => cSkip * x + cOut * x0[i])) > 0.1);
  });

  test('img2img: a run from a later timestep continues the schedule and adds DDPM noise at that level', () => {
    const scheduler = new LCMScheduler(SD15_CONFIG);
    scheduler.setTimesteps(4);
    const noisy = scheduler.addNoise(x0, epsilon, 499);
    assertClose(noisy, vpSample(cumprod[499]), 1e-6);
    const run = countingNoise();
    const seen: number[] = [];
    denoise(scheduler, noisy, (input, t) => (seen.push(t), perfectModel('epsilon', input, cumprod[t])), { tStart: 2, noise: run.noise });
    assert.deepEqual(seen, [499, 259]);
    assert.equal(run.calls(), 1);
  });
});
