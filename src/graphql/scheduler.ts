// The samplers a request can name (src/diffusion/schedulers) and how they space their noise levels, as GraphQL enums.
import type { ScheduleType as ScheduleTypeValue, SchedulerName } from '../diffusion/index.ts';
import { builder } from './builder.ts';

export const Scheduler = builder.enumType('Scheduler', {
  description: "Samplers, as diffusers' scheduler classes configured from the model's scheduler_config.json.",
  values: {
    DDIM: { description: 'DDIMScheduler (AUTOMATIC1111: DDIM); `eta` > 0 adds noise.' },
    PNDM: { description: 'PNDMScheduler without PRK steps (AUTOMATIC1111: PLMS).' },
    LMS: { description: 'LMSDiscreteScheduler (AUTOMATIC1111: LMS).' },
    EULER: { description: 'EulerDiscreteScheduler (AUTOMATIC1111: Euler).' },
    EULER_A: { description: 'EulerAncestralDiscreteScheduler (AUTOMATIC1111: Euler a).' },
    HEUN: { description: 'HeunDiscreteScheduler: two UNet calls per step (AUTOMATIC1111: Heun).' },
    DPM2: { description: 'KDPM2DiscreteScheduler: two UNet calls per step (AUTOMATIC1111: DPM2).' },
    DPMPP_2M: { description: 'DPMSolverMultistepScheduler (AUTOMATIC1111: DPM++ 2M).' },
    DPMPP_2M_KARRAS: { description: 'DPMPP_2M with `scheduleType` KARRAS, under the name requests have always used (AUTOMATIC1111: DPM++ 2M with schedule type Karras).' },
    DPMPP_2M_SDE: {
      description: 'DPMSolverMultistepScheduler with algorithm_type "sde-dpmsolver++": draws noise at every step, from each image\'s generator in diffusers\' order (AUTOMATIC1111: DPM++ 2M SDE, whose noise differs).',
    },
    UNIPC: { description: 'UniPCMultistepScheduler (AUTOMATIC1111: UniPC).' },
    LCM: {
      description:
        "LCMScheduler of diffusers v0.40.0, for latent-consistency models and LCM-LoRAs (2–8 steps, guidanceScale 1–2): its steps are taken from the model's `original_inference_steps` schedule, and every step but the last draws noise (AUTOMATIC1111: LCM).",
    },
  } satisfies Record<SchedulerName, { description: string }>,
});

export const ScheduleType = builder.enumType('ScheduleType', {
  description:
    "How the scheduler spaces its noise levels (AUTOMATIC1111's \"Schedule type\"). KARRAS and EXPONENTIAL apply to LMS, EULER, HEUN, DPMPP_2M, DPMPP_2M_SDE and UNIPC (the samplers whose diffusers 0.21.4 class has `use_karras_sigmas`; DPMPP_2M_KARRAS takes KARRAS only); for the others they are BAD_USER_INPUT.",
  values: {
    DEFAULT: { description: "The scheduler's own spacing, from the model's scheduler_config.json (its `timestep_spacing`, and `use_karras_sigmas` where set)." },
    KARRAS: {
      description:
        "Karras et al.'s noise levels (ρ = 7), as diffusers 0.21.4's `use_karras_sigmas`: for LMS, EULER and HEUN between the σ of the first and last spaced timestep, with fractional timesteps; for DPMPP_2M, DPMPP_2M_SDE and UNIPC over the whole training range, the timesteps rounded and repeats dropped (so `totalSteps` may be less than `steps`).",
    },
    EXPONENTIAL: {
      description:
        "Noise levels evenly spaced in log σ, k-diffusion's get_sigmas_exponential (AUTOMATIC1111: Exponential). diffusers 0.21.4 has no such schedule: sdql places it where that release places Karras sigmas (later diffusers' `use_exponential_sigmas`), the same end points and rounding as KARRAS.",
    },
  } satisfies Record<ScheduleTypeValue, { description: string }>,
});

/** AUTOMATIC1111's names of our samplers and hires upscalers, and ours for its names: the engine's one mapping, for the REST API of src/server/a1111.ts. */
export { A1111_SAMPLERS, BUILTIN_UPSCALERS, schedulerFromA1111 } from '../diffusion/index.ts';
