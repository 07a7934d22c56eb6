// Upscales: an image enlarged by a model upscaler or Lanczos, queued and run as generations are
// (the same queue, quotas, cancellation and files), but their own type: an upscale has no model,
// prompt or sampler, so it is no Generation, and its result is an UpscaleImage, not an Image.
import { LANCZOS, MAX_UPSCALE, UPSCALE_DEFAULTS, listUpscalers, upscaleInfotext } from '../diffusion/index.ts';
import type { GenerationEvent } from '../jobs/events.ts';
import { PRIORITY_RANGE, readStoredUpscale, submitUpscale } from '../jobs/request.ts';
import { ownedBy, type Viewer } from '../auth/index.ts';
import type { GenerationStatus as GenerationStatusValue, Prisma } from '../db/index.ts';
import { builder } from './builder.ts';
import type { Context } from './context.ts';
import { notFound } from './errors.ts';
import { GenerationStatus, Job, cancelJob, deleteJob } from './generations.ts';
import { localId } from './ids.ts';
import { ImageFile, ImageInput, InputImage, readImageInput } from './images.ts';

/** The rows that are upscales the viewer may see. */
const upscalesOf = (viewer: Viewer) => ({ kind: 'UPSCALE' as const, ...ownedBy(viewer) });

const UpscaleImage = builder.prismaNode('Image', {
  variant: 'UpscaleImage',
  interfaces: [ImageFile],
  description: 'The image an upscale produced. A PNG that carries, as AUTOMATIC1111\'s Extras write them, the source image\'s "parameters" text and a "postprocessing" text with the upscale\'s keys.',
  id: { field: 'id', description: 'Global id. `ImageInput.imageId` takes it.' },
  findUnique: (id, ctx) => ({ id, generation: upscalesOf(ctx.viewer) }),
  nullable: true,
  fields: (t) => ({
    parameters: t.exposeString('infotext', { nullable: true, description: "The source image's AUTOMATIC1111 infotext, kept in the result; null when the source carried none." }),
    postprocessing: t.string({
      description: 'AUTOMATIC1111\'s Extras keys for the upscale, as its "postprocessing" text: `Postprocess upscale by: 2, Postprocess upscaler: Lanczos`.',
      select: { generation: true },
      resolve: (image) => upscaleInfotext(readStoredUpscale(image.generation)),
    }),
  }),
});

const Upscale = builder.prismaNode('Generation', {
  variant: 'Upscale',
  interfaces: [Job],
  description:
    "An upscale of an image (`upscale`): queued and run like a generation, a step per tile of the upscaler, one result image. AUTOMATIC1111's Extras \"Upscale\": a model upscaler runs at its own factor, then Lanczos gives `scale`.",
  id: { field: 'id', description: 'Global id. `upscale(id:)`, `cancelUpscale`, `deleteUpscale` and `upscaleProgress` take it.' },
  // As for generations: another owner's upscale is NOT_FOUND to a token without ADMIN.
  findUnique: (id, ctx) => ({ id, ...upscalesOf(ctx.viewer) }),
  nullable: true,
  fields: (t) => ({
    method: t.id({ description: 'The upscaler it runs (`UpscaleInput.upscaler`): `lanczos` or the `id` of a model upscaler of `upscalers`.', resolve: (u) => readStoredUpscale(u).upscaler }),
    scale: t.float({ description: "How many times larger the result is (each side rounded down): as sent, or the upscaler's own.", resolve: (u) => readStoredUpscale(u).scale }),
    source: t.field({ type: InputImage, description: 'The image it upscales, as sent.', resolve: (u) => readStoredUpscale(u).image }),
    width: t.exposeInt('width', { description: "The result's width in pixels." }),
    height: t.exposeInt('height', { description: "The result's height in pixels." }),
    image: t.loadable({
      type: UpscaleImage,
      nullable: true,
      description: 'The result; null until SUCCEEDED.',
      // One query for all the upscales of a response.
      load: async (ids: string[], ctx) => {
        const images = await ctx.db.prisma.image.findMany({ where: { generationId: { in: ids } } });
        return ids.map((id) => images.find((image) => image.generationId === id) ?? null);
      },
      resolve: (u) => (u.status === 'SUCCEEDED' ? u.id : null),
    }),
    step: t.exposeInt('step', { description: 'Tiles done so far.' }),
    totalSteps: t.int({ description: 'Tiles in all, known from submission: the model upscaler runs the image in tiles of 192 px; 1 for `lanczos`.', resolve: (u) => u.totalSteps ?? 1 }),
  }),
});

// Added here: the two types refer to each other.
builder.prismaObjectField(UpscaleImage, 'upscale', (t) => t.relation('generation', { type: Upscale, description: 'The upscale that made it.' }));

const UpscaleInput = builder.inputType('UpscaleInput', {
  description: 'An upscale request.',
  fields: (t) => ({
    image: t.field({ type: ImageInput, required: true, description: 'The image to upscale: any image of the history, or one sent as data or a file.' }),
    upscaler: t.id({ required: true, description: `\`${LANCZOS}\` (Lanczos 3 alone, AUTOMATIC1111's Lanczos) or the \`id\` of a model upscaler of \`upscalers\`. Unknown, or one that cannot be used: BAD_USER_INPUT.` }),
    scale: t.float({
      description: `How many times larger, 1–${MAX_UPSCALE} (AUTOMATIC1111's "Upscale by"): each side becomes the source's × scale, rounded down. A model upscaler runs at its own factor, then Lanczos gives this scale. Default: the upscaler's own; ${UPSCALE_DEFAULTS.lanczosScale} for \`${LANCZOS}\`. A result (or a model upscaler's own output) of more pixels than an input image may have is BAD_USER_INPUT.`,
    }),
    priority: t.int({ description: `${PRIORITY_RANGE.min}–${PRIORITY_RANGE.max}; higher runs first, in the queue generations share. Above 0 needs the ADMIN scope (FORBIDDEN otherwise). Default 0.` }),
  }),
});

const UpscaleFilter = builder.inputType('UpscaleFilter', {
  description: 'Which upscales of the history to list.',
  fields: (t) => ({
    status: t.field({ type: [GenerationStatus], description: 'In one of these statuses.' }),
  }),
});

const UpscaleProgress = builder.objectRef<GenerationEvent>('UpscaleProgress').implement({
  description: 'A state of one upscale: the first event is its state when subscribing, then one per tile, then its final status.',
  fields: (t) => ({
    upscaleId: t.globalID({ description: "The upscale's `id`.", resolve: (e) => ({ type: 'Upscale', id: e.generationId }) }),
    status: t.field({ type: GenerationStatus, description: 'Its status at this event.', resolve: (e) => e.status }),
    step: t.exposeInt('step', { description: 'Tiles done so far.' }),
    totalSteps: t.exposeInt('totalSteps', { nullable: true, description: "Tiles in all, as the upscale's `totalSteps`." }),
    etaMs: t.exposeInt('etaMs', { nullable: true, description: 'Estimated milliseconds left, from the pace so far; null before the first tile.' }),
    error: t.exposeString('error', { nullable: true, description: 'Why it FAILED; null otherwise.' }),
  }),
});

const upscaleIdArg = (description: string) => ({ required: true as const, description: `The upscale's \`id\` (or its plain id). ${description}` });

/** The upscale an `id` argument names; NOT_FOUND when there is none or the viewer may not see it. */
async function findUpscale(ctx: Context, id: string | number, query: { include?: Prisma.GenerationInclude; select?: Prisma.GenerationSelect } = {}) {
  const upscale = await ctx.db.prisma.generation.findUnique({ ...query, where: { id: localId('Upscale', id), ...upscalesOf(ctx.viewer) } });
  if (!upscale) throw notFound('upscale', String(id));
  return upscale;
}

const upscalesWhere = (filter: { status?: GenerationStatusValue[] | null } | null | undefined, viewer: Viewer): Prisma.GenerationWhereInput => ({
  ...upscalesOf(viewer),
  ...(filter?.status?.length && { status: { in: filter.status } }),
});

builder.queryFields((t) => ({
  upscale: t.prismaField({
    type: Upscale,
    nullable: true,
    args: { id: t.arg.id(upscaleIdArg('NOT_FOUND when there is none; BAD_USER_INPUT for the id of another type.')) },
    description: 'An upscale by id. NOT_FOUND when there is none.',
    resolve: (query, _r, { id }, ctx) => findUpscale(ctx, id, query),
  }),
  upscales: t.prismaConnection(
    {
      type: Upscale,
      cursor: 'id',
      description: "The upscales, newest first: the token's own, or everyone's for an ADMIN token. (`generations` never lists them.)",
      args: { filter: t.arg({ type: UpscaleFilter, description: 'Only the upscales that match it; all of them when absent.' }) },
      resolve: (query, _r, { filter }, ctx) => ctx.db.prisma.generation.findMany({ ...query, where: upscalesWhere(filter, ctx.viewer), orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] }),
      totalCount: (_r, { filter }, ctx) => ctx.db.prisma.generation.count({ where: upscalesWhere(filter, ctx.viewer) }),
    },
    {
      fields: (c) => ({
        totalCount: c.int({
          description: 'How many upscales match the filter, on every page (one count query, run only when asked for).',
          extensions: { pothosPrismaTotalCount: true },
          resolve: (connection) => (connection as unknown as { totalCount: () => number | Promise<number> }).totalCount(),
        }),
      }),
    },
  ),
}));

builder.mutationFields((t) => ({
  upscale: t.prismaField({
    type: Upscale,
    description:
      'Checks an upscale, queues it and returns at once (status QUEUED); follow it with `upscaleProgress`. Needs the GENERATE scope; ' +
      'QUOTA_EXCEEDED when its owner has SDQL_MAX_QUEUED generations and upscales queued already (nothing is stored).',
    authScopes: (_r, { input }) => ((input.priority ?? 0) > 0 ? { admin: true } : { generate: true }),
    args: { input: t.arg({ type: UpscaleInput, required: true, description: 'The request; BAD_USER_INPUT names the field that is wrong.' }) },
    resolve: async (_query, _r, { input }, ctx) => {
      const image = await readImageInput(input.image, ctx, 'image');
      const { prisma, queue, images } = ctx.jobs;
      return submitUpscale(
        { prisma, queue, images, listUpscalers: () => listUpscalers(ctx.config.modelsDir) },
        { image, upscaler: String(input.upscaler), scale: input.scale ?? undefined, priority: input.priority ?? undefined },
        { owner: ctx.viewer.name, maxQueued: ctx.config.maxQueued },
      );
    },
  }),
  cancelUpscale: t.prismaField({
    type: Upscale,
    description: 'Cancels a queued upscale at once, or a running one after its current tile. CONFLICT when it has already ended. Needs the GENERATE scope.',
    authScopes: { generate: true },
    args: { id: t.arg.id(upscaleIdArg('NOT_FOUND when there is none.')) },
    resolve: async (query, _r, { id }, ctx) => {
      const upscale = await findUpscale(ctx, id);
      await cancelJob(ctx, upscale, `upscale ${id}`);
      return ctx.db.prisma.generation.findUniqueOrThrow({ ...query, where: { id: upscale.id } });
    },
  }),
  deleteUpscale: t.globalID({
    description: 'Deletes an upscale that is not running, with its result file and its source file (unless a generation or another upscale uses the same file); returns its `id`. CONFLICT while it runs: cancel it first. Needs the GENERATE scope.',
    authScopes: { generate: true },
    args: { id: t.arg.id(upscaleIdArg('NOT_FOUND when there is none.')) },
    resolve: async (_r, { id }, ctx) => {
      const upscale = await findUpscale(ctx, id);
      await deleteJob(ctx, upscale, `upscale ${id}`);
      return { type: 'Upscale', id: upscale.id };
    },
  }),
}));

builder.subscriptionFields((t) => ({
  upscaleProgress: t.field({
    type: UpscaleProgress,
    description: "One upscale's progress: its current state first, an event per tile, and its final status, after which the stream ends.",
    args: { id: t.arg.id(upscaleIdArg('NOT_FOUND when there is none.')) },
    subscribe: async (_r, { id }, ctx) => ctx.jobs.progress((await findUpscale(ctx, id)).id),
    resolve: (event) => event,
  }),
}));
