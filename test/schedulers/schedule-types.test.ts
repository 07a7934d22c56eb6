// The samplers as requests name them (schedulers/index.ts): each schedule type is the diffusers
// configuration it stands for, and DPMPP_2M_SDE is DPM-Solver++ with algorithm_type "sde-dpmsolver++".
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DPMSolverMultistepScheduler } from '../../src/diffusion/schedulers/dpmsolver-multistep.ts';
import { EulerDiscreteScheduler } from '../../src/diffusion/schedulers/euler-discrete.ts';
import { createScheduler, SCHEDULE_TYPES_OF, SCHEDULER_NAMES, type ScheduleType, type SchedulerName } from '../../src/diffusion/schedulers/index.ts';
import { SD15 } from './ode-fixtures.ts';

const timesteps = (name: SchedulerName, scheduleType: ScheduleType, config: Record<string, unknown> = SD15, steps = 12) => {
  const s = createScheduler(name, config, { scheduleType });
  s.setTimesteps(steps);
  return s.timesteps;
};

describe('schedule types', () => {
  test('KARRAS and EXPONENTIAL are use_karras_sigmas and use_exponential_sigmas of the same class', () => {
    const karras = new EulerDiscreteScheduler({ ...SD15, use_karras_sigmas: true });
    karras.setTimesteps(12);
    assert.deepEqual(timesteps('EULER', 'KARRAS'), karras.timesteps);
    const exponential = new DPMSolverMultistepScheduler({ ...SD15, use_exponential_sigmas: true });
    exponential.setTimesteps(12);
    assert.deepEqual(timesteps('DPMPP_2M', 'EXPONENTIAL'), exponential.timesteps);
  });

  test('DPMPP_2M_KARRAS is DPMPP_2M with KARRAS, whatever its schedule type says', () => {
    assert.deepEqual(timesteps('DPMPP_2M_KARRAS', 'DEFAULT'), timesteps('DPMPP_2M', 'KARRAS'));
    assert.deepEqual(timesteps('DPMPP_2M_KARRAS', 'KARRAS'), timesteps('DPMPP_2M', 'KARRAS'));
    assert.notDeepEqual(timesteps('DPMPP_2M', 'DEFAULT'), timesteps('DPMPP_2M', 'KARRAS'));
  });

  test("DEFAULT keeps the model's own use_karras_sigmas; KARRAS and EXPONENTIAL override it", () => {
    const karrasModel = { ...SD15, use_karras_sigmas: true };
    assert.deepEqual(timesteps('EULER', 'DEFAULT', karrasModel), timesteps('EULER', 'KARRAS'));
    assert.deepEqual(timesteps('EULER', 'EXPONENTIAL', karrasModel), timesteps('EULER', 'EXPONENTIAL'));
  });

  test('each schedule type changes the timesteps of every sampler that takes it, and the others refuse it', () => {
    for (const name of SCHEDULER_NAMES) {
      for (const type of ['KARRAS', 'EXPONENTIAL'] as const) {
        if (!SCHEDULE_TYPES_OF[name].includes(type)) {
          assert.throws(() => createScheduler(name, SD15, { scheduleType: type }), /does not take schedule type/, `${name} ${type}`);
        } else if (name !== 'DPMPP_2M_KARRAS') {
          assert.notDeepEqual(timesteps(name, type), timesteps(name, 'DEFAULT'), `${name} ${type}`);
        }
      }
    }
    // diffusers 0.21.4 has use_karras_sigmas on exactly these of our classes.
    assert.deepEqual(
      SCHEDULER_NAMES.filter((name) => SCHEDULE_TYPES_OF[name].includes('KARRAS')),
      ['LMS', 'EULER', 'HEUN', 'DPMPP_2M', 'DPMPP_2M_KARRAS', 'DPMPP_2M_SDE', 'UNIPC'],
    );
  });

  test('DPMPP_2M_SDE: the timesteps of DPMPP_2M, and one noise tensor drawn at every step, the last included', () => {
    assert.deepEqual(timesteps('DPMPP_2M_SDE', 'DEFAULT'), timesteps('DPMPP_2M', 'DEFAULT'));
    const s = createScheduler('DPMPP_2M_SDE', SD15);
    s.setTimesteps(5);
    let draws = 0;
    let sample: Float32Array = new Float32Array(4).fill(1);
    for (const t of s.timesteps) {
      sample = s.step(new Float32Array(4).fill(0.1), t, sample, () => {
        draws++;
        return new Float32Array(4);
      });
    }
    assert.equal(draws, 5);
    // The deterministic DPM-Solver++ draws none.
    const ode = createScheduler('DPMPP_2M', SD15);
    ode.setTimesteps(5);
    for (const t of ode.timesteps) ode.step(new Float32Array(4), t, new Float32Array(4), () => assert.fail('DPMPP_2M drew noise'));
  });
});
