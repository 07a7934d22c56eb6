// GET /images/<id>.<ext>: a generated image file. Files never change once written, so the ETag is
// their SHA-256 and clients may cache them for good. With tokens, the URL must carry its signature
// (`?exp=…&sig=…`, see auth/): an <img> sends no Authorization header.
import { createReadStream } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { Services } from '../graphql/context.ts';
import { sendJson, type Route } from './http.ts';

/** Where image files are served: IMAGE_PATH + id + extension. */
const IMAGE_PATH = '/images/';

const CONTENT_TYPES: Record<string, string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };

/** The path of an image's file on this server (immutable: clients may cache it). */
export function imagePath(image: { id: string; format: string }): string {
  return `${IMAGE_PATH}${image.id}.${image.format === 'jpeg' ? 'jpg' : image.format}`;
}

export function imageRoute(services: Services): Route {
  return {
    method: 'GET',
    path: IMAGE_PATH,
    prefix: true,
    handle: async (req, res, url) => {
      if (!services.auth.imageRequestAllowed(url.pathname, url.searchParams)) {
        return sendJson(res, 403, { error: 'this image URL is not signed, its signature does not match, or it expired: take a fresh `url` from the API' });
      }
      const id = url.pathname.slice(IMAGE_PATH.length).replace(/\.\w+$/, '');
      const image = /^[\w-]{1,64}$/.test(id) ? await services.db.prisma.image.findUnique({ where: { id } }) : null;
      if (!image) return sendJson(res, 404, { error: `no image has the id "${id}"` });
      const etag = `"${image.sha256}"`;
      const headers = {
        'content-type': CONTENT_TYPES[image.format] ?? 'application/octet-stream',
        etag,
        // A signed URL is one viewer's: shared caches keep it not.
        'cache-control': `${services.auth.enabled ? 'private' : 'public'}, max-age=31536000, immutable`,
      };
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, headers);
        return void res.end();
      }
      stream(res, services.jobs.images.absolute(image.path), { ...headers, 'content-length': String(image.bytes) });
    },
  };
}

function stream(res: ServerResponse, path: string, headers: Record<string, string>): void {
  const file = createReadStream(path);
  file.once('open', () => {
    res.writeHead(200, headers);
    file.pipe(res);
  });
  file.once('error', () => {
    if (!res.headersSent) sendJson(res, 404, { error: 'the image file is missing from the data folder' });
    else res.destroy();
  });
}
