// PNG text chunks, which carry generation parameters between tools: AUTOMATIC1111 writes its
// infotext as a "parameters" chunk (tEXt, or iTXt when the text is not Latin-1), ComfyUI and others
// their own keys. sharp keeps no arbitrary text chunks, so they are spliced in after IHDR here.
import { crc32, inflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.equals(bytes.subarray(0, 8));
}

/** The PNG with `texts` added as text chunks right after the header chunk. */
export function addPngText(png: Uint8Array, texts: Record<string, string>): Buffer {
  if (!isPng(png)) throw new Error('not a PNG file');
  const headerEnd = 8 + 12 + new DataView(png.buffer, png.byteOffset).getUint32(8);
  const chunks = Object.entries(texts).map(([key, text]) => textChunk(key, text));
  return Buffer.concat([png.subarray(0, headerEnd), ...chunks, png.subarray(headerEnd)]);
}

/** Every tEXt, zTXt and iTXt chunk of a PNG, by keyword (the first of a repeated keyword wins). */
export function readPngText(png: Uint8Array): Record<string, string> {
  if (!isPng(png)) return {};
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const texts: Record<string, string> = {};
  let offset = 8;
  while (offset + 12 <= png.length) {
    const length = view.getUint32(offset);
    const type = Buffer.from(png.subarray(offset + 4, offset + 8)).toString('latin1');
    const data = Buffer.from(png.subarray(offset + 8, Math.min(offset + 8 + length, png.length)));
    offset += 12 + length;
    if (type === 'IEND') break;
    const entry = parseTextChunk(type, data);
    if (entry && !(entry[0] in texts)) texts[entry[0]] = entry[1];
  }
  return texts;
}

function parseTextChunk(type: string, data: Buffer): [string, string] | undefined {
  const nul = data.indexOf(0);
  if (nul < 1) return undefined;
  const key = data.subarray(0, nul).toString('latin1');
  try {
    if (type === 'tEXt') return [key, data.subarray(nul + 1).toString('latin1')];
    if (type === 'zTXt') return [key, inflateSync(data.subarray(nul + 2)).toString('latin1')];
    if (type === 'iTXt') {
      const compressed = data[nul + 1] === 1;
      const languageEnd = data.indexOf(0, nul + 3);
      const translatedEnd = data.indexOf(0, languageEnd + 1);
      if (languageEnd < 0 || translatedEnd < 0) return undefined;
      const text = data.subarray(translatedEnd + 1);
      return [key, (compressed ? inflateSync(text) : text).toString('utf8')];
    }
  } catch {
    // A corrupt text chunk is skipped, as image viewers do.
  }
  return undefined;
}

function textChunk(key: string, text: string): Buffer {
  const latin1 = [...text].every((c) => c.charCodeAt(0) <= 0xff);
  const body = latin1
    ? Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')])
    : // iTXt: keyword, NUL, no compression, method 0, empty language tag and translated keyword, UTF-8 text.
      Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]);
  const type = Buffer.from(latin1 ? 'tEXt' : 'iTXt', 'latin1');
  const chunk = Buffer.alloc(12 + body.length);
  chunk.writeUInt32BE(body.length, 0);
  type.copy(chunk, 4);
  body.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(Buffer.concat([type, body])), 8 + body.length);
  return chunk;
}
