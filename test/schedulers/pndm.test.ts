import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PNDMScheduler } from '../../src/diffusion/schedulers/pndm.ts';
import { alphasCumprod, SchedulerConfigError } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose } from '../helpers/numeric.ts';
import { denoise, epsilon, normals, perfectModel, SD15_CONFIG, vpSample, x0 } from './sampling-harness.ts';

const cumprod = alphasCumprod({ ...SD15_CONFIG, rescale_betas_zero_snr: false });

function scheduler(config: Record<string, unknown> = {}, steps = 10): PNDMScheduler {
  const pndm = new PNDMScheduler({ ...SD15_CONFIG, set_alpha_to_one: true, ...config });
  pndm.setTimesteps(steps);
  return pndm;
}

/** The DDIM step from t to tPrev with noise prediction e (ᾱ = 1 below t = 0): what formula (9) equals. */
function ddimStep(x: Float32Array, e: Float32Array, t: number, tPrev: number): Float32Array {
  const a = cumprod[t];
  const aPrev = tPrev >= 0 ? cumprod[tPrev] : 1;
  return x.map((v, i) => Math.sqrt(aPrev / a) * v + (Math.sqrt(1 - aPrev) - Math.sqrt((aPrev * (1 - a)) / a)) * e[i]);
}

const mix = (terms: [number, Float32Array][]) =>
  terms[0][1].map((_, i) => terms.reduce((sum, [w, m]) => sum + w * m[i], 0));

const outputs = Array.from({ length: 20 }, (_, k) => normals(x0.length, 100 + k));

describe('PNDMScheduler timesteps', () => {
  test('skip_prk_steps (SD 1.5): leading 1, 101, …, 901 with the second timestep repeated', () => {
    // concat(_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:])[::-1]: n + 1 UNet calls.
    assert.deepEqual(scheduler().timesteps, [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    // linspace: round(linspace(0, 999, 10)) = 0, 111, …, 999
    assert.deepEqual(
      scheduler({ timestep_spacing: 'linspace' }).timesteps,
      [999, 888, 888, 777, 666, 555, 444, 333, 222, 111, 0],
    );
    // trailing: round(arange(1000, 0, -100))[::-1] - 1 = 99, 199, …, 999
    assert.deepEqual(
      scheduler({ timestep_spacing: 'trailing' }).timesteps,
      [999, 899, 899, 799, 699, 599, 499, 399, 299, 199, 99],
    );
  });

  test('PRK warm-up: the last four timesteps and their midpoints (+ 1000 // 10 // 2), then PLMS', () => {
    // 601, 701, 801, 901 → 601 651 701 751 801 851 901 951 → drop 951, each twice, drop the ends, reverse;
    // then _timesteps[:-3] reversed.
    assert.deepEqual(
      scheduler({ skip_prk_steps: false }).timesteps,
      [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1],
    );
    assert.throws(() => scheduler({ skip_prk_steps: false }, 3), RangeError);
  });
});

describe('PNDMScheduler step', () => {
  test('a perfect epsilon model lands on x0 through the n + 1 calls', () => {
    const pndm = scheduler();
    const result = denoise(pndm, vpSample(cumprod[901]), (input, t) => perfectModel('epsilon', input, cumprod[t]));
    assertClose(result, x0, 2e-5);
  });

  test('v_prediction: the combined v is turned into ε at the timestep and sample the step starts from', () => {
    const pndm = scheduler({ prediction_type: 'v_prediction' });
    const start = vpSample(cumprod[901]);
    const steps: Float32Array[] = [];
    const result = denoise(pndm, start, (input, t) => perfectModel('v_prediction', input, cumprod[t]), {
      onStep: (sample) => steps.push(sample),
    });
    const toEpsilon = (v: Float32Array, x: Float32Array, t: number) =>
      v.map((vi, i) => Math.sqrt(cumprod[t]) * vi + Math.sqrt(1 - cumprod[t]) * x[i]);
    const v0 = perfectModel('v_prediction', start, cumprod[901]);
    const v1 = perfectModel('v_prediction', steps[0], cumprod[801]);
    assertClose(steps[0], ddimStep(start, toEpsilon(v0, start, 901), 901, 801), 1e-5, 'call 0');
    // diffusers keeps raw v in its history: the mean of v at 901 and 801 is converted at 901.
    const mean = mix([[0.5, v0], [0.5, v1]]);
    assertClose(steps[1], ddimStep(start, toEpsilon(mean, start, 901), 901, 801), 1e-5, 'call 1');
    // Mixing v across timesteps is not exact, but a perfect model still ends near x0.
    assertClose(result, x0, 0.05);
  });

  test('set_alpha_to_one false ends at ᾱ₀ (SD 1.5)', () => {
    const pndm = new PNDMScheduler(SD15_CONFIG);
    pndm.setTimesteps(10);
    const result = denoise(pndm, vpSample(cumprod[901]), (input, t) => perfectModel('epsilon', input, cumprod[t]));
    assertClose(result, vpSample(cumprod[0]), 2e-5);
  });

  test('PLMS: the first step redone with the mean prediction, then Adams–Bashforth of orders 2, 3, 4', () => {
    const pndm = scheduler();
    const start = vpSample(cumprod[901]);
    const steps: Float32Array[] = [];
    denoise(pndm, start, (_, _t, call) => outputs[call], { onStep: (sample) => steps.push(sample) });
    const [m0, m1, m2, m3, m4, m5] = outputs;
    const expected = [ddimStep(start, m0, 901, 801), ddimStep(start, mix([[0.5, m0], [0.5, m1]]), 901, 801)];
    // The second call's prediction is used once and never kept: the history is m0, m2, m3, …
    expected.push(ddimStep(expected[1], mix([[3 / 2, m2], [-1 / 2, m0]]), 801, 701));
    expected.push(ddimStep(expected[2], mix([[23 / 12, m3], [-16 / 12, m2], [5 / 12, m0]]), 701, 601));
    expected.push(ddimStep(expected[3], mix([[55 / 24, m4], [-59 / 24, m3], [37 / 24, m2], [-9 / 24, m0]]), 601, 501));
    expected.push(ddimStep(expected[4], mix([[55 / 24, m5], [-59 / 24, m4], [37 / 24, m3], [-9 / 24, m2]]), 501, 401));
    expected.forEach((sample, call) => assertClose(steps[call], sample, 1e-4, `call ${call}`));
  });

  test('PRK: four calls per Runge-Kutta step from its start, weights 1/6 1/3 1/3 1/6', () => {
    const pndm = scheduler({ skip_prk_steps: false });
    const start = vpSample(cumprod[901]);
    const steps: Float32Array[] = [];
    denoise(pndm, start, (_, _t, call) => outputs[call], { onStep: (sample) => steps.push(sample) });
    const [m0, m1, m2, m3, m4] = outputs;
    const rk = mix([[1 / 6, m0], [1 / 3, m1], [1 / 3, m2], [1 / 6, m3]]);
    const expected = [
      ddimStep(start, m0, 901, 851),
      ddimStep(start, m1, 901, 851),
      ddimStep(start, m2, 901, 801),
      ddimStep(start, rk, 901, 801),
    ];
    expected.push(ddimStep(expected[3], m4, 801, 751));
    expected.forEach((sample, call) => assertClose(steps[call], sample, 1e-4, `call ${call}`));
    // The first PLMS call (12th, at 601) uses the first prediction of each PRK step.
    const plms = mix([[55 / 24, outputs[12]], [-59 / 24, outputs[8]], [37 / 24, outputs[4]], [-9 / 24, m0]]);
    assertClose(steps[12], ddimStep(steps[11], plms, 601, 501), 1e-4, 'call 12');
  });

  test('PRK with a perfect model lands on x0', () => {
    const pndm = scheduler({ skip_prk_steps: false });
    const result = denoise(pndm, vpSample(cumprod[901]), (input, t) => perfectModel('epsilon', input, cumprod[t]));
    assertClose(result, x0, 2e-5);
  });
});

describe('PNDMScheduler img2img', () => {
  test('strength 0.6 of 10 steps: from timesteps[4] = 601, the warm-up restarts there', () => {
    const pndm = scheduler();
    const tStart = 4;
    assert.equal(pndm.timesteps[tStart], 601);
    const start = pndm.addNoise(x0, epsilon, 601);
    assertClose(start, vpSample(cumprod[601]), 1e-6);
    const seen: number[] = [];
    const steps: Float32Array[] = [];
    denoise(
      pndm,
      start,
      (_, t, call) => {
        seen.push(t);
        return outputs[call];
      },
      { tStart, onStep: (sample) => steps.push(sample) },
    );
    assert.deepEqual(seen, [601, 501, 401, 301, 201, 101, 1]);
    // As in diffusers the counter, not the timestep, drives the warm-up: the call at 501 redoes
    // 601 → 501, and the call at 401 then steps 401 → 301 from that sample.
    const [m0, m1, m2] = outputs;
    const expected = [ddimStep(start, m0, 601, 501), ddimStep(start, mix([[0.5, m0], [0.5, m1]]), 601, 501)];
    expected.push(ddimStep(expected[1], mix([[3 / 2, m2], [-1 / 2, m0]]), 401, 301));
    expected.forEach((sample, call) => assertClose(steps[call], sample, 1e-4, `call ${call}`));
  });
});

describe('PNDMScheduler configuration', () => {
  test('rejects sample prediction, which diffusers does not implement for PNDM', () => {
    assert.throws(() => new PNDMScheduler({ prediction_type: 'sample' }), SchedulerConfigError);
  });

  test('step before setTimesteps fails', () => {
    assert.throws(() => new PNDMScheduler(SD15_CONFIG).step(x0, 901, x0), /setTimesteps/);
  });
});
