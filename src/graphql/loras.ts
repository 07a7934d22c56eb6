import { shortHash } from '../registry/index.ts';
import { builder } from './builder.ts';
import { notFound } from './errors.ts';
import { localId } from './ids.ts';

builder.prismaNode('Lora', {
  description: 'A LoRA file (.safetensors) of SDQL_LORAS_DIR, described from its header.',
  id: { field: 'id', description: 'Global id of `Lora:<tagName>`. `lora(id:)` and `LoraInput.id` take this or the plain `tagName`.' },
  // As for Model: node(id:) finds what lora(id:) finds, files present at the last scan.
  findUnique: (id) => ({ id, present: true }),
  nullable: true,
  fields: (t) => ({
    tagName: t.exposeString('id', { description: 'The file name without `.safetensors`: the name `<lora:tagName:weight>` tags call it by.' }),
    name: t.exposeString('name', { description: 'ss_output_name from the training metadata, else `tagName`.' }),
    error: t.exposeString('error', { nullable: true, description: 'Why the file cannot be used, when it cannot.' }),
    sizeBytes: t.field({ type: 'SafeInt', description: 'Size of the file in bytes.', resolve: (l) => l.sizeBytes }),
    sha256: t.string({
      nullable: true,
      description: 'SHA-256 of the whole file. Computed on first request, then stored.',
      resolve: (l, _a, ctx) => l.sha256 ?? ctx.registry.loraSha256(l.id),
    }),
    shortHash: t.string({
      nullable: true,
      description: 'The first 10 hex digits of `sha256` (AUTOMATIC1111\'s "AutoV2" hash).',
      resolve: async (l, _a, ctx) => {
        const sha256 = l.sha256 ?? (await ctx.registry.loraSha256(l.id));
        return sha256 && shortHash(sha256);
      },
    }),
    baseModelVersion: t.exposeString('baseModelVersion', { nullable: true, description: 'ss_base_model_version: sd_v1, sd_v2, sdxl_base_v1-0, …' }),
    networkDim: t.exposeInt('networkDim', { nullable: true, description: 'ss_network_dim: the rank.' }),
    networkAlpha: t.exposeFloat('networkAlpha', { nullable: true, description: 'ss_network_alpha.' }),
    triggerWords: t.stringList({
      description: 'Tags of the training captions (ss_tag_frequency), most frequent first.',
      args: { first: t.arg.int({ description: 'At most this many.' }) },
      resolve: (l, { first }) => (typeof first === 'number' ? l.triggerWords.slice(0, Math.max(0, first)) : l.triggerWords),
    }),
    scannedAt: t.expose('scannedAt', { type: 'DateTime', description: 'When the file was last read (`rescanModels`, or start-up).' }),
  }),
});

builder.queryFields((t) => ({
  loras: t.prismaField({
    type: ['Lora'],
    description: 'The LoRA files of SDQL_LORAS_DIR (see `system.lorasDir`), by `tagName`; invalid ones too, with their `error`.',
    resolve: (query, _r, _a, ctx) => ctx.db.prisma.lora.findMany({ ...query, where: { present: true }, orderBy: { id: 'asc' } }),
  }),
  lora: t.prismaField({
    type: 'Lora',
    nullable: true,
    description: 'A LoRA by `id` or `tagName`. NOT_FOUND when there is none.',
    args: { id: t.arg.id({ required: true, description: 'Its `id` or its `tagName`. NOT_FOUND when there is none; BAD_USER_INPUT for the id of another type.' }) },
    resolve: async (query, _r, { id }, ctx) => {
      const lora = await ctx.db.prisma.lora.findFirst({ ...query, where: { id: localId('Lora', id), present: true } });
      if (!lora) throw notFound('LoRA', String(id));
      return lora;
    },
  }),
}));
