// What every resolver can reach. Services live as long as the server; the rest is per operation.
import type { Config } from '../config.ts';
import type { Database } from '../db/index.ts';
import type { Jobs } from '../jobs/index.ts';
import type { Registry } from '../registry/index.ts';
import type { Lifecycle } from '../server/lifecycle.ts';
import type { SdqlPubSub } from './pubsub.ts';

export interface Services {
  config: Config;
  db: Database;
  registry: Registry;
  pubsub: SdqlPubSub;
  lifecycle: Lifecycle;
  jobs: Jobs;
}

export interface Context extends Services {
  /** Also on every log line written while the operation runs. */
  requestId: string;
  /** The HTTP request (GraphQL over HTTP and SSE); absent over WebSocket. */
  request?: Request;
}
