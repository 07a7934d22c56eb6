// The samplers users pick by name, each built from the model's scheduler_config.json the way
// diffusers' `SchedulerClass.from_config(config, **options)` swaps schedulers on a pipeline.
import { DDIMScheduler } from './ddim.ts';
import { DPMSolverMultistepScheduler } from './dpmsolver-multistep.ts';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral-discrete.ts';
import { EulerDiscreteScheduler } from './euler-discrete.ts';
import { HeunDiscreteScheduler } from './heun-discrete.ts';
import { KDPM2DiscreteScheduler } from './k-dpm-2-discrete.ts';
import { LMSDiscreteScheduler } from './lms-discrete.ts';
import { PNDMScheduler } from './pndm.ts';
import type { Scheduler } from './scheduler.ts';
import { UniPCMultistepScheduler } from './unipc-multistep.ts';

export type { NoiseSource, Scheduler } from './scheduler.ts';
export { SchedulerConfigError } from './scheduler.ts';

export interface SchedulerOptions {
  /** DDIM's η: 0 is deterministic DDIM, 1 adds DDPM-like noise at each step. Ignored by the others. */
  eta?: number;
}

type Config = Record<string, unknown>;

const SCHEDULERS = {
  DDIM: (config: Config, options: SchedulerOptions) => new DDIMScheduler(config, options.eta ?? 0),
  PNDM: (config: Config) => new PNDMScheduler({ ...config, skip_prk_steps: true }),
  LMS: (config: Config) => new LMSDiscreteScheduler(config),
  EULER: (config: Config) => new EulerDiscreteScheduler(config),
  EULER_A: (config: Config) => new EulerAncestralDiscreteScheduler(config),
  HEUN: (config: Config) => new HeunDiscreteScheduler(config),
  DPM2: (config: Config) => new KDPM2DiscreteScheduler(config),
  DPMPP_2M: (config: Config) => new DPMSolverMultistepScheduler(config),
  DPMPP_2M_KARRAS: (config: Config) => new DPMSolverMultistepScheduler({ ...config, use_karras_sigmas: true }),
  UNIPC: (config: Config) => new UniPCMultistepScheduler(config),
} satisfies Record<string, (config: Config, options: SchedulerOptions) => Scheduler>;

export type SchedulerName = keyof typeof SCHEDULERS;
export const SCHEDULER_NAMES = Object.keys(SCHEDULERS) as SchedulerName[];

export function isSchedulerName(name: string): name is SchedulerName {
  return Object.hasOwn(SCHEDULERS, name);
}

/** A scheduler configured from the model's scheduler_config.json (the pipeline calls setTimesteps). */
export function createScheduler(name: SchedulerName, modelConfig: Config, options: SchedulerOptions = {}): Scheduler {
  return SCHEDULERS[name](modelConfig, options);
}
