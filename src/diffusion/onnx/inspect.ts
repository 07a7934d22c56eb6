// Reads what a model folder's loader needs to know about a .onnx file — its inputs, outputs and
// external data files — without reading initializer data: the file is walked through a small window
// and tensor payloads are skipped by seeking (UNet files reach 2 GB).
import { open, type FileHandle } from 'node:fs/promises';
import { invalidModel } from '../errors.ts';
import { DataLocation, bytesPerElement, decodeOperatorSetId, decodeValueInfo, elemTypeName, elementCount, valueInfoShape, type ValueInfoProto } from './proto.ts';
import { Reader, WireType, fields } from './wire.ts';

export interface OnnxValueInfo {
  name: string;
  /** onnxruntime-node's type name: 'float32' | 'float16' | 'int64' | 'int32' | ... */
  elemType: string;
  /** Fixed sizes as numbers, symbolic dims by name, '' for an unnamed dim; [] for a scalar. */
  shape: (number | string)[];
}

export interface OnnxSummary {
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  /** External data file names (locations relative to the model's folder), in first-use order. */
  externalDataFiles: string[];
  /** Version of the default ("" / "ai.onnx") operator set. */
  opsetVersion?: number;
  /** Bytes of initializer data, wherever it is stored. */
  initializerBytes: number;
}

const utf8 = new TextDecoder();
const WINDOW = 64 * 1024;
// Graph inputs/outputs are read whole; anything bigger than this is a corrupt length, not a value info.
const MAX_VALUE_INFO = 1024 * 1024;

/** A forward-only cursor over a file that reads through a window and skips by seeking. */
class FileCursor {
  pos = 0;
  private buf = Buffer.alloc(WINDOW);
  private bufStart = 0;
  private bufLen = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /** Makes [pos, pos + n) (clipped to the file) available in the window. */
  private async fill(n: number): Promise<void> {
    const want = Math.min(n, this.size - this.pos);
    if (this.pos >= this.bufStart && this.pos + want <= this.bufStart + this.bufLen) return;
    if (this.buf.length < want) this.buf = Buffer.alloc(want);
    const len = Math.min(Math.max(want, WINDOW), this.buf.length, this.size - this.pos);
    const { bytesRead } = await this.fh.read(this.buf, 0, len, this.pos);
    this.bufStart = this.pos;
    this.bufLen = bytesRead;
  }

  async varint(): Promise<number> {
    await this.fill(10);
    const r = new Reader(this.buf, this.pos - this.bufStart, this.bufLen);
    const v = r.uint();
    this.pos = this.bufStart + r.pos;
    return v;
  }

  /** A parser over the next n bytes, which it consumes. */
  async take(n: number): Promise<Reader> {
    if (this.pos + n > this.size) throw new RangeError('field runs past the end of the file');
    await this.fill(n);
    const start = this.pos - this.bufStart;
    this.pos += n;
    return new Reader(this.buf, start, start + n);
  }

  async string(): Promise<string> {
    const r = await this.take(await this.varint());
    return utf8.decode(r.buf.subarray(r.pos, r.end));
  }

  async skip(wireType: number): Promise<void> {
    switch (wireType) {
      case WireType.Varint:
        await this.varint();
        return;
      case WireType.LengthDelimited: {
        const len = await this.varint();
        this.pos += len;
        break;
      }
      case WireType.Fixed64:
        this.pos += 8;
        break;
      case WireType.Fixed32:
        this.pos += 4;
        break;
      default:
        throw new RangeError(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.size) throw new RangeError('field runs past the end of the file');
  }

  /** Visits the fields of the message ending at `end`; `visit` returns false for those it did not consume. */
  async walk(end: number, visit: (field: number, wireType: number) => Promise<boolean>): Promise<void> {
    while (this.pos < end) {
      const tag = await this.varint();
      const field = Math.floor(tag / 8);
      const wireType = tag & 7;
      if (!(await visit(field, wireType))) await this.skip(wireType);
    }
    if (this.pos !== end) throw new RangeError('message length does not match its fields');
  }
}

interface InitializerInfo {
  name: string;
  bytes: number;
  location?: string;
}

async function readInitializer(c: FileCursor, end: number): Promise<InitializerInfo> {
  const dims: number[] = [];
  let name = '';
  let dataType = 0;
  let payload = 0;
  let external = false;
  const entries = new Map<string, string>();
  await c.walk(end, async (field, wt) => {
    if (field === 1 && wt === WireType.Varint) dims.push(await c.varint());
    else if (field === 1 && wt === WireType.LengthDelimited) {
      const r = await c.take(await c.varint());
      while (!r.done) dims.push(r.uint());
    } else if (field === 2 && wt === WireType.Varint) dataType = await c.varint();
    else if (field === 8 && wt === WireType.LengthDelimited) name = await c.string();
    else if (field === 14 && wt === WireType.Varint) external = (await c.varint()) === DataLocation.EXTERNAL;
    else if (field === 13 && wt === WireType.LengthDelimited) {
      const r = await c.take(await c.varint());
      let key = '';
      let value = '';
      for (const [f, w] of fields(r)) {
        if (f === 1 && w === WireType.LengthDelimited) key = r.string();
        else if (f === 2 && w === WireType.LengthDelimited) value = r.string();
        else r.skip(w);
      }
      entries.set(key, value);
    } else if (field === 9 && wt === WireType.LengthDelimited) {
      payload = await c.varint();
      c.pos += payload;
    } else return false;
    return true;
  });
  const size = bytesPerElement(dataType);
  const bytes = size === undefined ? payload : size * elementCount(dims);
  const location = external ? entries.get('location') : undefined;
  if (external && !location) throw new RangeError('an initializer is marked external but names no location');
  return { name, bytes, location };
}

function summarise(v: ValueInfoProto): OnnxValueInfo {
  return { name: v.name, elemType: elemTypeName(v.type?.tensorType?.elemType ?? 0), shape: valueInfoShape(v) };
}

/** Reads a model's graph inputs/outputs and the external-data file names its initializers reference,
 * without loading initializer data. */
export async function inspectOnnx(path: string): Promise<OnnxSummary> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw invalidModel(`cannot open ONNX model ${path}`, err);
  });
  const summary: OnnxSummary = { inputs: [], outputs: [], externalDataFiles: [], initializerBytes: 0 };
  const initializerNames = new Set<string>();
  let sawGraph = false;
  try {
    const c = new FileCursor(fh, (await fh.stat()).size);
    await c.walk(c.size, async (field, wt) => {
      if (wt !== WireType.LengthDelimited) return false;
      if (field === 8) {
        const opset = decodeOperatorSetId(await c.take(await c.varint()));
        if (opset.domain === '' || opset.domain === 'ai.onnx') summary.opsetVersion = opset.version;
        return true;
      }
      if (field !== 7) return false;
      sawGraph = true;
      const graphEnd = (await c.varint()) + c.pos;
      await c.walk(graphEnd, async (gField, gWt) => {
        if (gWt !== WireType.LengthDelimited) return false;
        if (gField === 11 || gField === 12) {
          const len = await c.varint();
          if (len > MAX_VALUE_INFO) throw new RangeError('implausibly large graph input/output');
          const info = summarise(decodeValueInfo(await c.take(len)));
          (gField === 11 ? summary.inputs : summary.outputs).push(info);
          return true;
        }
        if (gField === 5) {
          const end = (await c.varint()) + c.pos;
          const init = await readInitializer(c, end);
          initializerNames.add(init.name);
          summary.initializerBytes += init.bytes;
          if (init.location && !summary.externalDataFiles.includes(init.location)) summary.externalDataFiles.push(init.location);
          return true;
        }
        return false;
      });
      return true;
    });
  } catch (err) {
    if (err instanceof RangeError) throw invalidModel(`${path} is not a readable ONNX model: ${err.message}`, err);
    throw err;
  } finally {
    await fh.close();
  }
  if (!sawGraph) throw invalidModel(`${path} is not an ONNX model: it has no graph`);
  // Exports before IR version 4 list initializers among the inputs too; they are not inputs a caller
  // feeds, and onnxruntime leaves them out of inputMetadata.
  summary.inputs = summary.inputs.filter((i) => !initializerNames.has(i.name));
  return summary;
}
