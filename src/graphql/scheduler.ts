// The samplers a request can name (src/diffusion/schedulers), as a GraphQL enum.
import type { SchedulerName } from '../diffusion/index.ts';
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
    DPMPP_2M_KARRAS: { description: 'DPMSolverMultistepScheduler with Karras sigmas (AUTOMATIC1111: DPM++ 2M Karras).' },
    UNIPC: { description: 'UniPCMultistepScheduler (AUTOMATIC1111: UniPC).' },
  } satisfies Record<SchedulerName, { description: string }>,
});

/** AUTOMATIC1111's names of our samplers and hires upscalers, and ours for its names: the engine's one mapping, for the REST API of src/server/a1111.ts. */
export { A1111_SAMPLERS, BUILTIN_UPSCALERS, schedulerFromA1111 } from '../diffusion/index.ts';
