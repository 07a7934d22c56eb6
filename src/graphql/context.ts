// What every resolver can reach: services that live as long as the app (built by src/app/), and
// what belongs to one operation.
import type { Auth, Viewer } from '../auth/index.ts';
import type { Config } from '../config.ts';
import type { Database } from '../db/index.ts';
import type { EngineModelStatus } from '../diffusion/index.ts';
import type { EventBus } from '../events/bus.ts';
import type { Jobs, JobTopics } from '../jobs/index.ts';
import type { ModelPulls, Registry } from '../registry/index.ts';

/** The bus's topics: the jobs' and the schema's own. */
export type Topics = JobTopics & {
  modelsChanged: [{ scannedAt: string }];
};

export interface Services {
  config: Config;
  db: Database;
  registry: Registry;
  /** Pulls from the Hugging Face Hub, run by this process. */
  pulls: ModelPulls;
  events: EventBus<Topics>;
  jobs: Jobs;
  /** Tokens, and what image URLs carry. */
  auth: Auth;
  /** This process's engine; null when it runs none (SDQL_WORKER=false). */
  engine: { models(): EngineModelStatus[] } | null;
}

export interface Context extends Services {
  /** Also on every log line written while the operation runs. */
  requestId: string;
  /** Who asks: a token's owner, or the local admin when authentication is off. */
  viewer: Viewer;
  /** Where the server serves an image's file: absolute when the server knows the URL it is reached at. */
  imageUrl(image: { id: string; format: string }): string;
}
