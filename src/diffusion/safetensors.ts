// The header of a .safetensors file: an 8-byte little-endian length, then that many bytes of JSON
// naming each tensor's dtype, shape and byte range, plus optional string `__metadata__`. The header
// is read alone (LoRA files reach hundreds of MB), and it is checked as the safetensors library
// checks it, so a file accepted here has every tensor where its header says; tensors are then read
// one by one, as float32, by those that need their values.
import { open } from 'node:fs/promises';
import { float16ToFloat32 } from './onnx/float16.ts';

export interface SafetensorsTensorInfo {
  dtype: string;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data (`dataStart`). */
  data_offsets: [number, number];
}

export interface SafetensorsHeader {
  tensors: Record<string, SafetensorsTensorInfo>;
  /** The header's `__metadata__` (string values only, by the format's rules); {} when absent. */
  metadata: Record<string, string>;
  /** File offset of the first tensor byte: 8 + header length. */
  dataStart: number;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** The safetensors library's limit: larger headers are refused as a denial-of-service guard. */
const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_BITS: Record<string, number> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  I64: 64,
  U64: 64,
  F64: 64,
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Reads and validates the header of `path`. Throws SafetensorsError saying what is wrong. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await open(path, 'r');
  let json: unknown;
  let dataBytes: number;
  let headerBytes: number;
  try {
    const size = (await fh.stat()).size;
    if (size < 8) throw new SafetensorsError(`${size} bytes is too short for a safetensors file`);
    const prefix = Buffer.alloc(8);
    await fh.read(prefix, 0, 8, 0);
    const length = prefix.readBigUInt64LE(0);
    if (length > BigInt(size - 8)) throw new SafetensorsError(`the header length ${length} runs past the end of the file (${size} bytes)`);
    if (length > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(`the header length ${length} exceeds ${MAX_HEADER_BYTES} bytes`);
    headerBytes = Number(length);
    dataBytes = size - 8 - headerBytes;
    const header = Buffer.alloc(headerBytes);
    await fh.read(header, 0, headerBytes, 8);
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(header));
    } catch (error) {
      throw new SafetensorsError(`the header is not UTF-8 JSON (${(error as Error).message})`);
    }
  } finally {
    await fh.close();
  }
  if (!isObject(json)) throw new SafetensorsError('the header is not a JSON object');

  const metadata: Record<string, string> = {};
  const tensors: Record<string, SafetensorsTensorInfo> = {};
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isObject(value)) throw new SafetensorsError('__metadata__ is not an object');
      for (const [key, text] of Object.entries(value)) {
        if (typeof text !== 'string') throw new SafetensorsError(`__metadata__.${key} is not a string`);
        metadata[key] = text;
      }
      continue;
    }
    tensors[name] = checkTensor(name, value);
  }

  // Tensors must tile the data exactly, in offset order, with no gaps or overlaps.
  let end = 0;
  for (const [name, t] of Object.entries(tensors).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])) {
    if (t.data_offsets[0] !== end) throw new SafetensorsError(`tensor ${name} starts at byte ${t.data_offsets[0]}, expected ${end} (gap or overlap)`);
    end = t.data_offsets[1];
  }
  if (end !== dataBytes) throw new SafetensorsError(`the tensors cover ${end} bytes but the file holds ${dataBytes} bytes of data`);
  return { tensors, metadata, dataStart: 8 + headerBytes };
}

function checkTensor(name: string, value: unknown): SafetensorsTensorInfo {
  if (!isObject(value)) throw new SafetensorsError(`tensor ${name} is not an object`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BITS)) throw new SafetensorsError(`tensor ${name} has an unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(isCount)) throw new SafetensorsError(`tensor ${name} has an invalid shape`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw new SafetensorsError(`tensor ${name} has invalid data_offsets`);
  }
  const bytes = (shape.reduce((a: number, b: number) => a * b, 1) * DTYPE_BITS[dtype]) / 8;
  if (offsets[1] - offsets[0] !== bytes) {
    throw new SafetensorsError(`tensor ${name} (${dtype} [${shape.join(', ')}]) needs ${bytes} bytes but data_offsets span ${offsets[1] - offsets[0]}`);
  }
  return { dtype, shape, data_offsets: [offsets[0], offsets[1]] };
}

export interface FloatTensor {
  shape: number[];
  data: Float32Array;
}

/** Float tensor data (F32, F16, BF16, F64, little-endian) as float32 values. */
export function toFloat32(dtype: string, bytes: Uint8Array): Float32Array {
  const copy = new Uint8Array(bytes); // aligned: tensors may start at any byte of the file
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy.buffer);
    case 'F16':
      return float16ToFloat32(new Uint16Array(copy.buffer));
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const bits = new Uint16Array(copy.buffer);
      const out = new Uint32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'F64':
      return Float32Array.from(new Float64Array(copy.buffer));
    default:
      throw new SafetensorsError(`${dtype} is not a float dtype`);
  }
}

/** Reads the named tensors (all by default) of a file whose header was read with readSafetensorsHeader, as float32. */
export async function readSafetensorsFloat32(path: string, header: SafetensorsHeader, names = Object.keys(header.tensors)): Promise<Map<string, FloatTensor>> {
  const out = new Map<string, FloatTensor>();
  const fh = await open(path, 'r');
  try {
    for (const name of names) {
      const info = header.tensors[name];
      if (!info) throw new SafetensorsError(`no tensor ${name}`);
      const [begin, end] = info.data_offsets;
      const bytes = new Uint8Array(end - begin);
      const { bytesRead } = await fh.read(bytes, 0, bytes.length, header.dataStart + begin);
      if (bytesRead !== bytes.length) throw new SafetensorsError(`tensor ${name} is truncated`);
      try {
        out.set(name, { shape: info.shape, data: toFloat32(info.dtype, bytes) });
      } catch (error) {
        throw new SafetensorsError(`tensor ${name}: ${(error as Error).message}`);
      }
    }
  } finally {
    await fh.close();
  }
  return out;
}
