import { maxPixels } from '../diffusion/index.ts';
import { shortHash } from '../registry/index.ts';
import { builder } from './builder.ts';
import { notFound } from './errors.ts';
import { localId } from './ids.ts';

const ModelFamily = builder.enumType('ModelFamily', {
  description: "The model's architecture, as its own numbers tell it (the text embedding width); never guessed.",
  values: {
    SD1: { description: 'Stable Diffusion 1.x (768-wide CLIP ViT-L text embeddings).' },
    SD2: { description: 'Stable Diffusion 2.x (1024-wide OpenCLIP text embeddings).' },
    SDXL: { description: 'Stable Diffusion XL (two text encoders, 768 + 1280 wide; pooled embeddings and size conditioning).' },
    UNKNOWN: { description: 'Another width, as small test models have; usable when `supported`.' },
  },
});

const Precision = builder.enumType('Precision', {
  description: "Floating-point type of the UNet's inputs (of a checkpoint: of its stored weights; conversion computes in 32-bit floats).",
  values: { FP32: { description: '32-bit floats.' }, FP16: { description: '16-bit floats (half precision).' } },
});

const ModelFormat = builder.enumType('ModelFormat', {
  description: 'How a model is stored in SDQL_MODELS_DIR.',
  values: {
    ONNX: { description: 'A folder in the diffusers/Optimum ONNX layout.' },
    CHECKPOINT: { description: 'A single-file checkpoint (`<name>.safetensors`, LDM layout, with an optional `<name>.yaml`), converted to ONNX once, on first use, into SDQL_DATA_DIR/models-cache/.' },
  },
});

builder.prismaNode('Model', {
  description: 'A model of SDQL_MODELS_DIR: a folder in the diffusers/Optimum ONNX layout, or a single-file checkpoint (see `format`).',
  id: { field: 'id', description: 'Global id of `Model:<name>`. Arguments that take a model (`modelId`, `model(id:)`) take this or the plain `name`.' },
  // node(id:) finds what model(id:) finds: folders present at the last scan. (Model has no relation
  // fields, so Pothos never refetches a loaded model, e.g. a generation's, through this.)
  findUnique: (id) => ({ id, present: true }),
  nullable: true,
  fields: (t) => ({
    name: t.exposeString('name', { description: 'The folder name in SDQL_MODELS_DIR (a checkpoint\'s file name without `.safetensors`): unique, and what scripts type as `modelId` ("sd15").' }),
    family: t.expose('family', { type: ModelFamily, description: 'Its architecture.' }),
    format: t.field({
      type: ModelFormat,
      description: 'A folder or a single-file checkpoint.',
      resolve: (m, _a, ctx) => ctx.registry.model(m.id)?.format ?? 'ONNX',
    }),
    supported: t.exposeBoolean('supported', { description: 'Whether sdql can generate with it: no `error`, and a supported family.' }),
    error: t.exposeString('error', { nullable: true, description: 'What is wrong with the folder, when something is.' }),
    predictionType: t.exposeString('predictionType', { nullable: true, description: 'What the UNet predicts: epsilon, v_prediction or sample.' }),
    nativeWidth: t.exposeInt('nativeWidth', { nullable: true, description: 'Native image width, UNet sample size × VAE scale factor: the default width, scaled down into `maxPixels` when beyond them.' }),
    nativeHeight: t.exposeInt('nativeHeight', { nullable: true, description: 'Native image height, UNet sample size × VAE scale factor: the default height (scaled as the width).' }),
    maxPixels: t.int({
      nullable: true,
      description:
        "Most pixels of one image (width × height) with this model, outpainted area and hires size included (else BAD_USER_INPUT): as many as keep its UNet's largest attention within what SD 1.x's takes at 768 × 768, never more than `system.limits.maxPixels`. 768 × 768 for SD 1.x and 2.x, 1024 × 1024 for SDXL (which has no attention at full resolution). Null for a broken folder or one not present.",
      resolve: (m, _a, ctx) => {
        const info = ctx.registry.model(m.id);
        return info && !info.error ? maxPixels(info) : null;
      },
    }),
    vaeScaleFactor: t.exposeInt('vaeScaleFactor', { nullable: true, description: 'Pixels per latent; image sides must be multiples of it.' }),
    canImg2img: t.exposeBoolean('canImg2img', { description: 'It has a VAE encoder, so it accepts an init image.' }),
    canInpaint: t.exposeBoolean('canInpaint', { description: 'It has a VAE encoder, so it accepts a `mask` and an `outpaint`: a 9-channel inpainting UNet as diffusers\' inpainting pipeline runs it, a plain one by blending the init image\'s latents back outside the mask at every step. A 9-channel model takes nothing else.' }),
    precision: t.expose('precision', { type: Precision, nullable: true, description: 'Of the UNet; null for a broken folder.' }),
    sizeBytes: t.field({ type: 'SafeInt', description: 'Size of all its files.', resolve: (m) => m.sizeBytes }),
    sha256: t.string({
      nullable: true,
      description: "SHA-256 of the UNet's model.onnx (of a checkpoint: of its whole file, as AUTOMATIC1111 hashes checkpoints). Computed on first request (seconds for a large model), then stored.",
      resolve: (m, _a, ctx) => m.unetSha256 ?? ctx.registry.modelSha256(m.id),
    }),
    shortHash: t.string({
      nullable: true,
      description: 'The first 10 hex digits of `sha256`, as AUTOMATIC1111 shows model hashes.',
      resolve: async (m, _a, ctx) => {
        const sha256 = m.unetSha256 ?? (await ctx.registry.modelSha256(m.id));
        return sha256 && shortHash(sha256);
      },
    }),
    scannedAt: t.expose('scannedAt', { type: 'DateTime', description: 'When the folder was last read (`rescanModels`, or start-up).' }),
  }),
});

const ModelScan = builder.objectRef<{ scannedAt: Date }>('ModelScan').implement({
  description: 'The models and LoRAs found by a scan of SDQL_MODELS_DIR and SDQL_LORAS_DIR.',
  fields: (t) => ({
    scannedAt: t.expose('scannedAt', { type: 'DateTime', description: 'When the scan ran.' }),
    models: t.prismaField({
      type: ['Model'],
      description: 'The model folders now, by `name` (as `models`).',
      resolve: (query, _s, _a, ctx) => ctx.db.prisma.model.findMany({ ...query, where: { present: true }, orderBy: { id: 'asc' } }),
    }),
    loras: t.prismaField({
      type: ['Lora'],
      description: 'The LoRA files now, by `tagName` (as `loras`).',
      resolve: (query, _s, _a, ctx) => ctx.db.prisma.lora.findMany({ ...query, where: { present: true }, orderBy: { id: 'asc' } }),
    }),
  }),
});

builder.queryFields((t) => ({
  models: t.prismaField({
    type: ['Model'],
    description:
      'The model folders of SDQL_MODELS_DIR (see `system.modelsDir`), by `name`; broken ones too, with their `error`. ' +
      'Empty? Put a Stable Diffusion ONNX pipeline folder there (README, "Getting models") or run ' +
      '`sdql models create-demo <SDQL_MODELS_DIR>/demo` for a tiny demo model whose images are noise, then call `rescanModels`.',
    resolve: (query, _r, _a, ctx) => ctx.db.prisma.model.findMany({ ...query, where: { present: true }, orderBy: { id: 'asc' } }),
  }),
  model: t.prismaField({
    type: 'Model',
    nullable: true,
    description: 'A model by `id` or `name` (its folder name). NOT_FOUND when there is none.',
    args: { id: t.arg.id({ required: true, description: 'Its `id` or its `name`. NOT_FOUND when there is none; BAD_USER_INPUT for the id of another type.' }) },
    resolve: async (query, _r, { id }, ctx) => {
      const model = await ctx.db.prisma.model.findFirst({ ...query, where: { id: localId('Model', id), present: true } });
      if (!model) throw notFound('model', String(id));
      return model;
    },
  }),
}));

builder.mutationField('rescanModels', (t) =>
  t.field({
    type: ModelScan,
    description: 'Scans SDQL_MODELS_DIR and SDQL_LORAS_DIR again (after adding or removing files) and notifies `modelsChanged`. Needs the ADMIN scope.',
    authScopes: { admin: true },
    resolve: async (_r, _a, ctx) => {
      const scan = await ctx.registry.scan();
      ctx.events.publish('modelsChanged', { scannedAt: scan.scannedAt.toISOString() });
      return scan;
    },
  }),
);

builder.subscriptionField('modelsChanged', (t) =>
  t.field({
    type: ModelScan,
    description: 'An event after every rescan of the models folder.',
    subscribe: (_r, _a, ctx) => ctx.events.subscribe('modelsChanged'),
    resolve: (event) => ({ scannedAt: new Date(event.scannedAt) }),
  }),
);
