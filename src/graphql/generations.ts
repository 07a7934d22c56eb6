// Generations: the request a client submits, its place in the queue, its live progress and its
// history. Resolvers are thin: validation and running live in src/jobs and src/diffusion.
import { DEFAULTS, HIRES_DEFAULTS, INPAINT_DEFAULTS, INPAINT_LIMITS, LIMITS, MAX_HIRES_SCALE, adapterSource, inpaintDefaults, listVaeFiles, upscalerFiles, type ConversionProgress, type InpaintRequest, type Outpaint, type SchedulerName } from '../diffusion/index.ts';
import type { GenerationEvent } from '../jobs/events.ts';
import { PRIORITY_RANGE, inputPathsOf, readStoredRequest, releaseInputs, submitGeneration, type StoredInput } from '../jobs/request.ts';
import { ownedBy, type Viewer } from '../auth/index.ts';
import type { GenerationStatus as GenerationStatusValue, Prisma } from '../db/index.ts';
import { builder } from './builder.ts';
import type { Context } from './context.ts';
import { HIDDEN, ownersOnly } from './ownership.ts';
import { notFound, userError } from './errors.ts';
import { localId } from './ids.ts';
import { ImageInput, InputImage, readImageInput } from './images.ts';
import { PromptSyntax } from './prompts.ts';
import { Scheduler, ScheduleType } from './scheduler.ts';

export const GenerationStatus = builder.enumType('GenerationStatus', {
  // The database's enum, each value described here.
  description: 'Where a generation is in its life: QUEUED, then RUNNING, then one of SUCCEEDED, FAILED and CANCELED, after which it never changes.',
  values: {
    QUEUED: { description: 'Waiting for a worker; see `queuePosition`.' },
    RUNNING: { description: 'Being denoised; see `step` and `totalSteps`, or subscribe to `generationProgress`.' },
    SUCCEEDED: { description: 'Finished; `images` holds the results.' },
    FAILED: { description: 'Stopped by an error; see `error`.' },
    CANCELED: { description: 'Canceled with `cancelGeneration` (`cancelUpscale`) before it finished.' },
  } satisfies Record<GenerationStatusValue, { description: string }>,
});

const LoraInput = builder.inputType('LoraInput', {
  description: 'A LoRA of `loras` to apply, by id, at a weight.',
  fields: (t) => ({
    id: t.id({ required: true, description: 'The LoRA: its `id` or its `tagName`. Unknown: BAD_USER_INPUT.' }),
    weight: t.float({ defaultValue: 1, description: 'Multiplier of its update to the text encoder and the UNet; 1 is as trained, 0 leaves it out, negative inverts it.' }),
  }),
});

const InpaintFill = builder.enumType('InpaintFill', {
  description: 'What the masked area starts from before it is denoised (AUTOMATIC1111\'s "Masked content").',
  values: {
    ORIGINAL: { description: 'The init image as it is ("original").' },
    FILL: { description: 'The colours around the mask, blurred into it ("fill"): the area\'s own content is forgotten.' },
    LATENT_NOISE: { description: 'Random noise (each image\'s seed) in the latents under the mask ("latent noise").' },
    LATENT_NOTHING: { description: 'Zeros in the latents under the mask ("latent nothing").' },
  },
});

const InpaintArea = builder.enumType('InpaintArea', {
  description: 'What is denoised (AUTOMATIC1111\'s "Inpaint area").',
  values: {
    WHOLE_PICTURE: { description: 'The whole image at `width` × `height` ("Whole picture").' },
    ONLY_MASKED: {
      description:
        "The mask's bounding box plus `onlyMaskedPadding`, grown to the aspect of `width` × `height`, cut out of the init image, scaled to `width` × `height` (default: the model's native size), inpainted, scaled back and pasted (\"Only masked\"): a small selection of a large image is painted at the model's resolution. The result has the init image's size.",
    },
  },
});

const OutpaintInput = builder.inputType('OutpaintInput', {
  description: "Pixels to add on each side of the init image, each 0 or more and a multiple of the model's `vaeScaleFactor`.",
  fields: (t) => ({
    left: t.int({ defaultValue: 0, description: 'Pixels added on the left.' }),
    right: t.int({ defaultValue: 0, description: 'Pixels added on the right.' }),
    top: t.int({ defaultValue: 0, description: 'Pixels added at the top.' }),
    bottom: t.int({ defaultValue: 0, description: 'Pixels added at the bottom.' }),
  }),
});

const HiresInput = builder.inputType('HiresInput', {
  description: `AUTOMATIC1111's hires fix (txt2img only): a first pass at the request's size, upscaled, then an img2img second pass at the hires size with the same seeds — the images are the hires size. With the \`lanczos\` upscaler it is exactly a txt2img followed by an img2img of its 8-bit image at the hires size. The hires size is at most the model's \`maxPixels\` (else BAD_USER_INPUT).`,
  fields: (t) => ({
    scale: t.float({ description: `Upscale factor, 1–${MAX_HIRES_SCALE}; each side becomes the request's × scale, rounded down to a multiple of the VAE scale factor ("Hires upscale"). Default ${HIRES_DEFAULTS.scale}, unless width or height is given.` }),
    width: t.int({ description: 'The hires width instead of a scale, a multiple of the VAE scale factor ("Hires resize"); alone, the height keeps the aspect ratio.' }),
    height: t.int({ description: 'The hires height instead of a scale (as width); alone, the width keeps the aspect ratio.' }),
    upscaler: t.id({ description: `How the first pass is upscaled ("Hires upscaler"): \`latent\` (bilinear in latent space, AUTOMATIC1111's Latent), \`latent-nearest\` (Latent (nearest)), \`lanczos\` (the 8-bit first-pass image, Lanczos 3) or an \`id\` of \`upscalers\`. Unknown: BAD_USER_INPUT. Default \`${HIRES_DEFAULTS.upscaler}\`.` }),
    steps: t.int({ description: `Steps of the second pass ("Hires steps"), which runs steps × strength of them as img2img does, ${LIMITS.minSteps}–${LIMITS.maxSteps}. Default: the request's steps.` }),
    strength: t.float({ description: `The second pass's strength ("Denoising strength"), in (0, 1]. Default ${HIRES_DEFAULTS.strength}.` }),
  }),
});

const SizeInput = builder.inputType('SizeInput', {
  description: 'A size in pixels.',
  fields: (t) => ({
    width: t.int({ required: true, description: 'Pixels across.' }),
    height: t.int({ required: true, description: 'Pixels down.' }),
  }),
});

const CropInput = builder.inputType('CropInput', {
  description: 'The top-left corner of a crop, in pixels.',
  fields: (t) => ({
    top: t.int({ required: true, description: 'Pixels from the top.' }),
    left: t.int({ required: true, description: 'Pixels from the left.' }),
  }),
});

/** SDXL's fields: BAD_USER_INPUT on other models. */
const SDXL_ONLY = 'SDXL models only (BAD_USER_INPUT on others).';

const GenerateInput = builder.inputType('GenerateInput', {
  description: `A generation request. Limits: sides from ${LIMITS.minSide} to ${LIMITS.maxSide} px and multiples of the model's \`vaeScaleFactor\`, at most the model's \`maxPixels\` (width × height); steps ${LIMITS.minSteps}–${LIMITS.maxSteps}; numImages 1–${LIMITS.maxImages}; prompts up to ${LIMITS.maxPromptChars} characters.`,
  fields: (t) => ({
    modelId: t.id({ required: true, description: 'A model of `models` that is `supported`: its `id` or its `name` (the folder name). NOT_FOUND when there is none; MODEL_INVALID when it cannot be used.' }),
    prompt: t.string({ required: true, description: 'Read as `promptSyntax` says; its `<lora:name:weight>` tags apply LoRAs, and the names of embeddings (see `embeddings`) apply them.' }),
    negativePrompt: t.string({ description: 'What to steer away from. Default: empty (diffusers\' unconditional prompt).' }),
    promptSyntax: t.field({ type: PromptSyntax, description: `Default ${DEFAULTS.promptSyntax}.` }),
    prompt2: t.string({ description: `The prompt of SDXL's second text encoder (diffusers' \`prompt_2\`), read as \`promptSyntax\` says. Default: the prompt. ${SDXL_ONLY} BAD_USER_INPUT on refiners too (text_encoder_2 alone, which reads the prompt).` }),
    negativePrompt2: t.string({
      description: `The negative prompt of SDXL's second text encoder (diffusers' \`negative_prompt_2\`). Default: the negative prompt. With both negative prompts empty, SDXL models whose model_index.json has force_zeros_for_empty_prompt (the default) take zeros as the unconditional embeddings, as diffusers and AUTOMATIC1111 do. ${SDXL_ONLY} BAD_USER_INPUT on refiners too (text_encoder_2 alone, which reads the prompt).`,
    }),
    originalSize: t.field({ type: SizeInput, description: `SDXL's size conditioning (diffusers' \`original_size\`): the size the model is told the training image had, 1–4096 each side. Default: the image's size (each pass's, with hires). ${SDXL_ONLY}` }),
    cropTopLeft: t.field({ type: CropInput, description: `SDXL's crop conditioning (diffusers' \`crops_coords_top_left\`), 0–4096 each. Default (0, 0): uncropped. ${SDXL_ONLY}` }),
    targetSize: t.field({
      type: SizeInput,
      description: `SDXL's target size conditioning (diffusers' \`target_size\`), 1–4096 each side. Default: the image's size. Refiner-style models (5 time ids) take an aesthetic score instead: 6 for the prompt, 2.5 for the negative prompt (diffusers' defaults). ${SDXL_ONLY}`,
    }),
    width: t.int({ description: `Default: the model's native width (its native size scaled down to the model's \`maxPixels\` when beyond them), or the init image's width rounded down to a multiple of the VAE scale factor.` }),
    height: t.int({ description: "Default: the model's native height (scaled as width), or the init image's (as width)." }),
    steps: t.int({ description: `Denoising steps, ${LIMITS.minSteps}–${LIMITS.maxSteps}. Default ${DEFAULTS.steps}.` }),
    guidanceScale: t.float({ description: `Classifier-free guidance scale (CFG), 0–${LIMITS.maxGuidanceScale}; 1 or less skips the unconditional pass (turbo models run at 0). An LCM-distilled model (a UNet with a \`timestep_cond\` input) never makes that pass: it takes the scale as its guidance embedding. Default ${DEFAULTS.guidanceScale}.` }),
    guidanceRescale: t.float({ description: 'Guidance rescale φ (arXiv:2305.08891), 0–1. Default 0.' }),
    scheduler: t.field({ type: Scheduler, description: `Default ${DEFAULTS.scheduler}.` }),
    scheduleType: t.field({ type: ScheduleType, description: `How the scheduler spaces its noise levels (AUTOMATIC1111's "Schedule type"). Default ${DEFAULTS.scheduleType}; a type the scheduler does not take is BAD_USER_INPUT.` }),
    clipSkip: t.int({
      description: `AUTOMATIC1111's "Clip skip", 1–${LIMITS.maxClipSkip}: the prompts are the text encoder's hidden state this many layers from the end, through its final layer norm (2 is what most anime-style SD 1.x checkpoints expect). Default ${DEFAULTS.clipSkip}, the last layer. SD 2.x and SDXL models ignore it, as AUTOMATIC1111 does (their prompts already come from the penultimate layer), with a warning on the generation.`,
    }),
    seed: t.field({ type: 'SafeInt', description: `Integer 0–${LIMITS.maxSeed}; image i uses seed + i. Default: a random seed, recorded on the generation.` }),
    numImages: t.int({ description: `Images, 1–${LIMITS.maxImages}, denoised as one batch. Default 1.` }),
    eta: t.float({ description: "DDIM's η, 0 to 1: 0 is deterministic. Default 0; ignored by other schedulers." }),
    initImage: t.field({
      type: ImageInput,
      description: "Makes the request img2img (the model must have `canImg2img`). An image of another size than width × height is stretched to it with Lanczos 3 (sharp's `lanczos3`); transparency is flattened onto white.",
    }),
    strength: t.float({ description: `img2img only: how much of the init image to replace, in (0, 1]. Default ${DEFAULTS.strength}; ${INPAINT_DEFAULTS.strength} with a \`mask\` or an \`outpaint\` (diffusers' inpainting default: the masked area starts from noise).` }),
    mask: t.field({
      type: ImageInput,
      description:
        "Makes the request inpainting: white repaints, black keeps (grey: a 1-channel image, RGBA: its alpha when it has transparency, RGB: its luminance). Same size as `initImage`, which it needs; the model must have `canInpaint`. 9-channel inpainting models run diffusers' StableDiffusionInpaintPipeline, others its latent blending; the mask is binarised at 0.5 for the model.",
    }),
    invertMask: t.boolean({ description: `Repaint the black part of \`mask\` instead (AUTOMATIC1111's "Inpaint not masked"). Default ${INPAINT_DEFAULTS.invertMask}.` }),
    maskBlur: t.int({ description: `Gaussian blur of the mask, in pixels (its standard deviation), 0–${INPAINT_LIMITS.maxMaskBlur}, before it is used: softens the seam of \`restoreUnmasked\`. Default ${INPAINT_DEFAULTS.maskBlur} (AUTOMATIC1111's).` }),
    inpaintFill: t.field({ type: InpaintFill, description: `What the masked area starts from. Default ${INPAINT_DEFAULTS.inpaintFill}; ${INPAINT_DEFAULTS.outpaintFill} with an \`outpaint\`.` }),
    inpaintArea: t.field({ type: InpaintArea, description: `Default ${INPAINT_DEFAULTS.inpaintArea}.` }),
    onlyMaskedPadding: t.int({ description: `ONLY_MASKED: pixels of context around the mask's bounding box, 0–${INPAINT_LIMITS.maxPadding}. Default ${INPAINT_DEFAULTS.onlyMaskedPadding}.` }),
    restoreUnmasked: t.boolean({
      description: `After decoding, lay the init image back over the result where the (blurred) mask does not repaint, blended by the mask (for WHOLE_PICTURE the blurred mask doubled, as AUTOMATIC1111 does): no colour shift outside the selection, and with \`maskBlur: 0\` every pixel outside the mask is the init image's own. False gives the pipeline's output as diffusers returns it. Default ${INPAINT_DEFAULTS.restoreUnmasked}.`,
    }),
    outpaint: t.field({
      type: OutpaintInput,
      description:
        'Extends the init image by these pixels: the new area becomes the mask (with `mask` added, when given) and starts as `inpaintFill` says (the edge colours, blurred, by default); `maskBlur` blends it into the original. The result has the larger size (the default `width` × `height`), and the size limits apply to it.',
    }),
    variationSeed: t.field({ type: 'SafeInt', description: `AUTOMATIC1111's variation seed ("Variation seed"), 0–${LIMITS.maxSeed}: image i starts from its seed's noise turned towards the noise of variationSeed + i by AUTOMATIC1111's slerp. Default: a random one when \`variationStrength\` is above 0, recorded in the image's infotext.` }),
    variationStrength: t.float({ description: 'How far towards the variation seed\'s noise ("Variation seed strength"), 0–1: 0 gives the `seed` image, 1 the `variationSeed` image (for deterministic schedulers). Default 0.' }),
    hires: t.field({ type: HiresInput, description: 'AUTOMATIC1111\'s hires fix; txt2img only (with `initImage`: BAD_USER_INPUT). `totalSteps` counts the UNet calls of both passes, and previews continue through both.' }),
    loras: t.field({ type: [LoraInput], description: 'LoRAs to apply, with those of the prompt\'s `<lora:…>` tags. An unknown id, an unusable file or a LoRA trained for another model family is BAD_USER_INPUT.' }),
    vae: t.id({ description: 'An `id` of `vaes`: a separate VAE file that decodes (and, for img2img and inpainting, encodes) the images instead of the model\'s own. Unknown, unusable, or making latents of another shape than the model\'s: BAD_USER_INPUT. Default: the model\'s own.' }),
    priority: t.int({ description: `${PRIORITY_RANGE.min}–${PRIORITY_RANGE.max}; higher runs first, equal ones in submission order. Above 0 needs the ADMIN scope (FORBIDDEN otherwise). Default 0.` }),
    previewEvery: t.int({ description: 'Send a preview image every N steps on `generationProgress` (0: none). Default 1.' }),
  }),
});

const OutpaintSettings = builder.objectRef<Outpaint>('Outpaint').implement({
  description: 'Pixels added on each side of the init image.',
  fields: (t) => ({
    left: t.exposeInt('left', { description: 'Pixels added on the left.' }),
    right: t.exposeInt('right', { description: 'Pixels added on the right.' }),
    top: t.exposeInt('top', { description: 'Pixels added at the top.' }),
    bottom: t.exposeInt('bottom', { description: 'Pixels added at the bottom.' }),
  }),
});

const InpaintSettings = builder.objectRef<InpaintRequest>('InpaintSettings').implement({
  description: "A generation's inpainting and outpainting settings, as it ran (see GenerateInput for each).",
  fields: (t) => ({
    invertMask: t.exposeBoolean('invertMask', { description: 'The black part of the mask was repainted.' }),
    maskBlur: t.exposeInt('maskBlur', { description: 'Gaussian blur of the mask, in pixels.' }),
    inpaintFill: t.field({ type: InpaintFill, description: 'What the masked area started from.', resolve: (s) => s.inpaintFill }),
    inpaintArea: t.field({ type: InpaintArea, description: 'What was denoised.', resolve: (s) => s.inpaintArea }),
    onlyMaskedPadding: t.exposeInt('onlyMaskedPadding', { description: 'ONLY_MASKED: pixels of context around the mask.' }),
    restoreUnmasked: t.exposeBoolean('restoreUnmasked', { description: 'The init image was laid back over the result outside the mask.' }),
    outpaint: t.field({ type: OutpaintSettings, nullable: true, description: 'The pixels added on each side; null without an outpaint.', resolve: (s) => s.outpaint ?? null }),
  }),
});

const SizeSettings = builder.objectRef<{ width: number; height: number }>('Size').implement({
  description: 'A size in pixels.',
  fields: (t) => ({
    width: t.exposeInt('width', { description: 'Pixels across.' }),
    height: t.exposeInt('height', { description: 'Pixels down.' }),
  }),
});

const CropSettings = builder.objectRef<{ top: number; left: number }>('Crop').implement({
  description: 'The top-left corner of a crop, in pixels.',
  fields: (t) => ({
    top: t.exposeInt('top', { description: 'Pixels from the top.' }),
    left: t.exposeInt('left', { description: 'Pixels from the left.' }),
  }),
});

/** An input image of a generation's stored request, when it has one and the request can be read. */
function storedInput(generation: { id: string; request: unknown }, field: 'initImage' | 'mask'): StoredInput | null {
  return readStoredRequest(generation)[field] ?? null;
}

const GenerationFilter = builder.inputType('GenerationFilter', {
  description: 'Which generations of the history to list; a generation must match every field given.',
  fields: (t) => ({
    text: t.string({ description: 'Words found in the prompt or the negative prompt (case-insensitive).' }),
    modelId: t.id({ description: 'Made with this model: its `id` or its `name`.' }),
    status: t.field({ type: [GenerationStatus], description: 'In one of these statuses.' }),
    createdAfter: t.field({ type: 'DateTime', description: 'Submitted at or after this time.' }),
    createdBefore: t.field({ type: 'DateTime', description: 'Submitted before this time.' }),
  }),
});

/** What every row of the queue has, a generation or an upscale: resolved once, here. */
export const Job = builder.prismaInterface('Generation', {
  variant: 'Job',
  description: 'Work of the queue, run by the workers in priority order: a `Generation` or an `Upscale`. Both count towards a token\'s SDQL_MAX_QUEUED.',
  resolveType: (row) => (row.kind === 'UPSCALE' ? 'Upscale' : 'Generation'),
  fields: (t) => ({
    owner: t.exposeString('owner', { description: 'The name of the token that submitted it; "local" when authentication was off.' }),
    status: t.expose('status', { type: GenerationStatus, description: 'Where it is now; its progress subscription (`generationProgress`, `upscaleProgress`) follows it live.' }),
    priority: t.exposeInt('priority', { description: 'Its place in the queue: higher runs first.' }),
    error: t.exposeString('error', { nullable: true, description: 'Why it FAILED; null otherwise.' }),
    queuePosition: t.loadable({
      type: 'Int',
      nullable: true,
      description: '1 for the next to run; null unless QUEUED.',
      // One query for all the generations of a response.
      load: async (ids: string[], ctx) => {
        const positions = await ctx.jobs.queue.positions(ids);
        return ids.map((id) => positions.get(id) ?? null);
      },
      resolve: (g) => (g.status === 'QUEUED' ? g.id : null),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it was submitted.' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true, description: 'When a worker started it; null while QUEUED.' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true, description: 'When it SUCCEEDED, FAILED or was CANCELED.' }),
    durationMs: t.int({
      nullable: true,
      description: 'Milliseconds from start to finish, once finished.',
      resolve: (g) => (g.startedAt && g.finishedAt ? g.finishedAt.getTime() - g.startedAt.getTime() : null),
    }),
  }),
});

builder.prismaNode('Generation', {
  interfaces: [Job],
  description: 'One generation request and its outcome, with every parameter as it ran (defaults resolved).',
  id: { field: 'id', description: 'Global id. `generation(id:)`, `cancelGeneration`, `deleteGeneration` and `generationProgress` take it.' },
  // A token that is not ADMIN finds its own generations only: another's id is NOT_FOUND.
  findUnique: (id, ctx) => ({ id, ...generationsOf(ctx.viewer) }),
  nullable: true,
  fields: (t) => ({
    // Every GENERATE row has a model (only upscales, which are not Generations, have none).
    model: t.relation('model', { onNull: 'error', description: 'The model it runs with (still listed after its folder is removed).' }),
    modelId: t.globalID({ description: "`model`'s global id (`model.name` is the folder name).", resolve: (g) => ({ type: 'Model', id: g.modelId ?? '' }) }),
    modelHash: t.exposeString('modelHash', { nullable: true, description: "The model's short hash when it ran (AUTOMATIC1111's Model hash)." }),
    prompt: t.exposeString('prompt', { description: `The prompt as sent. ${HIDDEN}`, ...ownersOnly('') }),
    negativePrompt: t.exposeString('negativePrompt', { description: `The negative prompt as sent; empty for none. ${HIDDEN}`, ...ownersOnly('') }),
    prompt2: t.string({ nullable: true, description: `SDXL: the second text encoder's prompt as sent; null when it took the prompt. ${HIDDEN}`, resolve: (g) => readStoredRequest(g).prompt2 || null, ...ownersOnly(null) }),
    negativePrompt2: t.string({ nullable: true, description: `SDXL: the second text encoder's negative prompt as sent; null when it took the negative prompt. ${HIDDEN}`, resolve: (g) => readStoredRequest(g).negativePrompt2 || null, ...ownersOnly(null) }),
    originalSize: t.field({ type: SizeSettings, nullable: true, description: "SDXL's original-size conditioning as sent; null: the image's size.", resolve: (g) => readStoredRequest(g).originalSize ?? null }),
    cropTopLeft: t.field({ type: CropSettings, nullable: true, description: "SDXL's crop conditioning as sent; null: (0, 0).", resolve: (g) => readStoredRequest(g).cropTopLeft ?? null }),
    targetSize: t.field({ type: SizeSettings, nullable: true, description: "SDXL's target-size conditioning as sent; null: the image's size.", resolve: (g) => readStoredRequest(g).targetSize ?? null }),
    scheduler: t.field({ type: Scheduler, description: 'The sampler.', resolve: (g) => g.scheduler as SchedulerName }),
    scheduleType: t.field({ type: ScheduleType, description: 'How the sampler spaced its noise levels.', resolve: (g) => readStoredRequest(g).scheduleType ?? 'DEFAULT' }),
    clipSkip: t.int({ description: 'Clip skip: 1 for the text encoder\'s last layer.', resolve: (g) => readStoredRequest(g).clipSkip ?? 1 }),
    vae: t.id({ nullable: true, description: 'The separate VAE file it was sent with (an `id` of `vaes`); null: the model\'s own.', resolve: (g) => readStoredRequest(g).vae ?? null }),
    width: t.exposeInt('width', { description: 'Image width in pixels.' }),
    height: t.exposeInt('height', { description: 'Image height in pixels.' }),
    steps: t.exposeInt('steps', { description: 'Denoising steps asked for (img2img runs `strength` × steps of them).' }),
    guidanceScale: t.exposeFloat('guidanceScale', { description: 'Classifier-free guidance scale (CFG).' }),
    guidanceRescale: t.exposeFloat('guidanceRescale', { description: 'Guidance rescale φ; 0 for none.' }),
    eta: t.exposeFloat('eta', { description: "DDIM's η; other schedulers ignore it." }),
    strength: t.exposeFloat('strength', { nullable: true, description: 'img2img: the share of the init image replaced; null for txt2img.' }),
    initImage: t.field({
      type: InputImage,
      nullable: true,
      description: `The init image it was given; null for txt2img. Null in another owner's generation (as \`queue\` shows them to a token without ADMIN).`,
      resolve: (g) => storedInput(g, 'initImage'),
      ...ownersOnly(null),
    }),
    mask: t.field({
      type: InputImage,
      nullable: true,
      description: `The mask it was given (as sent, before \`invertMask\` and \`maskBlur\`); null without one. Null in another owner's generation (as \`queue\` shows them to a token without ADMIN).`,
      resolve: (g) => storedInput(g, 'mask'),
      ...ownersOnly(null),
    }),
    inpaint: t.field({
      type: InpaintSettings,
      nullable: true,
      description: 'The inpainting and outpainting settings it ran with (defaults resolved); null when it had neither a mask nor an outpaint.',
      resolve: (g) => {
        const stored = readStoredRequest(g);
        return stored.mask || stored.outpaint ? inpaintDefaults({ ...stored, mask: undefined }) : null;
      },
    }),
    seed: t.field({ type: 'SafeInt', description: 'Seed of the first image; image i used seed + i.', resolve: (g) => g.seed }),
    numImages: t.exposeInt('numImages', { description: 'Images in the batch.' }),
    images: t.relation('images', { query: { orderBy: { index: 'asc' } }, description: 'The results, by `index`; empty until SUCCEEDED.' }),
    warnings: t.exposeStringList('warnings', { description: `What did not go as asked without failing it (prompt text past the token limit, …). ${HIDDEN}`, ...ownersOnly([]) }),
    step: t.exposeInt('step', { description: 'UNet calls done so far.' }),
    totalSteps: t.exposeInt('totalSteps', { nullable: true, description: 'UNet calls in all, known from submission (null for generations stored before sdql counted them then): `steps`, except twice that for HEUN and DPM2, img2img\'s `strength` share of it, and fewer where rounded DPM-Solver or UniPC timesteps repeat (KARRAS, EXPONENTIAL) and run once.' }),
  }),
});

const Preview = builder.objectRef<NonNullable<GenerationEvent['preview']>>('Preview').implement({
  description: 'A small live preview of the image being denoised.',
  fields: (t) => ({
    dataUrl: t.exposeString('dataUrl', { description: 'A data: URL (JPEG), at most 256 px on the long side.' }),
    width: t.exposeInt('width', { description: 'Width in pixels.' }),
    height: t.exposeInt('height', { description: 'Height in pixels.' }),
  }),
});

const ModelConversion = builder.objectRef<ConversionProgress>('ModelConversion').implement({
  description: "How far the conversion of a generation's model, a single-file checkpoint, to ONNX has got (once per checkpoint, before its first generation).",
  fields: (t) => ({
    submodel: t.exposeString('submodel', { description: 'The graph being built: text_encoder, unet, vae_encoder or vae_decoder.' }),
    doneBytes: t.field({ type: 'SafeInt', description: 'Bytes of checkpoint weights converted so far.', resolve: (c) => c.doneBytes }),
    totalBytes: t.field({ type: 'SafeInt', description: 'Bytes of checkpoint weights in all.', resolve: (c) => c.totalBytes }),
  }),
});

const GenerationProgress = builder.objectRef<GenerationEvent>('GenerationProgress').implement({
  description: 'A state of one generation: the first event is its state when subscribing, then one per step, then its final status.',
  fields: (t) => ({
    generationId: t.globalID({ description: "The generation's `id`.", resolve: (e) => ({ type: 'Generation', id: e.generationId }) }),
    status: t.field({ type: GenerationStatus, description: 'Its status at this event.', resolve: (e) => e.status }),
    step: t.exposeInt('step', { description: 'UNet calls done so far, as the generation has it (also in the final event).' }),
    totalSteps: t.exposeInt('totalSteps', { nullable: true, description: "UNet calls in all, as the generation's `totalSteps`, in every event from the first (QUEUED, or RUNNING at step 0) to the final one." }),
    imageIndex: t.exposeInt('imageIndex', { description: 'The image of the batch the preview shows (the batch is denoised together).' }),
    etaMs: t.exposeInt('etaMs', { nullable: true, description: 'Estimated milliseconds of denoising left, from the pace so far; null before the first step.' }),
    preview: t.field({ type: Preview, nullable: true, description: 'The image at this step, every `previewEvery` steps; null otherwise.', resolve: (e) => e.preview }),
    error: t.exposeString('error', { nullable: true, description: 'Why it FAILED; null otherwise.' }),
    conversion: t.field({
      type: ModelConversion,
      nullable: true,
      description: 'While RUNNING at step 0 with a checkpoint not yet converted: how far its conversion to ONNX has got; null otherwise.',
      resolve: (e) => e.conversion ?? null,
    }),
  }),
});

const QueueState = builder.objectRef<object>('QueueState').implement({
  description: 'The work waiting and in progress.',
  fields: (t) => ({
    running: t.prismaField({
      type: ['Generation'],
      description: 'Being denoised now, oldest start first.',
      resolve: (query, _s, _a, ctx) => ctx.db.prisma.generation.findMany({ ...query, where: { status: 'RUNNING', kind: 'GENERATE' }, orderBy: { startedAt: 'asc' } }),
    }),
    queued: t.prismaField({
      type: ['Generation'],
      description: 'In the order they will run.',
      resolve: (query, _s, _a, ctx) =>
        ctx.db.prisma.generation.findMany({ ...query, where: { status: 'QUEUED', kind: 'GENERATE' }, orderBy: [{ priority: 'desc' }, { createdAt: 'asc' }, { id: 'asc' }] }),
    }),
  }),
});

/** The generation a `generationId` argument names (global or plain id); NOT_FOUND when there is none or the viewer may not see it. */
async function findGeneration(ctx: Context, id: string | number) {
  const generation = await ctx.db.prisma.generation.findUnique({ where: { id: localId('Generation', id), ...generationsOf(ctx.viewer) } });
  if (!generation) throw notFound('generation', String(id));
  return generation;
}

/** Cancels a queued row at once, or a running one at its next step (waiting a moment for it to stop); CONFLICT when it has ended. */
export async function cancelJob(ctx: Context, row: { id: string; status: GenerationStatusValue }, name: string): Promise<void> {
  if (!(await ctx.jobs.queue.cancel(row.id))) throw userError('CONFLICT', `${name} has already ended (${row.status})`, { status: row.status });
  if (row.status === 'RUNNING') await ctx.jobs.awaitEnd(row.id, 5000);
}

/** Deletes a row that is not running with its image files and its input files (unless another row uses them); CONFLICT while it runs. */
export async function deleteJob(ctx: Context, row: { id: string; status: GenerationStatusValue; request: unknown }, name: string): Promise<void> {
  if (row.status === 'RUNNING') throw userError('CONFLICT', `${name} is running: cancel it first`);
  const images = await ctx.db.prisma.image.findMany({ where: { generationId: row.id }, select: { path: true } });
  const deleted = await ctx.db.prisma.generation.deleteMany({ where: { id: row.id, status: { not: 'RUNNING' } } });
  if (deleted.count === 0) throw userError('CONFLICT', `${name} started running: cancel it first`);
  await ctx.jobs.images.remove(images.map((i) => i.path));
  await releaseInputs(ctx.db.prisma, ctx.jobs.images, inputPathsOf(row));
  ctx.jobs.queue.announce(row.id, 'DELETED');
}

/** The rows that are Generations (not upscales) the viewer may see. */
export const generationsOf = (viewer: Viewer) => ({ kind: 'GENERATE' as const, ...ownedBy(viewer) });

/** The history rows `generations(filter:)` lists. */
function generationsWhere(
  filter: { text?: string | null; modelId?: string | number | null; status?: GenerationStatusValue[] | null; createdAfter?: Date | null; createdBefore?: Date | null } | null | undefined,
  viewer: Viewer,
): Prisma.GenerationWhereInput {
  const where: Prisma.GenerationWhereInput = generationsOf(viewer);
  if (filter?.text) {
    where.OR = [
      { prompt: { contains: filter.text, mode: 'insensitive' } },
      { negativePrompt: { contains: filter.text, mode: 'insensitive' } },
    ];
  }
  if (filter?.modelId) where.modelId = localId('Model', filter.modelId);
  if (filter?.status?.length) where.status = { in: filter.status };
  if (filter?.createdAfter || filter?.createdBefore) where.createdAt = { gte: filter.createdAfter ?? undefined, lt: filter.createdBefore ?? undefined };
  return where;
}

const generationIdArg = (description: string) => ({ required: true as const, description: `The generation's \`id\` (or its plain id: see schema/CHANGELOG.md). ${description}` });

builder.queryFields((t) => ({
  generation: t.prismaField({
    type: 'Generation',
    nullable: true,
    args: { id: t.arg.id(generationIdArg('NOT_FOUND when there is none; BAD_USER_INPUT for the id of another type.')) },
    description: 'A generation by id. NOT_FOUND when there is none.',
    resolve: async (query, _r, { id }, ctx) => {
      const generation = await ctx.db.prisma.generation.findUnique({ ...query, where: { id: localId('Generation', id), ...generationsOf(ctx.viewer) } });
      if (!generation) throw notFound('generation', String(id));
      return generation;
    },
  }),
  generations: t.prismaConnection(
    {
      type: 'Generation',
      cursor: 'id',
      description: "The history, newest first, optionally filtered: the token's own generations, or everyone's for an ADMIN token.",
      args: { filter: t.arg({ type: GenerationFilter, description: 'Only the generations that match it; all of them when absent.' }) },
      resolve: (query, _r, { filter }, ctx) => ctx.db.prisma.generation.findMany({ ...query, where: generationsWhere(filter, ctx.viewer), orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] }),
      totalCount: (_r, { filter }, ctx) => ctx.db.prisma.generation.count({ where: generationsWhere(filter, ctx.viewer) }),
    },
    {
      fields: (c) => ({
        // Pothos adds totalCount without a description; this is the same field, described.
        totalCount: c.int({
          description: 'How many generations match the filter, on every page (one count query, run only when asked for).',
          extensions: { pothosPrismaTotalCount: true },
          resolve: (connection) => (connection as unknown as { totalCount: () => number | Promise<number> }).totalCount(),
        }),
      }),
    },
  ),
  queue: t.field({ type: QueueState, description: "Generations running and waiting: every owner's, with others' prompts hidden from a token without ADMIN.", resolve: () => ({}) }),
}));

builder.mutationFields((t) => ({
  generate: t.prismaField({
    type: 'Generation',
    description:
      'Validates a request, queues it and returns at once (status QUEUED); follow it with `generationProgress`. Needs the GENERATE scope; ' +
      'QUOTA_EXCEEDED when its owner has SDQL_MAX_QUEUED generations and upscales queued already (nothing is stored).',
    authScopes: (_r, { input }) => ((input.priority ?? 0) > 0 ? { admin: true } : { generate: true }),
    args: { input: t.arg({ type: GenerateInput, required: true, description: 'The request; BAD_USER_INPUT names the first field out of range.' }) },
    resolve: async (_query, _r, { input }, ctx) => {
      const model = ctx.registry.model(localId('Model', input.modelId));
      if (!model) throw notFound('model', String(input.modelId));
      const initImage = input.initImage ? await readImageInput(input.initImage, ctx, 'initImage') : undefined;
      const mask = input.mask ? await readImageInput(input.mask, ctx, 'mask') : undefined;
      const { prisma, queue, images } = ctx.jobs;
      const upscalers = async () => (await upscalerFiles(ctx.config.modelsDir)).map((file) => file.id);
      const vaes = () => listVaeFiles(ctx.config.modelsDir);
      return submitGeneration({ prisma, queue, images, adapters: adapterSource(ctx.registry, ctx.config.embeddingsDir), upscalers, vaes }, model, {
        prompt: input.prompt,
        negativePrompt: input.negativePrompt ?? undefined,
        promptSyntax: input.promptSyntax ?? undefined,
        prompt2: input.prompt2 ?? undefined,
        negativePrompt2: input.negativePrompt2 ?? undefined,
        originalSize: input.originalSize ?? undefined,
        cropTopLeft: input.cropTopLeft ?? undefined,
        targetSize: input.targetSize ?? undefined,
        loras: input.loras?.map((l) => ({ id: localId('Lora', l.id), weight: l.weight ?? 1 })),
        vae: input.vae === null || input.vae === undefined ? undefined : String(input.vae),
        width: input.width ?? undefined,
        height: input.height ?? undefined,
        steps: input.steps ?? undefined,
        guidanceScale: input.guidanceScale ?? undefined,
        guidanceRescale: input.guidanceRescale ?? undefined,
        scheduler: input.scheduler ?? undefined,
        scheduleType: input.scheduleType ?? undefined,
        clipSkip: input.clipSkip ?? undefined,
        seed: input.seed ?? undefined,
        numImages: input.numImages ?? undefined,
        eta: input.eta ?? undefined,
        strength: input.strength ?? undefined,
        variationSeed: input.variationSeed ?? undefined,
        variationStrength: input.variationStrength ?? undefined,
        hires: input.hires
          ? {
              scale: input.hires.scale ?? undefined,
              width: input.hires.width ?? undefined,
              height: input.hires.height ?? undefined,
              upscaler: input.hires.upscaler === null || input.hires.upscaler === undefined ? undefined : String(input.hires.upscaler),
              steps: input.hires.steps ?? undefined,
              strength: input.hires.strength ?? undefined,
            }
          : undefined,
        priority: input.priority ?? undefined,
        previewEvery: input.previewEvery ?? undefined,
        initImage,
        mask,
        invertMask: input.invertMask ?? undefined,
        maskBlur: input.maskBlur ?? undefined,
        inpaintFill: input.inpaintFill ?? undefined,
        inpaintArea: input.inpaintArea ?? undefined,
        onlyMaskedPadding: input.onlyMaskedPadding ?? undefined,
        restoreUnmasked: input.restoreUnmasked ?? undefined,
        outpaint: input.outpaint ? { left: input.outpaint.left ?? 0, right: input.outpaint.right ?? 0, top: input.outpaint.top ?? 0, bottom: input.outpaint.bottom ?? 0 } : undefined,
      }, { owner: ctx.viewer.name, maxQueued: ctx.config.maxQueued });
    },
  }),
  cancelGeneration: t.prismaField({
    type: 'Generation',
    description: 'Cancels a queued generation at once, or a running one at its next step. CONFLICT when it has already ended. Needs the GENERATE scope.',
    authScopes: { generate: true },
    args: { id: t.arg.id(generationIdArg('NOT_FOUND when there is none.')) },
    resolve: async (query, _r, { id }, ctx) => {
      const generation = await findGeneration(ctx, id);
      await cancelJob(ctx, generation, `generation ${id}`);
      return ctx.db.prisma.generation.findUniqueOrThrow({ ...query, where: { id: generation.id } });
    },
  }),
  deleteGeneration: t.globalID({
    description:
      'Deletes a generation that is not running, with its image files and its init image and mask (unless another generation uses the same file); returns its `id`. ' +
      'CONFLICT while it runs: cancel it first. Needs the GENERATE scope.',
    authScopes: { generate: true },
    args: { id: t.arg.id(generationIdArg('NOT_FOUND when there is none.')) },
    resolve: async (_r, { id }, ctx) => {
      const generation = await findGeneration(ctx, id);
      await deleteJob(ctx, generation, `generation ${id}`);
      return { type: 'Generation', id: generation.id };
    },
  }),
}));

builder.subscriptionFields((t) => ({
  generationProgress: t.field({
    type: GenerationProgress,
    description: "One generation's progress: its current state first, an event per step with a preview, and its final status, after which the stream ends.",
    args: { id: t.arg.id(generationIdArg('NOT_FOUND when there is none.')) },
    subscribe: async (_r, { id }, ctx) => {
      const generation = await findGeneration(ctx, id);
      return ctx.jobs.progress(generation.id);
    },
    resolve: (event) => event,
  }),
  queue: t.field({
    type: QueueState,
    description: 'The queue now, then again after every change (a generation queued, started, finished, canceled or deleted).',
    subscribe: (_r, _a, ctx) => ctx.jobs.queueChanges(),
    resolve: () => ({}),
  }),
}));
