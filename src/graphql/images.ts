// Images: the results of generations (served over HTTP by src/server/images.ts), images sent in
// as init images, and the parameters a PNG carries (ours or AUTOMATIC1111's).
import { DiffusionError, LIMITS, a1111Selection, formatInfotext, inputImageBytes, parseInfotext, parseSettings, readImageInfo, schedulerFromA1111, type SchedulerName } from '../diffusion/index.ts';
import { ownedBy, type Viewer } from '../auth/index.ts';
import { builder } from './builder.ts';
import type { Context } from './context.ts';
import { notFound, userError } from './errors.ts';
import { localId } from './ids.ts';
import { ScheduleType, Scheduler } from './scheduler.ts';

builder.scalarType('File', {
  description: 'A file sent with the GraphQL multipart request specification (multipart/form-data).',
  serialize: () => {
    throw new Error('File is an input type');
  },
  // yoga hands over its fetch implementation's File, which need not be Node's own class.
  parseValue: (value) => {
    const file = value as Partial<File> | null;
    if (typeof file?.arrayBuffer !== 'function' || typeof file.size !== 'number') throw userError('BAD_USER_INPUT', 'expected a file part of a multipart request');
    return value as File;
  },
});

export const ImageInput = builder.inputType('ImageInput', {
  description: `An image, given in exactly one way. PNG, JPEG or WebP, at most ${LIMITS.maxImageBytes} bytes and ${LIMITS.maxInputPixels} pixels.`,
  fields: (t) => ({
    imageId: t.id({ description: 'An image of the history, an `Image` or an `UpscaleImage`: its `id` (or its plain id: see schema/CHANGELOG.md). NOT_FOUND when there is none.' }),
    dataUrl: t.string({ description: 'A data: URL, e.g. data:image/png;base64,…' }),
    file: t.field({ type: 'File', description: 'A file uploaded with the request (GraphQL multipart request).' }),
  }),
});

interface ImageInputValue {
  imageId?: string | number | null;
  dataUrl?: string | null;
  file?: File | null;
}

/**
 * The bytes of an ImageInput; BAD_USER_INPUT unless exactly one way is given, NOT_FOUND for an unknown
 * imageId. `field`, when given, names the input in the messages of BAD_USER_INPUT.
 */
export async function readImageInput(input: ImageInputValue, ctx: Context, field?: string): Promise<{ bytes: Uint8Array; imageId?: string }> {
  const named = (message: string) => (field ? `${field}: ${message}` : message);
  const given = [input.imageId, input.dataUrl, input.file].filter((v) => v !== undefined && v !== null);
  if (given.length !== 1) throw userError('BAD_USER_INPUT', named(`give exactly one of imageId, dataUrl and file (got ${given.length})`));
  if (input.imageId !== undefined && input.imageId !== null) {
    // A generation's image or an upscale's.
    const image = await ctx.db.prisma.image.findUnique({ where: { id: localId(['Image', 'UpscaleImage'], input.imageId), generation: ownedBy(ctx.viewer) } });
    if (!image) throw notFound('image', String(input.imageId));
    return { bytes: await ctx.jobs.images.read(image.path), imageId: image.id };
  }
  try {
    return { bytes: await inputImageBytes(input.dataUrl ?? input.file!) };
  } catch (error) {
    if (error instanceof DiffusionError && error.code === 'BAD_USER_INPUT') throw userError('BAD_USER_INPUT', named(error.message));
    throw error;
  }
}

/** An input image a stored request refers to (see src/jobs/request.ts). */
interface InputImageValue {
  path: string;
  sha256: string;
  format: string;
  imageId?: string;
}

export const InputImage = builder.objectRef<InputImageValue>('InputImage').implement({
  description: 'An image a generation was given (its init image or its mask), kept while a generation of the history uses it.',
  fields: (t) => ({
    sha256: t.exposeString('sha256', { description: 'SHA-256 of the file as sent (hex).' }),
    format: t.exposeString('format', { description: 'png, jpeg or webp.' }),
    image: t.prismaField({
      type: 'Image',
      nullable: true,
      description: 'The image of the history it was given as (`ImageInput.imageId`); null when it was sent as data or a file, or was an `UpscaleImage` (see `upscaleImage`).',
      resolve: (query, input, _a, ctx) => (input.imageId ? ctx.db.prisma.image.findUnique({ ...query, where: { id: input.imageId, ...generationImages(ctx.viewer) } }) : null),
    }),
    dataUrl: t.string({
      description: 'The file as a data: URL: show it, or send it back as `ImageInput.dataUrl` to reuse it.',
      resolve: async (input, _a, ctx) => `data:image/${input.format};base64,${(await ctx.jobs.images.read(input.path)).toString('base64')}`,
    }),
  }),
});

/** The fields every image file of the history has, a generation's (`Image`) or an upscale's (`UpscaleImage`): resolved once, here. */
export const ImageFile = builder.prismaInterface('Image', {
  variant: 'ImageFile',
  description: 'An image file this server stores and serves: a generation\'s `Image` or an upscale\'s `UpscaleImage`.',
  fields: (t) => ({
    url: t.string({
      description:
        'Where this server serves the file (immutable: cache it). With tokens, the URL is signed (`?exp=…&sig=…`): it works without headers (an `<img>`), ' +
        'for this image only, until `exp` (Unix seconds; SDQL_IMAGE_URL_TTL after it was made, at least).',
      resolve: (image, _a, ctx) => ctx.imageUrl(image),
    }),
    index: t.exposeInt('index', { description: 'Position in its generation, from 0.' }),
    width: t.exposeInt('width', { description: 'Width in pixels.' }),
    height: t.exposeInt('height', { description: 'Height in pixels.' }),
    format: t.exposeString('format', { description: 'png, jpeg or webp.' }),
    bytes: t.exposeInt('bytes', { description: 'Size of the file in bytes.' }),
    sha256: t.exposeString('sha256', { description: 'SHA-256 of the file (hex).' }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it was written.' }),
  }),
});

/** Images of generations only: an upscale's rows of the Image table are `UpscaleImage`s, whose `generation` there is none. */
export const generationImages = (viewer: Viewer) => ({ generation: { kind: 'GENERATE' as const, ...ownedBy(viewer) } });

builder.prismaNode('Image', {
  description: 'An image a generation produced.',
  interfaces: [ImageFile],
  id: { field: 'id', description: 'Global id. `ImageInput.imageId` and `deleteImage` take it.' },
  // As for generations: another owner's image is NOT_FOUND to a token without ADMIN.
  findUnique: (id, ctx) => ({ id, ...generationImages(ctx.viewer) }),
  nullable: true,
  fields: (t) => ({
    seed: t.field({ type: 'SafeInt', description: "The seed it was denoised from: its generation's `seed` + `index`.", resolve: (image) => image.seed }),
    generation: t.relation('generation', { description: 'The generation that made it.' }),
    infotext: t.string({
      description: "The parameters as AUTOMATIC1111 writes them (the PNG's \"parameters\" text).",
      select: { infotext: true, generation: true },
      resolve: (image) => {
        if (image.infotext !== null) return image.infotext;
        // Stored before the text was kept: what can be told from the generation alone.
        const g = image.generation;
        return formatInfotext({
          ...g,
          scheduler: g.scheduler as SchedulerName,
          seed: Number(image.seed),
          strength: g.strength ?? undefined,
          modelHash: g.modelHash ?? undefined,
          modelName: g.modelId ?? undefined,
        });
      },
    }),
  }),
});

interface PngInfoValue {
  parameters: string | null;
  /** AUTOMATIC1111's Extras text ("postprocessing"). */
  postprocessing: string | null;
  prompt: string | null;
  negativePrompt: string | null;
  settings: { key: string; value: string }[];
  request: string | null;
}

const PngInfoSetting = builder.objectRef<{ key: string; value: string }>('PngInfoSetting').implement({
  description: 'One "Key: value" of an AUTOMATIC1111 infotext.',
  fields: (t) => ({
    key: t.exposeString('key', { description: 'The key, e.g. Steps, Sampler, CFG scale.' }),
    value: t.exposeString('value', { description: 'The value as written.' }),
  }),
});

/** A text chunk's JSON, or null when it holds none (a chunk another tool wrote under the same key). */
function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

const setting = (info: PngInfoValue, key: string) => info.settings.find((s) => s.key === key)?.value;
const numberSetting = (info: PngInfoValue, key: string) => {
  const value = Number(setting(info, key));
  return Number.isFinite(value) ? value : null;
};
const sizeSetting = (info: PngInfoValue, axis: 0 | 1, key = 'Size') => {
  const match = /^(\d+)x(\d+)$/.exec(setting(info, key) ?? '');
  return match ? Number(match[axis + 1]) : null;
};

const HIRES = /^(Hires |First pass size)/;
const hasHires = (info: PngInfoValue) => info.settings.some((s) => HIRES.test(s.key));

const PngInfoHires = builder.objectRef<PngInfoValue>('PngInfoHires').implement({
  description: "AUTOMATIC1111's hires fix: a second pass, img2img on the first pass's image upscaled.",
  fields: (t) => ({
    upscale: t.float({ nullable: true, description: 'How much the first pass is upscaled ("Hires upscale").', resolve: (i) => numberSetting(i, 'Hires upscale') }),
    resizeWidth: t.int({ nullable: true, description: 'The width it is resized to instead of upscaled ("Hires resize"); 0 keeps the aspect ratio.', resolve: (i) => sizeSetting(i, 0, 'Hires resize') }),
    resizeHeight: t.int({ nullable: true, description: 'The height of "Hires resize"; 0 keeps the aspect ratio.', resolve: (i) => sizeSetting(i, 1, 'Hires resize') }),
    steps: t.int({ nullable: true, description: 'Steps of the second pass ("Hires steps"); null: as many as the first.', resolve: (i) => numberSetting(i, 'Hires steps') }),
    upscaler: t.string({ nullable: true, description: 'The upscaler ("Hires upscaler"), e.g. Latent or R-ESRGAN 4x+.', resolve: (i) => setting(i, 'Hires upscaler') ?? null }),
    denoisingStrength: t.float({ nullable: true, description: 'The second pass\'s strength ("Denoising strength" beside hires keys).', resolve: (i) => numberSetting(i, 'Denoising strength') }),
    sampler: t.string({ nullable: true, description: 'The second pass\'s sampler ("Hires sampler"); null: the first pass\'s.', resolve: (i) => setting(i, 'Hires sampler') ?? null }),
    prompt: t.string({ nullable: true, description: 'The second pass\'s prompt ("Hires prompt"); null: the prompt.', resolve: (i) => setting(i, 'Hires prompt') ?? null }),
    negativePrompt: t.string({ nullable: true, description: 'The second pass\'s negative prompt ("Hires negative prompt"); null: the negative prompt.', resolve: (i) => setting(i, 'Hires negative prompt') ?? null }),
  }),
});

const PngInfo = builder.objectRef<PngInfoValue>('PngInfo').implement({
  description: "Generation parameters read from an image: AUTOMATIC1111's \"parameters\" infotext (a PNG's text chunk, a JPEG's or WebP's EXIF UserComment; also written by many other tools), and sdql's own request in a PNG.",
  fields: (t) => ({
    parameters: t.exposeString('parameters', { nullable: true, description: 'The infotext as stored.' }),
    prompt: t.exposeString('prompt', { nullable: true, description: 'The prompt of the infotext.' }),
    negativePrompt: t.exposeString('negativePrompt', { nullable: true, description: 'Its "Negative prompt:", when it has one.' }),
    settings: t.field({ type: [PngInfoSetting], description: 'Every "Key: value" of the infotext, in order.', resolve: (i) => i.settings }),
    steps: t.int({ nullable: true, description: 'Steps; null when absent or not a number (as every number field here).', resolve: (i) => numberSetting(i, 'Steps') }),
    sampler: t.string({ nullable: true, description: "AUTOMATIC1111's sampler name.", resolve: (i) => setting(i, 'Sampler') ?? null }),
    scheduleType: t.string({
      nullable: true,
      description: 'The schedule type AUTOMATIC1111 1.10 would run `sampler` with ("Schedule type", with "Automatic" or none resolved to the sampler\'s own; for an old "DPM++ 2M Karras" sampler name, Karras); null for its samplers that ignore it (DDIM, PLMS, UniPC) and for an image without infotext.',
      resolve: (i) => (i.parameters === null ? null : a1111Selection(setting(i, 'Sampler'), setting(i, 'Schedule type')).scheduleType),
    }),
    scheduler: t.field({
      type: Scheduler,
      nullable: true,
      description: 'Our scheduler for `sampler` and `scheduleType`, when one samples alike (DPM++ 2M with Karras is DPMPP_2M_KARRAS); `schedule` is its `scheduleType`.',
      resolve: (i) => schedulerFromA1111(setting(i, 'Sampler'), setting(i, 'Schedule type'))?.scheduler ?? null,
    }),
    schedule: t.field({
      type: ScheduleType,
      nullable: true,
      description: 'The `scheduleType` (GenerateInput\'s) to give with `scheduler`: KARRAS for "Karras", EXPONENTIAL for "Exponential", DEFAULT for the schedules our samplers make from the model\'s config; null when `scheduler` is.',
      resolve: (i) => schedulerFromA1111(setting(i, 'Sampler'), setting(i, 'Schedule type'))?.scheduleType ?? null,
    }),
    clipSkip: t.int({
      nullable: true,
      description: '"Clip skip"; 1 when the infotext has none (AUTOMATIC1111 writes it only above 1); null without infotext.',
      resolve: (i) => (i.parameters === null ? null : (numberSetting(i, 'Clip skip') ?? 1)),
    }),
    guidanceScale: t.float({ nullable: true, description: 'CFG scale.', resolve: (i) => numberSetting(i, 'CFG scale') }),
    seed: t.field({ type: 'SafeInt', nullable: true, description: 'Seed.', resolve: (i) => numberSetting(i, 'Seed') }),
    width: t.int({ nullable: true, description: 'Width in pixels, from Size (WxH).', resolve: (i) => sizeSetting(i, 0) }),
    height: t.int({ nullable: true, description: 'Height in pixels, from Size (WxH).', resolve: (i) => sizeSetting(i, 1) }),
    modelHash: t.string({ nullable: true, description: "Model hash: the model's short hash.", resolve: (i) => setting(i, 'Model hash') ?? null }),
    model: t.string({ nullable: true, description: "Model: the model's name where the image was made (for sdql, a model's `name`).", resolve: (i) => setting(i, 'Model') ?? null }),
    strength: t.float({
      nullable: true,
      description: "img2img's strength (\"Denoising strength\"); null beside hires keys, where it is the hires pass's.",
      resolve: (i) => (hasHires(i) ? null : numberSetting(i, 'Denoising strength')),
    }),
    hires: t.field({ type: PngInfoHires, nullable: true, description: "AUTOMATIC1111's hires-fix settings, when the infotext has them.", resolve: (i) => (hasHires(i) ? i : null) }),
    postprocessing: t.field({
      type: [PngInfoSetting],
      description: 'The "Key: value" settings of AUTOMATIC1111\'s Extras ("postprocessing" text), in order: `Postprocess upscale by`, `Postprocess upscaler`, …; empty when the image has none.',
      resolve: (i) => Object.entries(i.postprocessing === null ? {} : parseSettings(i.postprocessing)).map(([key, value]) => ({ key, value })),
    }),
    request: t.exposeString('request', {
      nullable: true,
      description: "sdql's full request as a string of JSON (PNGs made by sdql).",
      deprecationReason: 'Use `requestJson`, the same request as a JSON value.',
    }),
    requestJson: t.field({
      type: 'JSON',
      nullable: true,
      description: "sdql's full request as a JSON value (PNGs made by sdql): GenerateInput's fields as sent, with the seed of this image and its generation's id; null when the image has no readable `sdql` chunk.",
      resolve: (i) => parseJson(i.request),
    }),
  }),
});

builder.queryField('pngInfo', (t) =>
  t.field({
    type: PngInfo,
    description: "Reads the generation parameters an image carries, as AUTOMATIC1111's PNG Info does: a PNG's text chunks, a JPEG's or WebP's EXIF UserComment. Fields are null when the image has none.",
    args: { image: t.arg({ type: ImageInput, required: true, description: 'The image: PNG, JPEG or WebP.' }) },
    resolve: async (_r, { image }, ctx) => {
      const { bytes } = await readImageInput(image, ctx);
      const texts = await readImageInfo(bytes);
      const parameters = texts.parameters ?? null;
      const parsed = parameters === null ? null : parseInfotext(parameters);
      return {
        parameters,
        prompt: parsed?.prompt ?? null,
        negativePrompt: parsed?.negativePrompt ?? null,
        settings: Object.entries(parsed?.settings ?? {}).map(([key, value]) => ({ key, value })),
        postprocessing: texts.postprocessing ?? null,
        request: texts.sdql ?? null,
      };
    },
  }),
);

builder.mutationField('deleteImage', (t) =>
  t.globalID({
    description: 'Deletes an image and its file; returns its `id`. Needs the GENERATE scope.',
    authScopes: { generate: true },
    args: { id: t.arg.id({ required: true, description: "The image's `id` (or its plain id: see schema/CHANGELOG.md). NOT_FOUND when there is none." }) },
    resolve: async (_r, { id }, ctx) => {
      const image = await ctx.db.prisma.image.findUnique({ where: { id: localId('Image', id), ...generationImages(ctx.viewer) } });
      if (!image) throw notFound('image', String(id));
      await ctx.db.prisma.image.delete({ where: { id: image.id } });
      await ctx.jobs.images.remove([image.path]);
      return { type: 'Image', id: image.id };
    },
  }),
);
