// Model upscalers: the ONNX files of SDQL_MODELS_DIR/upscalers/, for `HiresInput.upscaler`.
import { listUpscalers, type UpscalerInfo } from '../diffusion/index.ts';
import { builder } from './builder.ts';

const Upscaler = builder.objectRef<UpscalerInfo>('Upscaler').implement({
  description: 'An ONNX upscaler model (Real-ESRGAN and similar exports) of `SDQL_MODELS_DIR/upscalers/`: RGB in [0, 1], [1, 3, h, w] in, [1, 3, scale·h, scale·w] out. It runs tile by tile.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The file name without `.onnx`: what `HiresInput.upscaler` takes.' }),
    scale: t.int({ nullable: true, description: 'How many times larger its images come out (measured on a small image); null when it cannot be used.', resolve: (u) => u.scale ?? null }),
    error: t.string({ nullable: true, description: 'Why the file cannot be used, when it cannot.', resolve: (u) => u.error ?? null }),
  }),
});

builder.queryFields((t) => ({
  upscalers: t.field({
    type: [Upscaler],
    description: 'The model upscalers, by id. `HiresInput.upscaler` also takes the built-in `latent`, `latent-nearest` and `lanczos`, which are not listed.',
    resolve: (_r, _a, ctx) => listUpscalers(ctx.config.modelsDir),
  }),
}));
