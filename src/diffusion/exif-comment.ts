// AUTOMATIC1111 keeps its infotext in JPEG and WebP files as the EXIF UserComment, with the
// "UNICODE" character code and the text in UTF-16 big-endian (piexif's UserComment.dump(…,
// encoding="unicode") in a big-endian TIFF block, modules/images.py). sharp writes UserComment only
// as ASCII, replacing every other character with "?", and takes no raw EXIF block: so the block is
// built and put in the file here. Reading goes through exif-reader.
import exifReader from 'exif-reader';
import sharp from 'sharp';

const USER_COMMENT = 0x9286;
const EXIF_IFD_POINTER = 0x8769;
const UNDEFINED = 7;
const LONG = 4;
const UNICODE = Buffer.from('UNICODE\0', 'latin1');
const EXIF_HEADER = Buffer.from('Exif\0\0', 'latin1');
/** A JPEG segment's length field counts itself: at most 65535 bytes. */
const MAX_JPEG_SEGMENT = 0xffff - 2;

/** A big-endian TIFF block with one IFD pointing to an Exif IFD holding only UserComment. */
function exifBlock(text: string): Buffer {
  const utf16le = Buffer.from(text, 'utf16le');
  const comment = Buffer.concat([UNICODE, utf16le.swap16()]);
  // Header (8), IFD0 with one entry (2 + 12 + 4), the Exif IFD with one entry (2 + 12 + 4), the comment.
  const exifIfd = 8 + 18;
  const data = exifIfd + 18;
  const block = Buffer.alloc(data + comment.length);
  block.write('MM', 0, 'latin1');
  block.writeUInt16BE(42, 2);
  block.writeUInt32BE(8, 4);
  writeIfd(block, 8, EXIF_IFD_POINTER, LONG, 1, exifIfd);
  writeIfd(block, exifIfd, USER_COMMENT, UNDEFINED, comment.length, data);
  comment.copy(block, data);
  return block;
}

/** One-entry IFD at `offset` (its next-IFD offset stays 0). */
function writeIfd(block: Buffer, offset: number, tag: number, type: number, count: number, value: number): void {
  block.writeUInt16BE(1, offset);
  block.writeUInt16BE(tag, offset + 2);
  block.writeUInt16BE(type, offset + 4);
  block.writeUInt32BE(count, offset + 6);
  block.writeUInt32BE(value, offset + 10);
}

/** The JPEG or WebP (as sharp encodes them: no EXIF of their own) with `text` as its EXIF UserComment. */
export function addExifComment(image: Buffer, format: 'jpeg' | 'webp', text: string, size: { width: number; height: number }): Buffer {
  const block = exifBlock(text);
  return format === 'jpeg' ? jpegWithExif(image, block) : webpWithExif(image, block, size);
}

/** An APP1 "Exif" segment after SOI and the JFIF APP0 segment, which must come first. */
function jpegWithExif(jpeg: Buffer, block: Buffer): Buffer {
  const payload = Buffer.concat([EXIF_HEADER, block]);
  if (payload.length > MAX_JPEG_SEGMENT) throw new Error(`the infotext is too long for a JPEG's EXIF segment (${payload.length} bytes; 65533 at most): write a PNG`);
  let at = 2;
  if (jpeg[at] === 0xff && jpeg[at + 1] === 0xe0) at += 2 + jpeg.readUInt16BE(at + 2);
  const header = Buffer.from([0xff, 0xe1, 0, 0]);
  header.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([jpeg.subarray(0, at), header, payload, jpeg.subarray(at)]);
}

/** The extended WebP layout: a VP8X chunk with the EXIF flag, the image, then an EXIF chunk (the TIFF block alone). */
function webpWithExif(webp: Buffer, block: Buffer, { width, height }: { width: number; height: number }): Buffer {
  const first = webp.toString('latin1', 12, 16);
  if (first === 'VP8X') throw new Error('a WebP with a VP8X chunk already: not one sharp encoded from RGB pixels');
  const vp8x = Buffer.alloc(18);
  vp8x.write('VP8X', 0, 'latin1');
  vp8x.writeUInt32LE(10, 4);
  vp8x[8] = 0x08; // EXIF present; an RGB image has no alpha, animation or ICC profile.
  vp8x.writeUIntLE(width - 1, 12, 3);
  vp8x.writeUIntLE(height - 1, 15, 3);
  const exif = Buffer.alloc(8 + block.length + (block.length % 2));
  exif.write('EXIF', 0, 'latin1');
  exif.writeUInt32LE(block.length, 4);
  block.copy(exif, 8);
  const out = Buffer.concat([webp.subarray(0, 12), vp8x, webp.subarray(12), exif]);
  out.writeUInt32LE(out.length - 8, 4);
  return out;
}

/**
 * The EXIF UserComment of a JPEG or WebP as AUTOMATIC1111 reads it (piexif's UserComment.load):
 * "UNICODE" text is UTF-16 big-endian, "JIS" Shift-JIS, the rest UTF-8. Undefined when there
 * is none or the EXIF cannot be read.
 */
export async function readExifComment(bytes: Uint8Array): Promise<string | undefined> {
  let comment: Buffer | undefined;
  try {
    const { exif } = await sharp(bytes).metadata();
    comment = exif ? exifReader(exif).Photo?.UserComment : undefined;
  } catch {
    return undefined;
  }
  if (!comment || comment.length < 8) return undefined;
  const code = comment.toString('latin1', 0, 8);
  const text = comment.subarray(8);
  if (code !== UNICODE.toString('latin1')) return new TextDecoder(code.startsWith('JIS') ? 'shift_jis' : 'utf-8').decode(text).replace(/\0+$/, '');
  return Buffer.from(text.subarray(0, text.length - (text.length % 2)))
    .swap16()
    .toString('utf16le')
    .replace(/\0+$/, '');
}
