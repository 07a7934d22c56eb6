// Who may talk to the server from a browser. A web page the user visits must not drive sdql: on a
// loopback address, requests naming another host are refused (DNS rebinding), and pages of other
// origins may neither call the API (no CORS unless SDQL_CORS_ORIGINS lists them) nor open its
// WebSocket, which browsers do not guard with CORS.
import type { IncomingHttpHeaders } from 'node:http';
import { isLoopback, type Config } from '../config.ts';

const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::', '[::]']);

export const isWildcard = (host: string) => WILDCARD_ADDRESSES.has(host);

/** The host name of a Host header (`name:port`, `[v6]:port`), lower-cased; undefined when malformed. */
function hostname(header: string | undefined): string | undefined {
  if (!header) return undefined;
  try {
    return new URL(`http://${header}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

export interface OriginPolicy {
  /** Why a request is refused, or null when it may go on. */
  refusal(headers: IncomingHttpHeaders): string | null;
  /** The CORS origins for graphql-yoga: none, or exactly those configured (never the request's own). */
  corsOrigins: string[];
}

export function originPolicy(config: Pick<Config, 'host' | 'corsOrigins' | 'allowedHosts'>): OriginPolicy {
  const checkHost = isLoopback(config.host);
  const allowedHosts = new Set(config.allowedHosts);
  return {
    corsOrigins: config.corsOrigins,
    refusal(headers) {
      const host = hostname(headers.host);
      if (checkHost && !(host && (isLoopback(host) || allowedHosts.has(host)))) {
        return `this server listens on a loopback address and does not answer for the host "${headers.host ?? ''}"; add it to SDQL_ALLOWED_HOSTS if it is yours`;
      }
      const origin = headers.origin;
      if (origin === undefined || config.corsOrigins.includes(origin)) return null;
      // A page this server served (GraphiQL) has the server's own origin.
      const sameOrigin = (() => {
        try {
          return new URL(origin).host === headers.host;
        } catch {
          return false;
        }
      })();
      return sameOrigin ? null : `pages of ${origin} may not call this server; add the origin to SDQL_CORS_ORIGINS to allow them`;
    },
  };
}
