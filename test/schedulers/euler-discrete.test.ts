import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EulerDiscreteScheduler } from '../../src/diffusion/schedulers/euler-discrete.ts';
import { alphasCumprod, SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose } from '../helpers/numeric.ts';
import {
  alphaProdOfSigma,
  countingNoise,
  denoise,
  epsilon,
  perfectModel,
  PREDICTION_TYPES,
  SD15_CONFIG,
  x0,
} from './sampling-harness.ts';

const cumprod = alphasCumprod({ ...SD15_CONFIG, rescale_betas_zero_snr: false });
/** k-diffusion's σ of training timestep t: √((1 − ᾱₜ)/ᾱₜ). */
const sigmaOf = (t: number) => Math.sqrt((1 - cumprod[t]) / cumprod[t]);

function euler(config: Record<string, unknown> = {}, steps = 8): EulerDiscreteScheduler {
  const scheduler = new EulerDiscreteScheduler({ ...SD15_CONFIG, ...config });
  scheduler.setTimesteps(steps);
  return scheduler;
}

const relClose = (actual: number, expected: number, tolerance: number, message: string) =>
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.abs(expected), `${message}: ${actual} vs ${expected}`);

describe('EulerDiscreteScheduler schedule', () => {
  test('leading (SD 1.5, 8 steps): 1000 // 8 = 125 → 876, 751, …, 1; σ of each, then 0', () => {
    const scheduler = euler();
    const timesteps = [876, 751, 626, 501, 376, 251, 126, 1];
    assert.deepEqual(scheduler.timesteps, timesteps);
    assert.equal(scheduler.sigmas.length, 9);
    timesteps.forEach((t, k) => relClose(scheduler.sigmas[k], sigmaOf(t), 1e-6, `σ[${k}]`));
    assert.equal(scheduler.sigmas[8], 0);
    // leading: the initial noise is √(σmax² + 1)
    relClose(scheduler.initNoiseSigma, Math.sqrt(sigmaOf(876) ** 2 + 1), 1e-6, 'initNoiseSigma');
  });

  test('linspace keeps fractional float32 timesteps and interpolates σ linearly in t', () => {
    const scheduler = euler({ timestep_spacing: 'linspace' }, 3);
    // linspace(0, 999, 3) = 0, 499.5, 999
    assert.deepEqual(scheduler.timesteps, [999, 499.5, 0]);
    relClose(scheduler.sigmas[1], (sigmaOf(499) + sigmaOf(500)) / 2, 1e-6, 'σ(499.5)');
    // linspace and trailing start at σmax itself
    relClose(scheduler.initNoiseSigma, sigmaOf(999), 1e-6, 'initNoiseSigma');
  });

  test('trailing: 1000/6 apart from 999 down', () => {
    const scheduler = euler({ timestep_spacing: 'trailing' }, 6);
    assert.deepEqual(scheduler.timesteps, [999, 832, 666, 499, 332, 166]);
    relClose(scheduler.initNoiseSigma, sigmaOf(999), 1e-6, 'initNoiseSigma');
  });

  test('use_karras_sigmas: ρ = 7 between σ of the first and last timestep, timesteps mapped back', () => {
    const scheduler = euler({ use_karras_sigmas: true });
    const [maxRoot, minRoot] = [sigmaOf(876) ** (1 / 7), sigmaOf(1) ** (1 / 7)];
    for (let k = 0; k < 8; k++) {
      relClose(scheduler.sigmas[k], (maxRoot + (k / 7) * (minRoot - maxRoot)) ** 7, 1e-6, `σ[${k}]`);
      // _sigma_to_t interpolates log σ between training timesteps.
      const t = scheduler.timesteps[k];
      const low = Math.floor(t);
      const logSigma = Math.log(sigmaOf(low)) + (t - low) * (Math.log(sigmaOf(low + 1)) - Math.log(sigmaOf(low)));
      relClose(Math.exp(logSigma), scheduler.sigmas[k], 1e-5, `σ(t[${k}])`);
    }
    assert.ok(Math.abs(scheduler.timesteps[0] - 876) < 1e-3 && Math.abs(scheduler.timesteps[7] - 1) < 1e-3);
    assert.equal(scheduler.sigmas[8], 0);
  });

  test('use_exponential_sigmas (EXPONENTIAL): σ evenly spaced in log between σ of the first and last timestep, as Karras', () => {
    const scheduler = euler({ use_exponential_sigmas: true });
    // numpy: np.exp(np.linspace(log σ(876), log σ(1), 8)), timesteps by _sigma_to_t.
    const sigmas = [7.37185001373291, 3.515097029480364, 1.6760931250153, 0.7992064344633044, 0.3810831960078098, 0.18171075208753812, 0.08664459039422479, 0.04131447896361352];
    const timesteps = [876, 713.0851267876715, 510.48631477007444, 288.25762994698806, 116.54991759867873, 33.84447239713303, 7.626411804760239, 1];
    sigmas.forEach((sigma, k) => relClose(scheduler.sigmas[k], sigma, 1e-6, `σ[${k}]`));
    timesteps.forEach((t, k) => assert.ok(Math.abs(scheduler.timesteps[k] - t) < 1e-3, `t[${k}]: ${scheduler.timesteps[k]} vs ${t}`));
    assert.equal(scheduler.sigmas[8], 0);
    assert.throws(() => euler({ use_exponential_sigmas: true, use_karras_sigmas: true }), SchedulerConfigError);
  });

  test('log_linear: n + 1 σs evenly spaced in log from σ(999) to σ(0), then 0 (as diffusers 0.21.4)', () => {
    const scheduler = euler({ interpolation_type: 'log_linear' }, 5);
    // The timesteps still follow the spacing: 1000 // 5 = 200 → 801, …, 1.
    assert.deepEqual(scheduler.timesteps, [801, 601, 401, 201, 1]);
    assert.equal(scheduler.sigmas.length, 7);
    const ratio = (sigmaOf(0) / sigmaOf(999)) ** (1 / 5);
    for (let k = 0; k <= 5; k++) relClose(scheduler.sigmas[k], sigmaOf(999) * ratio ** k, 1e-5, `σ[${k}]`);
    assert.equal(scheduler.sigmas[6], 0);
  });

  test('scaleModelInput divides by √(σ² + 1)', () => {
    const scheduler = euler();
    const scaled = scheduler.scaleModelInput(x0, 876);
    assertClose(
      scaled,
      x0.map((x) => x / Math.sqrt(sigmaOf(876) ** 2 + 1)),
      1e-7,
    );
  });
});

describe('EulerDiscreteScheduler step', () => {
  for (const type of PREDICTION_TYPES) {
    for (const config of [{}, { use_karras_sigmas: true }, { timestep_spacing: 'trailing' }]) {
      test(`a perfect ${type} model lands on x0 (${JSON.stringify(config)})`, () => {
        const scheduler = euler({ ...config, prediction_type: type });
        const { sigmas } = scheduler;
        const start = x0.map((x, i) => x + sigmas[0] * epsilon[i]);
        const counting = countingNoise();
        const result = denoise(
          scheduler,
          start,
          (input, _t, call) => perfectModel(type, input, alphaProdOfSigma(sigmas[call])),
          { noise: counting.noise },
        );
        assertClose(result, x0, 5e-5);
        // diffusers draws (and, with s_churn = 0, ignores) one noise tensor per step.
        assert.equal(counting.calls(), 8);
      });
    }
  }

  test('one step is x + (x − x̂₀)/σ · (σ_next − σ)', () => {
    const scheduler = euler();
    const { sigmas } = scheduler;
    const modelOutput = epsilon;
    const result = scheduler.step(modelOutput, 876, x0, countingNoise().noise);
    assertClose(
      result,
      x0.map((x, i) => x + modelOutput[i] * (sigmas[1] - sigmas[0])),
      1e-5,
    );
  });
});

describe('EulerDiscreteScheduler img2img', () => {
  test('strength 0.6 of 10 steps: adds σ(501)·ε and steps on from index 4', () => {
    const scheduler = euler({}, 10);
    const tStart = 4;
    assert.equal(scheduler.timesteps[tStart], 501);
    const start = scheduler.addNoise(x0, epsilon, 501);
    assertClose(
      start,
      x0.map((x, i) => x + sigmaOf(501) * epsilon[i]),
      1e-6,
    );
    const seen: number[] = [];
    const counting = countingNoise();
    const result = denoise(
      scheduler,
      start,
      (input, t, call) => {
        seen.push(t);
        if (call === 0) {
          assertClose(
            input,
            start.map((x) => x / Math.sqrt(sigmaOf(501) ** 2 + 1)),
            1e-6,
            'first input scaled with σ(501)',
          );
        }
        return perfectModel('epsilon', input, alphaProdOfSigma(scheduler.sigmas[tStart + call]));
      },
      { tStart, noise: counting.noise },
    );
    assert.deepEqual(seen, [501, 401, 301, 201, 101, 1]);
    assert.equal(counting.calls(), 6);
    assertClose(result, x0, 5e-5);
  });

  test('a timestep that occurs twice starts at its second occurrence', () => {
    // 4 training timesteps, 8 leading steps: 4 // 8 = 0, so every timestep is 0, while log_linear
    // still spaces the σs; the first step must use σ[1].
    const scheduler = new EulerDiscreteScheduler({ num_train_timesteps: 4, interpolation_type: 'log_linear', timestep_spacing: 'leading' });
    scheduler.setTimesteps(8);
    assert.deepEqual(scheduler.timesteps, [0, 0, 0, 0, 0, 0, 0, 0]);
    const sigma = scheduler.sigmas[1];
    assert.notEqual(sigma, scheduler.sigmas[0]);
    assertClose(
      scheduler.scaleModelInput(x0, 0),
      x0.map((x) => x / Math.sqrt(sigma ** 2 + 1)),
      1e-7,
    );
    assert.throws(() => scheduler.addNoise(x0, epsilon, 0), RangeError);
  });

  test('a timestep outside the schedule is refused', () => {
    assert.throws(() => euler().scaleModelInput(x0, 500), RangeError);
  });
});

describe('EulerDiscreteScheduler configuration', () => {
  test('rejects unknown interpolation and spacing values', () => {
    assert.throws(() => new EulerDiscreteScheduler({ interpolation_type: 'cubic' }), SchedulerConfigError);
    assert.throws(() => new EulerDiscreteScheduler({ timestep_spacing: 'karras' }), SchedulerConfigError);
    assert.throws(() => new EulerDiscreteScheduler({ use_karras_sigmas: 'yes' }), SchedulerConfigError);
  });
});
