import { VERSION } from '../version.ts';
import { builder } from './builder.ts';

const DatabaseKind = builder.enumType('DatabaseKind', {
  description: 'Where the history and the queue are kept.',
  values: {
    EMBEDDED: { description: 'PGlite in SDQL_DATA_DIR/db (DATABASE_URL unset).' },
    POSTGRES: { description: 'The Postgres server of DATABASE_URL.' },
  },
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
  }),
});

builder.queryField('system', (t) => t.field({ type: System, description: 'This server: its version and where it keeps files.', resolve: () => ({}) }));
