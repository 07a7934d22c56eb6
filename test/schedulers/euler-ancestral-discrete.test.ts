import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EulerAncestralDiscreteScheduler } from '../../src/diffusion/schedulers/euler-ancestral-discrete.ts';
import { alphasCumprod, SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose } from '../helpers/numeric.ts';
import {
  alphaProdOfSigma,
  countingNoise,
  denoise,
  epsilon,
  normals,
  perfectModel,
  SD15_CONFIG,
  x0,
} from './sampling-harness.ts';

const cumprod = alphasCumprod({ ...SD15_CONFIG, rescale_betas_zero_snr: false });
const sigmaOf = (t: number) => Math.sqrt((1 - cumprod[t]) / cumprod[t]);
const TRAILING = { ...SD15_CONFIG, timestep_spacing: 'trailing' };

function eulerA(config: Record<string, unknown> = TRAILING, steps = 6): EulerAncestralDiscreteScheduler {
  const scheduler = new EulerAncestralDiscreteScheduler(config);
  scheduler.setTimesteps(steps);
  return scheduler;
}

describe('EulerAncestralDiscreteScheduler schedule', () => {
  test('trailing, 6 steps (the reference case): 999, 832, 666, 499, 332, 166 and σmax as initial noise', () => {
    const scheduler = eulerA();
    assert.deepEqual(scheduler.timesteps, [999, 832, 666, 499, 332, 166]);
    scheduler.timesteps.forEach((t, k) => assert.ok(Math.abs(scheduler.sigmas[k] / sigmaOf(t) - 1) < 1e-6));
    assert.equal(scheduler.sigmas[6], 0);
    assert.ok(Math.abs(scheduler.initNoiseSigma / sigmaOf(999) - 1) < 1e-6);
  });

  test('ignores use_karras_sigmas, which this class does not have in diffusers 0.21.4', () => {
    const karras = eulerA({ ...TRAILING, use_karras_sigmas: true });
    assert.deepEqual(karras.sigmas, eulerA().sigmas);
  });
});

describe('EulerAncestralDiscreteScheduler step', () => {
  test('an Euler step to σ_down, then σ_up·z, with σ_down² + σ_up² = σ_next²', () => {
    const scheduler = eulerA();
    const [from, to] = [scheduler.sigmas[0], scheduler.sigmas[1]];
    const sigmaUp = Math.sqrt((to ** 2 * (from ** 2 - to ** 2)) / from ** 2);
    const sigmaDown = Math.sqrt(to ** 2 - sigmaUp ** 2);
    const z = normals(x0.length, 9);
    let calls = 0;
    const result = scheduler.step(epsilon, 999, x0, () => {
      calls++;
      return z;
    });
    assert.equal(calls, 1);
    assertClose(
      result,
      x0.map((x, i) => x + epsilon[i] * (sigmaDown - from) + sigmaUp * z[i]),
      1e-5,
    );
  });

  for (const type of ['epsilon', 'v_prediction'] as const) {
    test(`a perfect ${type} model lands on x0 whatever noise is drawn, one draw per step`, () => {
      const scheduler = eulerA({ ...TRAILING, prediction_type: type });
      const { sigmas } = scheduler;
      const counting = countingNoise();
      const result = denoise(
        scheduler,
        x0.map((x, i) => x + sigmas[0] * epsilon[i]),
        (input, _t, call) => perfectModel(type, input, alphaProdOfSigma(sigmas[call])),
        { noise: counting.noise },
      );
      assertClose(result, x0, 5e-5);
      // The last step draws too, though σ_up is 0 there.
      assert.equal(counting.calls(), 6);
    });
  }
});

describe('EulerAncestralDiscreteScheduler img2img', () => {
  test('strength 0.6 of 10 steps (leading): starts at index 4 = timestep 501', () => {
    const scheduler = eulerA(SD15_CONFIG, 10);
    const tStart = 4;
    assert.equal(scheduler.timesteps[tStart], 501);
    const start = scheduler.addNoise(x0, epsilon, 501);
    assertClose(
      start,
      x0.map((x, i) => x + sigmaOf(501) * epsilon[i]),
      1e-6,
    );
    const counting = countingNoise();
    const result = denoise(
      scheduler,
      start,
      (input, _t, call) => perfectModel('epsilon', input, alphaProdOfSigma(scheduler.sigmas[tStart + call])),
      { tStart, noise: counting.noise },
    );
    assert.equal(counting.calls(), 6);
    assertClose(result, x0, 5e-5);
  });
});

describe('EulerAncestralDiscreteScheduler configuration', () => {
  test('rejects sample prediction, which diffusers 0.21.4 does not implement here', () => {
    assert.throws(() => new EulerAncestralDiscreteScheduler({ prediction_type: 'sample' }), SchedulerConfigError);
  });
});
