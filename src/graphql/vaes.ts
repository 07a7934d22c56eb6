// Separate VAE files: the safetensors files of SDQL_MODELS_DIR/vae/, for `GenerateInput.vae`.
import { listVaeFiles, type VaeFile } from '../diffusion/index.ts';
import { builder } from './builder.ts';

const Vae = builder.objectRef<VaeFile>('Vae').implement({
  description:
    'A VAE file of `SDQL_MODELS_DIR/vae/` (AUTOMATIC1111\'s models/VAE files: the LDM layout, with or without `first_stage_model.`, or diffusers\' AutoencoderKL names), converted to ONNX on its first use.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The file name without `.safetensors`: what `GenerateInput.vae` takes.' }),
    sizeBytes: t.field({ type: 'SafeInt', description: 'Size of the file in bytes.', resolve: (v) => v.sizeBytes }),
    latentChannels: t.int({ nullable: true, description: 'Channels of the latents it makes (4 for SD 1.x/2.x); null when it cannot be used.', resolve: (v) => v.latentChannels ?? null }),
    error: t.string({ nullable: true, description: 'Why the file cannot be used, when it cannot.', resolve: (v) => v.error ?? null }),
  }),
});

builder.queryFields((t) => ({
  vaes: t.field({ type: [Vae], description: 'The separate VAE files, by id.', resolve: (_r, _a, ctx) => listVaeFiles(ctx.config.modelsDir) }),
}));
