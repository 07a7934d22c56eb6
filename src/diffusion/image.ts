// Pixels in and out of the engine: input images read from data URLs, bytes or files and checked,
// init images decoded with sharp into the VAE's [-1, 1] range, decoded images quantised and encoded
// as diffusers' image processor does.
import sharp, { type Metadata } from 'sharp';
import { badInput } from './errors.ts';
import { LIMITS } from './limits.ts';
import { roundHalfEven } from './schedulers/scheduler.ts';

/** An RGB image as floats in [0, 1], height × width × 3 (the layout of diffusers' `output_type="np"`). */
export interface RgbImage {
  width: number;
  height: number;
  data: Float32Array;
}

export type ImageFormat = 'png' | 'jpeg' | 'webp';
const INPUT_FORMATS = new Set(['png', 'jpeg', 'webp']);

export interface DecodedInitImage {
  width: number;
  height: number;
  /** 1 × 3 × height × width, scaled to [-1, 1] as the VAE encoder expects. */
  pixels: Float32Array;
}

const DATA_URL = /^data:image\/(png|jpeg|jpg|webp);base64,([A-Za-z0-9+/=\s]*)$/;

/** A file or blob of any fetch implementation: its size is known before it is read. */
export interface BlobLike {
  size: number;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * The bytes of an input image sent as a `data:image/…;base64,` URL, as bytes, or as a file.
 * BAD_USER_INPUT for a malformed data URL or more than LIMITS.maxImageBytes, which is known before a
 * data URL is decoded or a file read. What the bytes hold is checked where they are used (probeImage).
 */
export async function inputImageBytes(input: string | Uint8Array | BlobLike): Promise<Uint8Array> {
  const tooBig = (bytes: number) => badInput(`the image is ${bytes} bytes; the limit is ${LIMITS.maxImageBytes}`);
  if (typeof input === 'string') {
    // The media type comes first: a long string without a comma early on is no data URL worth matching.
    const match = DATA_URL.exec(input.slice(0, 64).includes(',') ? input : '');
    if (!match) throw badInput('the image data URL must look like data:image/png;base64,… (PNG, JPEG or WebP)');
    if (match[2].length * 0.75 > LIMITS.maxImageBytes + 3) throw tooBig(Math.floor(match[2].length * 0.75));
    return Buffer.from(match[2], 'base64');
  }
  const size = input instanceof Uint8Array ? input.byteLength : input.size;
  if (size > LIMITS.maxImageBytes) throw tooBig(size);
  return input instanceof Uint8Array ? input : new Uint8Array(await input.arrayBuffer());
}

/** Width and height of an encoded image, without decoding its pixels; rejects what decodeInitImage would.
 * `name` is what the messages call the image (the request's field). */
export async function probeImage(bytes: Uint8Array, name = 'init image'): Promise<{ width: number; height: number; format: string }> {
  if (bytes.byteLength > LIMITS.maxImageBytes) {
    throw badInput(`${name} is ${bytes.byteLength} bytes; the limit is ${LIMITS.maxImageBytes}`);
  }
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: LIMITS.maxInputPixels }).metadata();
  } catch (error) {
    if (/pixel limit/i.test((error as Error).message)) throw badInput(`${name} has more than ${LIMITS.maxInputPixels} pixels`);
    throw badInput(`${name} could not be read: send a PNG, JPEG or WebP file`);
  }
  if (!meta.format || !INPUT_FORMATS.has(meta.format)) {
    throw badInput(`${name} is ${meta.format ?? 'of an unknown format'}: send a PNG, JPEG or WebP file`);
  }
  const { width, height } = meta.autoOrient ?? meta;
  if (!width || !height || width * height > LIMITS.maxInputPixels) {
    throw badInput(`${name} is ${width}×${height}, more than ${LIMITS.maxInputPixels} pixels`);
  }
  return { width, height, format: meta.format };
}

/**
 * probeImage, and the whole image decoded once: a truncated or damaged file is refused when it is
 * submitted rather than failing when it runs (the header alone reads fine).
 */
export async function verifyImage(bytes: Uint8Array, name = 'init image'): Promise<{ width: number; height: number; format: string }> {
  const info = await probeImage(bytes, name);
  try {
    await sharp(bytes, { limitInputPixels: LIMITS.maxInputPixels, failOn: 'truncated' }).raw().toBuffer();
  } catch {
    throw badInput(`${name} is damaged or truncated: it could not be decoded completely`);
  }
  return info;
}

/**
 * Decodes an init image to `width` × `height`. Like diffusers' VaeImageProcessor it stretches the
 * image with a Lanczos filter when the sizes differ and leaves it untouched when they match;
 * transparency is flattened onto white (as AUTOMATIC1111 does) and EXIF orientation applied.
 */
export async function decodeInitImage(bytes: Uint8Array, width: number, height: number): Promise<DecodedInitImage> {
  const source = await probeImage(bytes);
  let pipeline = sharp(bytes, { limitInputPixels: LIMITS.maxInputPixels }).autoOrient().flatten({ background: '#ffffff' });
  if (source.width !== width || source.height !== height) {
    pipeline = pipeline.resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
  }
  const { data, info } = await pipeline.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  const plane = info.width * info.height;
  const pixels = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) pixels[c * plane + i] = (data[i * info.channels + c] / 255) * 2 - 1;
  }
  return { width: info.width, height: info.height, pixels };
}

/** VAE decoder output (3 × H × W in [-1, 1]) to an RgbImage: (x / 2 + 0.5) clamped to [0, 1]. */
export function vaeOutputToImage(sample: Float32Array, width: number, height: number): RgbImage {
  const plane = width * height;
  const data = new Float32Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.min(Math.max(sample[c * plane + i] / 2 + 0.5, 0), 1);
  }
  return { width, height, data };
}

/** 8-bit RGB as numpy's `(images * 255).round().astype("uint8")`. */
export function quantize(image: RgbImage): Uint8Array {
  return Uint8Array.from(image.data, (v) => roundHalfEven(v * 255));
}

/** The image as its 8-bit file holds it, back in [0, 1]: what an upscaler of the saved image sees. */
export function dequantize(image: RgbImage): RgbImage {
  return { ...image, data: Float32Array.from(quantize(image), (v) => v / 255) };
}

export async function encodeImage(image: RgbImage, format: ImageFormat = 'png'): Promise<Buffer> {
  const encoder = sharp(quantize(image), { raw: { width: image.width, height: image.height, channels: 3 } });
  if (format === 'jpeg') return encoder.jpeg({ quality: 92 }).toBuffer();
  if (format === 'webp') return encoder.webp({ quality: 92 }).toBuffer();
  return encoder.png().toBuffer();
}
