// `sdql worker` assembled: the app and its jobs, without HTTP or the GraphQL schema.
import type { Config } from '../config.ts';
import { log } from '../log.ts';
import { createApp, startJobs, type App, type AppOptions } from './index.ts';

export async function startWorker(config: Config, options: Omit<AppOptions, 'lifecycle'> = {}): Promise<App> {
  const app = await createApp({ ...config, worker: true }, options);
  try {
    await startJobs(app);
  } catch (error) {
    await app.lifecycle.shutdown();
    throw error;
  }
  log.info('sdql worker is ready', { modelsDir: config.modelsDir });
  return app;
}
