import { LIMITS, ORT_VERSION, type EngineModelStatus } from '../diffusion/index.ts';
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
    maxPixels: t.exposeInt('maxPixels', { description: "Most pixels of one image (width × height), outpainted area and hires size included, that any model allows: a model's own limit is `Model.maxPixels`, lower for some (SD 1.x: 768 × 768)." }),
    minSteps: t.exposeInt('minSteps', { description: 'Fewest denoising steps.' }),
    maxSteps: t.exposeInt('maxSteps', { description: 'Most denoising steps.' }),
    maxImages: t.exposeInt('maxImages', { description: 'Most images of one request (`numImages`).' }),
    maxPromptChars: t.exposeInt('maxPromptChars', { description: 'Most characters of a prompt or negative prompt.' }),
    maxImageBytes: t.exposeInt('maxImageBytes', { description: 'Most bytes of an uploaded image (init image, mask).' }),
    maxInputPixels: t.exposeInt('maxInputPixels', { description: 'Most pixels of an uploaded image once decoded.' }),
  }),
});

const ModelLoadState = builder.enumType('ModelLoadState', {
  description: "Where a model stands in the engine's cache.",
  values: {
    LOADING: { description: 'Its sessions are being created.' },
    READY: { description: 'Loaded: generations on it start at once.' },
    FAILED: { description: 'The last load failed (see `error`); the next generation on it tries again.' },
  },
});

type SubmodelStatus = EngineModelStatus['submodels'][number];

const LoadedSubmodel = builder.objectRef<SubmodelStatus>('LoadedSubmodel').implement({
  description: 'One onnxruntime session of a loaded model.',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'text_encoder, unet, vae_decoder or vae_encoder.' }),
    providers: t.exposeStringList('providers', {
      description: 'The execution providers its session was created with, in order of preference (SDQL_EXECUTION_PROVIDERS, or SDQL_SUBMODEL_PROVIDERS for this submodel); onnxruntime runs each node on the first that supports it.',
    }),
    fromOptimizedCache: t.exposeBoolean('fromOptimizedCache', { description: 'Whether its graph was loaded from the optimised-model cache (SDQL_OPTIMIZED_CACHE) rather than optimised at this load.' }),
  }),
});

const LoadedModel = builder.objectRef<EngineModelStatus>('LoadedModel').implement({
  description: 'A model the engine holds or is loading: the model as it is, or with a LoRA set merged in.',
  fields: (t) => ({
    modelId: t.exposeString('modelId', { description: 'The model\'s id (its folder name).' }),
    loras: t.exposeStringList('loras', { description: 'The LoRAs merged into this copy; empty for the model as it is.' }),
    state: t.field({ type: ModelLoadState, description: 'Loading, ready or failed.', resolve: (m) => m.state }),
    error: t.string({ nullable: true, description: 'Why the load failed (FAILED).', resolve: (m) => m.error ?? null }),
    loadMs: t.int({ nullable: true, description: 'Milliseconds the load took (READY).', resolve: (m) => m.loadMs ?? null }),
    submodels: t.field({ type: [LoadedSubmodel], description: 'Its sessions once READY, with the providers each runs on.', resolve: (m) => m.submodels }),
  }),
});

const EngineInfo = builder.objectRef<{ models(): EngineModelStatus[] }>('EngineInfo').implement({
  description: "This process's generation engine.",
  fields: (t) => ({
    onnxruntimeVersion: t.string({ description: 'The version of onnxruntime-node it runs on.', resolve: () => ORT_VERSION }),
    executionProviders: t.stringList({ description: 'SDQL_EXECUTION_PROVIDERS: the providers submodels run on unless SDQL_SUBMODEL_PROVIDERS places them elsewhere.', resolve: (_e, _a, ctx) => ctx.config.executionProviders }),
    models: t.field({ type: [LoadedModel], description: 'The models loaded and loading now (SDQL_PRELOAD, or generations), and loads that failed.', resolve: (engine) => engine.models() }),
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
    engine: t.field({
      type: EngineInfo,
      nullable: true,
      description: "This process's engine: its providers and the models it holds. Null on a server that runs no generations (SDQL_WORKER=false); `sdql worker` processes report in their logs.",
      resolve: (_s, _a, ctx) => ctx.engine,
    }),
  }),
});

builder.queryField('system', (t) => t.field({ type: System, description: 'This server: its version and where it keeps files.', resolve: () => ({}) }));
