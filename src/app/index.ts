// The composition root: builds the app's services from the config — the database, the model
// registry, the event bus, the job queue — and starts the jobs (recovery and, unless
// SDQL_WORKER=false, a worker on the engine thread). `sdql serve` (serve.ts) puts HTTP and GraphQL on
// top; `sdql worker` (worker.ts) runs the jobs alone and loads no schema.
import { join } from 'node:path';
import { createAuth, type Auth } from '../auth/index.ts';
import type { Config } from '../config.ts';
import { databaseTarget, holdProcessLock, openDatabase, type Database, type DatabaseTarget } from '../db/index.ts';
import { DiffusionError, EngineThread, MODELS_CACHE_FOLDER, adapterSource, convertedModel, findTaesdDecoder, upscalerFiles } from '../diffusion/index.ts';
import { createEventBus, EventBusError, type EventBus } from '../events/bus.ts';
import type { Topics } from '../graphql/context.ts';
import { Jobs } from '../jobs/index.ts';
import { heartbeatInterval } from '../jobs/queue.ts';
import { Lifecycle, StartError } from '../lifecycle.ts';
import { Registry } from '../registry/index.ts';

export interface App {
  config: Config;
  db: Database;
  registry: Registry;
  events: EventBus<Topics>;
  jobs: Jobs;
  auth: Auth;
  /** Releases everything above, newest first. */
  lifecycle: Lifecycle;
}

export interface AppOptions {
  /** Instead of the one `config` names (tests pass a throwaway database). */
  database?: DatabaseTarget;
  /** Where the app registers its shutdown hooks (a server registers its own before them). */
  lifecycle?: Lifecycle;
}

/** Opens the database, scans the models, connects the event bus; on failure releases what it opened. */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const lifecycle = options.lifecycle ?? new Lifecycle();
  try {
    const db = await openDatabase(options.database ?? databaseTarget(config));
    lifecycle.onShutdown('database', () => db.close());
    if (db.kind === 'postgres') {
      // Without Redis, events stay in this process: it must be the only one on the database.
      const lock = await holdProcessLock(db.connectionString, config.redisUrl ? 'shared' : 'exclusive');
      lifecycle.onShutdown('database lock', () => lock.release());
    }
    const registry = new Registry(db.prisma, config.modelsDir, config.lorasDir);
    await registry.scan().catch((error: Error) => {
      throw new StartError(`cannot scan the models folder: ${error.message}`, { cause: error });
    });
    const events = await createEventBus<Topics>(config.redisUrl, config.redisPrefix).catch((error: unknown) => {
      throw error instanceof EventBusError ? new StartError(error.message, { cause: error }) : error;
    });
    lifecycle.onShutdown('events', () => events.close());
    const jobs = new Jobs(db.prisma, events, config.dataDir);
    const auth = await createAuth(db.prisma, config);
    return { config, db, registry, events, jobs, auth, lifecycle };
  } catch (error) {
    await lifecycle.shutdown();
    throw error;
  }
}

/** Recovers what dead processes left running, then starts this process's worker unless SDQL_WORKER=false. */
export async function startJobs({ config, db, registry, lifecycle, jobs }: App): Promise<void> {
  // The embedded database belongs to this process alone: whatever it shows running was left by a dead one.
  await jobs.startRecovery(config.workerLeaseSeconds * 1000, { exclusive: db.kind === 'pglite' });
  lifecycle.onShutdown('recovery', () => jobs.stopRecovery());
  if (!config.worker) return;
  const engine = new EngineThread({ cacheBudgetBytes: config.modelCacheBytes, batchMemoryBytes: config.batchMemoryBytes });
  lifecycle.onShutdown('engine', () => engine.close());
  await jobs.startWorker({
    engine,
    model: (id) => registry.model(id),
    prepare: async (model, onProgress) => {
      if (!model.checkpoint) return model;
      const sha256 = await registry.modelSha256(model.id);
      if (!sha256) throw new DiffusionError('MODEL_INVALID', `checkpoint ${model.id} cannot be read`);
      return convertedModel(model, sha256, join(config.dataDir, MODELS_CACHE_FOLDER), onProgress);
    },
    modelHash: (id) => registry.modelSha256(id),
    previewDecoder: (model) => findTaesdDecoder(model, config.modelsDir),
    upscalerPath: async (id) => (await upscalerFiles(config.modelsDir)).find((file) => file.id === id)?.path,
    adapters: adapterSource(registry, config.embeddingsDir),
    heartbeatMs: heartbeatInterval(config.workerLeaseSeconds * 1000),
  });
  lifecycle.onShutdown('worker', () => jobs.stopWorker());
}
