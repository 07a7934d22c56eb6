import { LIMITS } from '../diffusion/index.ts';
import { VERSION } from '../version.ts';
import { builder } from './builder.ts';

const DatabaseKind = builder.enumType('DatabaseKind', {
  description: 'Where the history and the queue are kept.',
  values: {
    EMBEDDED: { description: 'PGlite in SDQL_DATA_DIR/db (DATABASE_URL unset).' },
    POSTGRES: { description: 'The Postgres server of DATABASE_URL.' },
  },
});

// So that clients size their requests from the server they talk to rather than a copy of these numbers.
const GenerationLimits = builder.objectRef<typeof LIMITS>('GenerationLimits').implement({
  description: 'What a generation request may ask for on this server; past these, `generate` answers BAD_USER_INPUT.',
  fields: (t) => ({
    minSide: t.exposeInt('minSide', { description: "Smallest width or height in pixels (and at least the model's `vaeScaleFactor`, of which both are multiples)." }),
    maxSide: t.exposeInt('maxSide', { description: 'Largest width or height in pixels.' }),
    maxPixels: t.exposeInt('maxPixels', { description: 'Most pixels of one image (width × height), outpainted area and hires size included.' }),
    minSteps: t.exposeInt('minSteps', { description: 'Fewest denoising steps.' }),
    maxSteps: t.exposeInt('maxSteps', { description: 'Most denoising steps.' }),
    maxImages: t.exposeInt('maxImages', { description: 'Most images of one request (`numImages`).' }),
    maxPromptChars: t.exposeInt('maxPromptChars', { description: 'Most characters of a prompt or negative prompt.' }),
    maxImageBytes: t.exposeInt('maxImageBytes', { description: 'Most bytes of an uploaded image (init image, mask).' }),
    maxInputPixels: t.exposeInt('maxInputPixels', { description: 'Most pixels of an uploaded image once decoded.' }),
  }),
});

const System = builder.objectRef<object>('System').implement({
  description: 'This server.',
  fields: (t) => ({
    version: t.string({ description: 'sdql version (semver; see schema/CHANGELOG.md for what each changed in the schema).', resolve: () => VERSION }),
    nodeVersion: t.string({ description: 'The Node.js version the server runs on.', resolve: () => process.versions.node }),
    database: t.field({ type: DatabaseKind, description: 'The database in use.', resolve: (_s, _a, ctx) => (ctx.db.kind === 'pglite' ? 'EMBEDDED' : 'POSTGRES') }),
    modelsDir: t.string({ description: 'SDQL_MODELS_DIR on the server: where model folders go.', resolve: (_s, _a, ctx) => ctx.config.modelsDir }),
    lorasDir: t.string({ description: 'SDQL_LORAS_DIR on the server: where LoRA files go.', resolve: (_s, _a, ctx) => ctx.config.lorasDir }),
    embeddingsDir: t.string({ description: 'SDQL_EMBEDDINGS_DIR on the server: where textual-inversion embeddings go.', resolve: (_s, _a, ctx) => ctx.config.embeddingsDir }),
    limits: t.field({ type: GenerationLimits, description: 'What a generation request may ask for (sizes, steps, images, uploads).', resolve: () => LIMITS }),
  }),
});

builder.queryField('system', (t) => t.field({ type: System, description: 'This server: its version and where it keeps files.', resolve: () => ({}) }));
