// HTTP routes besides /graphql. Add a route here (e.g. image files under /images/) and it is served
// once the server is ready; until then every route but /healthz answers 503.
import type { ServerResponse } from 'node:http';
import type { Services } from '../graphql/context.ts';
import type { Lifecycle } from '../lifecycle.ts';
import { log } from '../log.ts';
import { a1111Routes } from './a1111.ts';
import type { Yoga } from './graphql.ts';
import { sendJson, type Route } from './http.ts';
import { imageRoute } from './images.ts';

const HEALTH_QUERY_TIMEOUT_MS = 2000;

/** 200 when the database answers; 503 while starting, stopping, or when the database does not answer. */
export async function health(ready: { services: Services; lifecycle: Lifecycle } | undefined, res: ServerResponse): Promise<void> {
  if (!ready) return sendJson(res, 503, { status: 'starting' });
  const { services, lifecycle } = ready;
  if (lifecycle.shuttingDown) return sendJson(res, 503, { status: 'stopping' });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      services.db.prisma.$queryRaw`SELECT 1`,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${HEALTH_QUERY_TIMEOUT_MS} ms`)), HEALTH_QUERY_TIMEOUT_MS);
      }),
    ]);
    sendJson(res, 200, { status: 'ok', database: services.db.kind });
  } catch (error) {
    log.warn('health check: the database does not answer', { err: error });
    sendJson(res, 503, { status: 'database unavailable' });
  } finally {
    clearTimeout(timer);
  }
}

/** The routes of a ready server. */
export function routes(services: Services, yoga: Yoga): Route[] {
  return [
    imageRoute(services),
    ...(services.config.a1111Api ? a1111Routes(services, yoga) : []),
    {
      method: 'GET',
      path: '/',
      handle: (_req, res) => {
        res.writeHead(302, { location: '/graphql' });
        res.end();
      },
    },
  ];
}
