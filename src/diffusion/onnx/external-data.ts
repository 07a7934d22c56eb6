// Tensors stored outside the model file, as onnx's external data: their location in a proto, reading
// their bytes from the `.onnx_data` / `weights.pb` file next to the model, and moving initializers
// out of a model into such a file.
import { open } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import { invalidModel } from '../errors.ts';
import { DataLocation, bytesPerElement, elementCount, inlineTensorBytes, type ModelProto, type TensorProto } from './proto.ts';

export interface ExternalDataRef {
  location: string;
  offset: number;
  /** Bytes to read; absent in the proto means "to the end of the file". */
  length?: number;
}

/** Where a tensor's data lives when it is stored outside the model file, else null. */
export function externalDataRef(t: TensorProto): ExternalDataRef | null {
  if (t.dataLocation !== DataLocation.EXTERNAL) return null;
  const entry = (key: string) => t.externalData?.find((e) => e.key === key)?.value;
  const location = entry('location');
  if (!location) throw invalidModel(`tensor ${t.name} is marked external but has no location`);
  const offset = Number(entry('offset') ?? 0);
  const lengthText = entry('length');
  const length = lengthText === undefined ? undefined : Number(lengthText);
  if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0))) {
    throw invalidModel(`tensor ${t.name} has a bad external data offset/length`);
  }
  return { location, offset, length };
}

/** Resolves an external data location against the model's folder, refusing paths that leave it. */
export function externalDataPath(modelDir: string, location: string): string {
  const rel = normalize(location);
  if (isAbsolute(rel) || rel === '..' || rel.startsWith('../') || rel.startsWith('..\\')) {
    throw invalidModel(`external data location ${JSON.stringify(location)} points outside the model folder`);
  }
  return join(modelDir, rel);
}

/** The tensor's data as little-endian bytes, reading just its range from an external data file if needed. */
export async function loadTensorBytes(t: TensorProto, modelDir: string): Promise<Uint8Array> {
  const ref = externalDataRef(t);
  if (!ref) return inlineTensorBytes(t);
  const size = bytesPerElement(t.dataType);
  const expected = size === undefined ? undefined : size * elementCount(t.dims);
  const path = externalDataPath(modelDir, ref.location);
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw invalidModel(`tensor ${t.name}: cannot open external data file ${ref.location}`, err);
  });
  try {
    const length = ref.length ?? expected ?? (await fh.stat()).size - ref.offset;
    if (expected !== undefined && length !== expected) {
      throw invalidModel(`tensor ${t.name}: external data length ${length} does not match its shape (${expected} bytes)`);
    }
    const out = new Uint8Array(length);
    const { bytesRead } = await fh.read(out, 0, length, ref.offset);
    if (bytesRead !== length) throw invalidModel(`tensor ${t.name}: external data file ${ref.location} is truncated`);
    return out;
  } finally {
    await fh.close();
  }
}

/** Points an initializer at `length` bytes at `offset` of the external data file `location`, dropping its inline data. */
export function setExternalData(t: TensorProto, location: string, offset: number, length: number): void {
  t.externalData = [
    { key: 'location', value: location },
    { key: 'offset', value: String(offset) },
    { key: 'length', value: String(length) },
  ];
  t.dataLocation = DataLocation.EXTERNAL;
  delete t.rawData;
  delete t.floatData;
  delete t.int32Data;
  delete t.int64Data;
}

/** Moves every initializer of at least `threshold` bytes into one external data file, as onnx's
 * `save_model(..., save_as_external_data=True)` does; returns that file's contents. */
export function moveToExternalData(model: ModelProto, location: string, threshold = 1024): Uint8Array {
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const t of model.graph.initializer) {
    if (t.dataLocation === DataLocation.EXTERNAL) continue;
    const bytes = inlineTensorBytes(t);
    if (bytes.length < threshold) continue;
    parts.push(bytes);
    setExternalData(t, location, offset, bytes.length);
    offset += bytes.length;
  }
  const file = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    file.set(p, at);
    at += p.length;
  }
  return file;
}

/** Loads every externally stored initializer into raw_data, so the model is one self-contained buffer
 * (protobuf caps that at 2 GB). */
export async function inlineExternalData(model: ModelProto, modelDir: string): Promise<void> {
  for (const t of model.graph.initializer) {
    if (t.dataLocation !== DataLocation.EXTERNAL) continue;
    t.rawData = await loadTensorBytes(t, modelDir);
    delete t.externalData;
    delete t.dataLocation;
  }
}
