// The samplers users pick by name, each built from the model's scheduler_config.json the way
// diffusers' `SchedulerClass.from_config(config, **options)` swaps schedulers on a pipeline.
import { DDIMScheduler } from './ddim.ts';
import { DPMSolverMultistepScheduler } from './dpmsolver-multistep.ts';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral-discrete.ts';
import { EulerDiscreteScheduler } from './euler-discrete.ts';
import { HeunDiscreteScheduler } from './heun-discrete.ts';
import { KDPM2DiscreteScheduler } from './k-dpm-2-discrete.ts';
import { LCMScheduler } from './lcm.ts';
import { LMSDiscreteScheduler } from './lms-discrete.ts';
import { PNDMScheduler } from './pndm.ts';
import type { Scheduler } from './scheduler.ts';
import { UniPCMultistepScheduler } from './unipc-multistep.ts';

export type { NoiseSource, Scheduler } from './scheduler.ts';
import { SchedulerConfigError } from './scheduler.ts';

export { SchedulerConfigError };

/**
 * How the noise levels are spaced: the scheduler's own way (DEFAULT, from the model's config), Karras
 * et al.'s ρ = 7 ramp (diffusers 0.21.4's `use_karras_sigmas`), or evenly in log σ (k-diffusion's
 * get_sigmas_exponential; diffusers 0.21.4 has none, later releases call it `use_exponential_sigmas`
 * and place it where `use_karras_sigmas` goes, which is what the schedulers here do).
 */
export type ScheduleType = 'DEFAULT' | 'KARRAS' | 'EXPONENTIAL';
export const SCHEDULE_TYPES: readonly ScheduleType[] = ['DEFAULT', 'KARRAS', 'EXPONENTIAL'];

export interface SchedulerOptions {
  /** DDIM's η: 0 is deterministic DDIM, 1 adds DDPM-like noise at each step. Ignored by the others. */
  eta?: number;
  scheduleType?: ScheduleType;
}

type Config = Record<string, unknown>;

/** The configuration keys each schedule type sets; DEFAULT leaves the model's. */
const SCHEDULE_CONFIG: Record<ScheduleType, Config> = {
  DEFAULT: {},
  KARRAS: { use_karras_sigmas: true, use_exponential_sigmas: false },
  EXPONENTIAL: { use_karras_sigmas: false, use_exponential_sigmas: true },
};

const SCHEDULERS = {
  DDIM: (config: Config, options: SchedulerOptions) => new DDIMScheduler(config, options.eta ?? 0),
  PNDM: (config: Config) => new PNDMScheduler({ ...config, skip_prk_steps: true }),
  LMS: (config: Config) => new LMSDiscreteScheduler(config),
  EULER: (config: Config) => new EulerDiscreteScheduler(config),
  EULER_A: (config: Config) => new EulerAncestralDiscreteScheduler(config),
  HEUN: (config: Config) => new HeunDiscreteScheduler(config),
  DPM2: (config: Config) => new KDPM2DiscreteScheduler(config),
  DPMPP_2M: (config: Config) => new DPMSolverMultistepScheduler(config),
  DPMPP_2M_KARRAS: (config: Config) => new DPMSolverMultistepScheduler({ ...config, ...SCHEDULE_CONFIG.KARRAS }),
  DPMPP_2M_SDE: (config: Config) => new DPMSolverMultistepScheduler({ ...config, algorithm_type: 'sde-dpmsolver++' }),
  UNIPC: (config: Config) => new UniPCMultistepScheduler(config),
  LCM: (config: Config) => new LCMScheduler(config),
} satisfies Record<string, (config: Config, options: SchedulerOptions) => Scheduler>;

export type SchedulerName = keyof typeof SCHEDULERS;
export const SCHEDULER_NAMES = Object.keys(SCHEDULERS) as SchedulerName[];

export function isSchedulerName(name: string): name is SchedulerName {
  return Object.hasOwn(SCHEDULERS, name);
}

/**
 * The schedule types each sampler takes besides DEFAULT: those whose diffusers 0.21.4 class has
 * `use_karras_sigmas`. DPMPP_2M_KARRAS is DPMPP_2M with KARRAS, so KARRAS alone.
 */
export const SCHEDULE_TYPES_OF: Record<SchedulerName, readonly ScheduleType[]> = {
  DDIM: [],
  PNDM: [],
  LMS: ['KARRAS', 'EXPONENTIAL'],
  EULER: ['KARRAS', 'EXPONENTIAL'],
  EULER_A: [],
  HEUN: ['KARRAS', 'EXPONENTIAL'],
  DPM2: [],
  DPMPP_2M: ['KARRAS', 'EXPONENTIAL'],
  DPMPP_2M_KARRAS: ['KARRAS'],
  DPMPP_2M_SDE: ['KARRAS', 'EXPONENTIAL'],
  UNIPC: ['KARRAS', 'EXPONENTIAL'],
  LCM: [],
};

/** A scheduler configured from the model's scheduler_config.json (the pipeline calls setTimesteps). */
export function createScheduler(name: SchedulerName, modelConfig: Config, options: SchedulerOptions = {}): Scheduler {
  const scheduleType = options.scheduleType ?? 'DEFAULT';
  if (scheduleType !== 'DEFAULT' && !SCHEDULE_TYPES_OF[name].includes(scheduleType)) {
    throw new RangeError(`scheduler ${name} does not take schedule type ${scheduleType}`);
  }
  return SCHEDULERS[name]({ ...modelConfig, ...SCHEDULE_CONFIG[scheduleType] }, options);
}

/**
 * Why the scheduler cannot run `steps` steps with this model's config (LCM takes at most its
 * `original_inference_steps`), or undefined when it can: checked at submission, before the run.
 */
export function stepsRefusal(name: SchedulerName, modelConfig: Config, steps: number): string | undefined {
  try {
    createScheduler(name, modelConfig).setTimesteps(steps);
    return undefined;
  } catch (error) {
    if (error instanceof SchedulerConfigError) return error.message;
    throw error;
  }
}
