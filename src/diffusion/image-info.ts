// Generation parameters in image files, as AUTOMATIC1111 keeps them: PNGs carry the infotext as a
// "parameters" text chunk (and sdql's request as an "sdql" one), JPEGs and WebPs as their EXIF
// UserComment. The server's worker and `sdql generate` write images through here alike.
import { embeddingShortHash, loraShortHash } from './a1111-hashes.ts';
import { addExifComment, readExifComment } from './exif-comment.ts';
import { encodeImage, type ImageFormat, type RgbImage } from './image.ts';
import type { InfotextParams } from './infotext.ts';
import { addPngText, isPng, readPngText } from './png-text.ts';
import type { GenerateRequest } from './request.ts';

export interface ImageInfo {
  /** AUTOMATIC1111's infotext. */
  parameters: string;
  /** sdql's request as JSON: PNG only (an EXIF UserComment holds one text). */
  sdql?: string;
}

/** The image encoded as `format`, carrying `info`. */
export async function encodeImageWithInfo(image: RgbImage, format: ImageFormat, info: ImageInfo): Promise<Buffer> {
  const bytes = await encodeImage(image, format);
  if (format === 'png') return addPngText(bytes, { parameters: info.parameters, ...(info.sdql === undefined ? {} : { sdql: info.sdql }) });
  return addExifComment(bytes, format, info.parameters, image);
}

/** The texts an image carries by key: a PNG's text chunks, a JPEG's or WebP's UserComment as `parameters`. */
export async function readImageInfo(bytes: Uint8Array): Promise<Record<string, string>> {
  if (isPng(bytes)) return readPngText(bytes);
  const parameters = await readExifComment(bytes);
  return parameters === undefined ? {} : { parameters };
}

/** Every applied LoRA (those of `loras` first, as resolveAdapters orders them) and every embedding the
 * prompts used, with AUTOMATIC1111's short hashes; a file that cannot be read goes without one. */
export type InfotextAdapters = Required<Pick<InfotextParams, 'loras' | 'embeddings'>>;

/** The adapters of a resolved request for its infotext; the first `fromInput` LoRAs came from its `loras`. */
export async function infotextAdapters(request: GenerateRequest, fromInput: number): Promise<InfotextAdapters> {
  const hash = (of: (path: string) => Promise<string>, path: string) => of(path).catch(() => undefined);
  return {
    loras: await Promise.all(
      (request.loras ?? []).map(async ({ name, path, weight, unetWeight }, i) => ({ name, weight, unetWeight, hash: await hash(loraShortHash, path), fromInput: i < fromInput })),
    ),
    embeddings: await Promise.all((request.embeddings ?? []).map(async ({ token, path }) => ({ name: token, hash: await hash(embeddingShortHash, path) }))),
  };
}
