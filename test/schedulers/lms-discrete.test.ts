import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LMSDiscreteScheduler } from '../../src/diffusion/schedulers/lms-discrete.ts';
import { alphasCumprod } from '../../src/diffusion/schedulers/scheduler.ts';
import { assertClose } from '../helpers/numeric.ts';
import {
  alphaProdOfSigma,
  denoise,
  epsilon,
  normals,
  perfectModel,
  PREDICTION_TYPES,
  SD15_CONFIG,
  x0,
} from './sampling-harness.ts';

const cumprod = alphasCumprod({ ...SD15_CONFIG, rescale_betas_zero_snr: false });
const sigmaOf = (t: number) => Math.sqrt((1 - cumprod[t]) / cumprod[t]);

function lms(config: Record<string, unknown> = {}, steps = 10): LMSDiscreteScheduler {
  const scheduler = new LMSDiscreteScheduler({ ...SD15_CONFIG, ...config });
  scheduler.setTimesteps(steps);
  return scheduler;
}

/**
 * The LMS coefficients of step `index` by Simpson's rule, exact for the cubic Lagrange basis:
 * ∫ from σ[index] to σ[index + 1] of the polynomial that is 1 at σ[index − j], 0 at the other nodes.
 */
function simpsonCoefficients(sigmas: Float32Array, index: number, order: number): number[] {
  const nodes = Array.from({ length: order }, (_, k) => sigmas[index - k]);
  const [a, b] = [sigmas[index], sigmas[index + 1]];
  return nodes.map((node, j) => {
    const basis = (tau: number) =>
      nodes.reduce((prod, other, k) => (k === j ? prod : (prod * (tau - other)) / (node - other)), 1);
    return ((b - a) / 6) * (basis(a) + 4 * basis((a + b) / 2) + basis(b));
  });
}

// A derivative that is a cubic in σ, p(σ) = 0.3 − 0.2σ + 0.05σ² − 0.001σ³, and its antiderivative.
const p = (s: number) => 0.3 - 0.2 * s + 0.05 * s ** 2 - 0.001 * s ** 3;
const P = (s: number) => 0.3 * s - 0.1 * s ** 2 + (0.05 / 3) * s ** 3 - 0.00025 * s ** 4;
const direction = normals(x0.length, 5);
const zeros = new Float32Array(x0.length);

describe('LMSDiscreteScheduler', () => {
  test('timesteps and σs as Euler (leading, SD 1.5: 901, …, 1)', () => {
    const scheduler = lms();
    assert.deepEqual(scheduler.timesteps, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    scheduler.timesteps.forEach((t, k) => assert.ok(Math.abs(scheduler.sigmas[k] / sigmaOf(t) - 1) < 1e-6));
    const karras = lms({ use_karras_sigmas: true });
    assert.ok(Math.abs(karras.sigmas[0] / sigmaOf(901) - 1) < 1e-6);
    assert.ok(Math.abs(karras.sigmas[9] / sigmaOf(1) - 1) < 1e-6);
    assert.notDeepEqual(karras.sigmas, scheduler.sigmas);
  });

  test('coefficients integrate the Lagrange interpolant: order min(index + 1, 4), exact for a cubic from the 4th step', () => {
    const scheduler = lms();
    const { sigmas } = scheduler;
    // From a zero sample an epsilon model output m makes the ODE derivative m, and the step returns the increment.
    scheduler.timesteps.forEach((t, index) => {
      const increment = scheduler.step(
        direction.map((d) => d * p(sigmas[index])),
        t,
        zeros,
      );
      const order = Math.min(index + 1, 4);
      const coefficients = simpsonCoefficients(sigmas, index, order);
      const expected = coefficients.reduce((sum, c, j) => sum + c * p(sigmas[index - j]), 0);
      assertClose(increment, direction.map((d) => d * expected), 1e-5, `step ${index}`);
      if (order === 4) {
        const exact = P(sigmas[index + 1]) - P(sigmas[index]);
        assertClose(increment, direction.map((d) => d * exact), 1e-5, `step ${index} (exact integral)`);
      }
    });
    // Step 0 is Euler's.
    assert.ok(Math.abs(simpsonCoefficients(sigmas, 0, 1)[0] - (sigmas[1] - sigmas[0])) < 1e-9);
  });

  for (const type of PREDICTION_TYPES) {
    test(`a perfect ${type} model lands on x0 without drawing noise`, () => {
      const scheduler = lms({ prediction_type: type });
      const { sigmas } = scheduler;
      const result = denoise(
        scheduler,
        x0.map((x, i) => x + sigmas[0] * epsilon[i]),
        (input, _t, call) => perfectModel(type, input, alphaProdOfSigma(sigmas[call])),
      );
      assertClose(result, x0, 5e-5);
    });
  }

  test('img2img from index 4: its single derivative gets the fourth-order coefficient, as in diffusers', () => {
    const scheduler = lms();
    const { sigmas } = scheduler;
    const tStart = 4;
    const start = scheduler.addNoise(x0, epsilon, scheduler.timesteps[tStart]);
    assertClose(
      start,
      x0.map((x, i) => x + sigmaOf(501) * epsilon[i]),
      1e-6,
    );
    scheduler.scaleModelInput(zeros, 501);
    const increment = scheduler.step(direction, 501, zeros);
    const [c0] = simpsonCoefficients(sigmas, 4, 4);
    assertClose(increment, direction.map((d) => d * c0), 1e-6);
    // That is not Euler's step.
    assert.ok(Math.abs(c0 - (sigmas[5] - sigmas[4])) > 0.01);
  });

  test('setTimesteps forgets the stored derivatives and the step index', () => {
    const scheduler = lms();
    for (const t of scheduler.timesteps.slice(0, 3)) scheduler.step(direction, t, zeros);
    scheduler.setTimesteps(10);
    // A start at index 4 must see only its own derivative, not the three of the earlier run.
    const increment = scheduler.step(direction, 501, zeros);
    const [c0] = simpsonCoefficients(scheduler.sigmas, 4, 4);
    assertClose(increment, direction.map((d) => d * c0), 1e-6);
  });
});
