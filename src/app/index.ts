// The composition root: builds the app's services from the config — the database, the model
// registry, the event bus, the job queue — and starts the jobs (recovery and, unless
// SDQL_WORKER=false, a worker on the engine thread). `sdql serve` (serve.ts) puts HTTP and GraphQL on
// top; `sdql worker` (worker.ts) runs the jobs alone and loads no schema.
import { join } from 'node:path';
import { createAuth, type Auth } from '../auth/index.ts';
import type { Config } from '../config.ts';
import { databaseTarget, holdProcessLock, openDatabase, type Database, type DatabaseTarget } from '../db/index.ts';
import { DiffusionError, EngineThread, MODELS_CACHE_FOLDER, adapterSource, checkProviders, convertedModel, convertedVae, findTaesdDecoder, listVaeFiles, sha256File, upscalerFiles, type EngineOptions, type GenerationEngine, type RuntimeOptions } from '../diffusion/index.ts';
import { createEventBus, EventBusError, type EventBus } from '../events/bus.ts';
import type { Topics } from '../graphql/context.ts';
import { Jobs } from '../jobs/index.ts';
import { heartbeatInterval } from '../jobs/queue.ts';
import { Lifecycle, StartError } from '../lifecycle.ts';
import { log } from '../log.ts';
import { ModelPulls, Registry } from '../registry/index.ts';

export interface App {
  config: Config;
  db: Database;
  registry: Registry;
  /** Downloads from the Hugging Face Hub that this process runs. */
  pulls: ModelPulls;
  events: EventBus<Topics>;
  jobs: Jobs;
  auth: Auth;
  /** This process's engine, once startJobs has started it (null with SDQL_WORKER=false). */
  engine: Pick<GenerationEngine, 'models'> | null;
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
    const hub = { hubUrl: config.hubUrl, accessToken: config.hfToken ?? undefined };
    const pulls = new ModelPulls(registry, hub, (scannedAt) => events.publish('modelsChanged', { scannedAt: scannedAt.toISOString() }));
    lifecycle.onShutdown('model pulls', () => pulls.close());
    const jobs = new Jobs(db.prisma, events, config.dataDir);
    const auth = await createAuth(db.prisma, config);
    return { config, db, registry, pulls, events, jobs, auth, engine: null, lifecycle };
  } catch (error) {
    await lifecycle.shutdown();
    throw error;
  }
}

/** The engine's options from the config, for the server's engine thread and `sdql generate` alike, once
 * every provider asked for has created a session here: one that cannot is a StartError saying what to
 * install, never a CPU fallback. */
export async function engineOptions(config: Config): Promise<EngineOptions> {
  return {
    cacheBudgetBytes: config.modelCacheBytes ?? undefined,
    batchMemoryBytes: config.batchMemoryBytes ?? undefined,
    vaeTilePixels: config.vaeTilePixels,
    runtime: await engineRuntime(config),
  };
}

async function engineRuntime(config: Config): Promise<RuntimeOptions> {
  await checkProviders([...config.executionProviders, ...Object.values(config.submodelProviders).flat()]).catch((error: Error) => {
    throw new StartError(error.message, { cause: error });
  });
  return {
    executionProviders: config.executionProviders,
    placement: config.submodelProviders,
    optimizedCacheDir: config.optimizedCache ? join(config.dataDir, 'optimized') : undefined,
  };
}

/** Recovers what dead processes left running, then starts this process's worker unless SDQL_WORKER=false. */
export async function startJobs(app: App): Promise<void> {
  const { config, db, registry, lifecycle, jobs } = app;
  // The embedded database belongs to this process alone: whatever it shows running was left by a dead one.
  await jobs.startRecovery(config.workerLeaseSeconds * 1000, { exclusive: db.kind === 'pglite' });
  lifecycle.onShutdown('recovery', () => jobs.stopRecovery());
  if (!config.worker) return;
  const preload = config.preload.map((id) => {
    const model = registry.model(id);
    if (!model) throw new StartError(`SDQL_PRELOAD names model "${id}", which is not a model folder of ${config.modelsDir} (a model's id is its folder's name)`);
    return model;
  });
  const engine = new EngineThread(await engineOptions(config));
  lifecycle.onShutdown('engine', () => engine.close());
  app.engine = engine;
  // In the background: the server answers meanwhile, and system { engine } shows the loads.
  for (const model of preload) {
    engine.preload(model).then(
      () => log.info('model preloaded', { model: model.id }),
      (error: Error) => log.error('model preload failed', { model: model.id, err: error }),
    );
  }
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
    vae: async (id) => {
      const file = (await listVaeFiles(config.modelsDir)).find((v) => v.id === id && !v.error);
      if (!file) return undefined;
      const sha256 = await sha256File(file.path);
      return { fileName: file.fileName, sha256, ...(await convertedVae(file.path, sha256, join(config.dataDir, MODELS_CACHE_FOLDER))) };
    },
    adapters: adapterSource(registry, config.embeddingsDir),
    heartbeatMs: heartbeatInterval(config.workerLeaseSeconds * 1000),
  });
  lifecycle.onShutdown('worker', () => jobs.stopWorker());
}
