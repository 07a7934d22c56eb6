// What every route shares: its shape and JSON answers.
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface Route {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  /** Match every path that starts with `path` (e.g. '/images/'), not only `path` itself. */
  prefix?: boolean;
  handle: (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
