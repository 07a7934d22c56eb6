// The subset of onnx.proto3 (onnx/onnx) that sdql reads and writes: models, graphs, nodes, attributes,
// tensors and value infos, encoded and decoded in memory (files of external data: external-data.ts).
// Every field not modelled here is kept as raw bytes in `unknown`, so decode → edit initializers →
// encode leaves the rest of a model intact.
// Scalars that are optional in the proto are optional here too: "absent" and "zero" stay distinct.
import { invalidModel } from '../errors.ts';
import { float16ToFloat32, float32ToFloat16 } from './float16.ts';
import { Reader, Writer, fields, type UnknownField } from './wire.ts';

export type { UnknownField } from './wire.ts';

/** TensorProto.DataType. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
} as const;

/** AttributeProto.AttributeType. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
} as const;

export const DataLocation = { DEFAULT: 0, EXTERNAL: 1 } as const;

// onnxruntime-node's names for element types (Tensor.type, inputMetadata[].type).
const TYPE_NAMES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
};

const BYTES_PER_ELEMENT: Record<number, number> = {
  1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
};

export function elemTypeName(dataType: number): string {
  return TYPE_NAMES[dataType] ?? `onnx-type-${dataType}`;
}

/** Bytes per element, or undefined for strings and types this code does not size. */
export function bytesPerElement(dataType: number): number | undefined {
  return BYTES_PER_ELEMENT[dataType];
}

interface HasUnknown {
  /** Fields this code does not model, re-encoded verbatim. */
  unknown?: UnknownField[];
}

export interface OperatorSetIdProto extends HasUnknown {
  domain: string;
  version: number;
}

export interface StringStringEntryProto extends HasUnknown {
  key: string;
  value: string;
}

export interface TensorProto extends HasUnknown {
  name: string;
  dims: number[];
  dataType: number;
  rawData?: Uint8Array;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: bigint[];
  externalData?: StringStringEntryProto[];
  dataLocation?: number;
}

export interface AttributeProto extends HasUnknown {
  name: string;
  type: number;
  f?: number;
  i?: bigint;
  s?: Uint8Array;
  t?: TensorProto;
  floats: number[];
  ints: bigint[];
  strings: Uint8Array[];
}

export interface NodeProto extends HasUnknown {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  domain: string;
  attribute: AttributeProto[];
}

export interface TensorShapeDimension extends HasUnknown {
  dimValue?: number;
  dimParam?: string;
}

export interface TensorShapeProto extends HasUnknown {
  dim: TensorShapeDimension[];
}

export interface TypeProtoTensor extends HasUnknown {
  elemType: number;
  /** Absent: rank unknown. Present with no dims: a scalar. */
  shape?: TensorShapeProto;
}

export interface TypeProto extends HasUnknown {
  /** Absent for sequence/map/optional types, which stay in `unknown`. */
  tensorType?: TypeProtoTensor;
}

export interface ValueInfoProto extends HasUnknown {
  name: string;
  type?: TypeProto;
}

export interface GraphProto extends HasUnknown {
  node: NodeProto[];
  name: string;
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo: ValueInfoProto[];
}

export interface ModelProto extends HasUnknown {
  irVersion: number;
  producerName: string;
  graph: GraphProto;
  opsetImport: OperatorSetIdProto[];
}

// ---- decoding ----

function keep(target: HasUnknown, field: UnknownField): void {
  (target.unknown ??= []).push(field);
}

function decodeEntry(r: Reader): StringStringEntryProto {
  const e: StringStringEntryProto = { key: '', value: '' };
  for (const [field, wt, at] of fields(r)) {
    if (field === 1 && wt === 2) e.key = r.string();
    else if (field === 2 && wt === 2) e.value = r.string();
    else keep(e, r.unknown(at, field, wt));
  }
  return e;
}

export function decodeTensor(r: Reader): TensorProto {
  const t: TensorProto = { name: '', dims: [], dataType: 0 };
  for (const [field, wt, at] of fields(r)) {
    switch (field) {
      case 1:
        r.repeated(wt, t.dims, () => Number(r.int64()));
        continue;
      case 2:
        if (wt !== 0) break;
        t.dataType = r.int32();
        continue;
      case 4:
        r.repeated(wt, (t.floatData ??= []), () => r.float());
        continue;
      case 5:
        r.repeated(wt, (t.int32Data ??= []), () => r.int32());
        continue;
      case 7:
        r.repeated(wt, (t.int64Data ??= []), () => r.int64());
        continue;
      case 8:
        if (wt !== 2) break;
        t.name = r.string();
        continue;
      case 9:
        if (wt !== 2) break;
        t.rawData = r.bytes();
        continue;
      case 13:
        if (wt !== 2) break;
        (t.externalData ??= []).push(decodeEntry(r.message()));
        continue;
      case 14:
        if (wt !== 0) break;
        t.dataLocation = r.int32();
        continue;
    }
    keep(t, r.unknown(at, field, wt));
  }
  return t;
}

function decodeAttribute(r: Reader): AttributeProto {
  const a: AttributeProto = { name: '', type: 0, floats: [], ints: [], strings: [] };
  for (const [field, wt, at] of fields(r)) {
    switch (field) {
      case 1:
        if (wt !== 2) break;
        a.name = r.string();
        continue;
      case 2:
        if (wt !== 5) break;
        a.f = r.float();
        continue;
      case 3:
        if (wt !== 0) break;
        a.i = r.int64();
        continue;
      case 4:
        if (wt !== 2) break;
        a.s = r.bytes();
        continue;
      case 5:
        if (wt !== 2) break;
        a.t = decodeTensor(r.message());
        continue;
      case 7:
        r.repeated(wt, a.floats, () => r.float());
        continue;
      case 8:
        r.repeated(wt, a.ints, () => r.int64());
        continue;
      case 9:
        if (wt !== 2) break;
        a.strings.push(r.bytes());
        continue;
      case 20:
        if (wt !== 0) break;
        a.type = r.int32();
        continue;
    }
    keep(a, r.unknown(at, field, wt));
  }
  return a;
}

function decodeNode(r: Reader): NodeProto {
  const n: NodeProto = { input: [], output: [], name: '', opType: '', domain: '', attribute: [] };
  for (const [field, wt, at] of fields(r)) {
    if (wt === 2) {
      if (field === 1) n.input.push(r.string());
      else if (field === 2) n.output.push(r.string());
      else if (field === 3) n.name = r.string();
      else if (field === 4) n.opType = r.string();
      else if (field === 5) n.attribute.push(decodeAttribute(r.message()));
      else if (field === 7) n.domain = r.string();
      else keep(n, r.unknown(at, field, wt));
    } else keep(n, r.unknown(at, field, wt));
  }
  return n;
}

function decodeDimension(r: Reader): TensorShapeDimension {
  const d: TensorShapeDimension = {};
  for (const [field, wt, at] of fields(r)) {
    if (field === 1 && wt === 0) d.dimValue = Number(r.int64());
    else if (field === 2 && wt === 2) d.dimParam = r.string();
    else keep(d, r.unknown(at, field, wt));
  }
  return d;
}

function decodeShape(r: Reader): TensorShapeProto {
  const s: TensorShapeProto = { dim: [] };
  for (const [field, wt, at] of fields(r)) {
    if (field === 1 && wt === 2) s.dim.push(decodeDimension(r.message()));
    else keep(s, r.unknown(at, field, wt));
  }
  return s;
}

function decodeTypeTensor(r: Reader): TypeProtoTensor {
  const t: TypeProtoTensor = { elemType: 0 };
  for (const [field, wt, at] of fields(r)) {
    if (field === 1 && wt === 0) t.elemType = r.int32();
    else if (field === 2 && wt === 2) t.shape = decodeShape(r.message());
    else keep(t, r.unknown(at, field, wt));
  }
  return t;
}

function decodeType(r: Reader): TypeProto {
  const t: TypeProto = {};
  for (const [field, wt, at] of fields(r)) {
    if (field === 1 && wt === 2) t.tensorType = decodeTypeTensor(r.message());
    else keep(t, r.unknown(at, field, wt));
  }
  return t;
}

export function decodeValueInfo(r: Reader): ValueInfoProto {
  const v: ValueInfoProto = { name: '' };
  for (const [field, wt, at] of fields(r)) {
    if (field === 1 && wt === 2) v.name = r.string();
    else if (field === 2 && wt === 2) v.type = decodeType(r.message());
    else keep(v, r.unknown(at, field, wt));
  }
  return v;
}

function decodeGraph(r: Reader): GraphProto {
  const g: GraphProto = { node: [], name: '', initializer: [], input: [], output: [], valueInfo: [] };
  for (const [field, wt, at] of fields(r)) {
    if (wt === 2) {
      if (field === 1) g.node.push(decodeNode(r.message()));
      else if (field === 2) g.name = r.string();
      else if (field === 5) g.initializer.push(decodeTensor(r.message()));
      else if (field === 11) g.input.push(decodeValueInfo(r.message()));
      else if (field === 12) g.output.push(decodeValueInfo(r.message()));
      else if (field === 13) g.valueInfo.push(decodeValueInfo(r.message()));
      else keep(g, r.unknown(at, field, wt));
    } else keep(g, r.unknown(at, field, wt));
  }
  return g;
}

export function decodeOperatorSetId(r: Reader): OperatorSetIdProto {
  const o: OperatorSetIdProto = { domain: '', version: 0 };
  for (const [field, wt, at] of fields(r)) {
    if (field === 1 && wt === 2) o.domain = r.string();
    else if (field === 2 && wt === 0) o.version = Number(r.int64());
    else keep(o, r.unknown(at, field, wt));
  }
  return o;
}

/** Decodes a serialised ModelProto. Byte fields (raw_data) are views into `bytes`: keep it alive. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const r = new Reader(bytes);
  const m: ModelProto = {
    irVersion: 0,
    producerName: '',
    graph: { node: [], name: '', initializer: [], input: [], output: [], valueInfo: [] },
    opsetImport: [],
  };
  try {
    for (const [field, wt, at] of fields(r)) {
      if (field === 1 && wt === 0) m.irVersion = Number(r.int64());
      else if (field === 2 && wt === 2) m.producerName = r.string();
      else if (field === 7 && wt === 2) m.graph = decodeGraph(r.message());
      else if (field === 8 && wt === 2) m.opsetImport.push(decodeOperatorSetId(r.message()));
      else keep(m, r.unknown(at, field, wt));
    }
  } catch (err) {
    throw invalidModel(`not a readable ONNX model: ${(err as Error).message}`, err);
  }
  return m;
}

// ---- encoding ----
// Fields go out in field-number order with the packing onnx.proto (proto2) declares, as protobuf's
// serialisers write them: re-encoding an untouched exported model reproduces its bytes.

function encodeEntry(e: StringStringEntryProto): Writer {
  const w = new Writer(e.unknown);
  if (e.key) w.string(1, e.key);
  if (e.value) w.string(2, e.value);
  return w;
}

function encodeTensor(t: TensorProto): Writer {
  const w = new Writer(t.unknown);
  for (const d of t.dims) w.int64(1, BigInt(d));
  if (t.dataType) w.int32(2, t.dataType);
  if (t.floatData?.length) w.packedFloat(4, t.floatData);
  if (t.int32Data?.length) w.packedInt32(5, t.int32Data);
  if (t.int64Data?.length) w.packedInt64(7, t.int64Data);
  if (t.name) w.string(8, t.name);
  if (t.rawData) w.bytes(9, t.rawData);
  for (const e of t.externalData ?? []) w.message(13, encodeEntry(e));
  if (t.dataLocation !== undefined) w.int32(14, t.dataLocation);
  return w;
}

function encodeAttribute(a: AttributeProto): Writer {
  const w = new Writer(a.unknown);
  if (a.name) w.string(1, a.name);
  if (a.f !== undefined) w.float(2, a.f);
  if (a.i !== undefined) w.int64(3, a.i);
  if (a.s) w.bytes(4, a.s);
  if (a.t) w.message(5, encodeTensor(a.t));
  for (const f of a.floats) w.float(7, f);
  for (const i of a.ints) w.int64(8, i);
  for (const s of a.strings) w.bytes(9, s);
  if (a.type) w.int32(20, a.type);
  return w;
}

function encodeNode(n: NodeProto): Writer {
  const w = new Writer(n.unknown);
  for (const s of n.input) w.string(1, s);
  for (const s of n.output) w.string(2, s);
  if (n.name) w.string(3, n.name);
  if (n.opType) w.string(4, n.opType);
  for (const a of n.attribute) w.message(5, encodeAttribute(a));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function encodeValueInfo(v: ValueInfoProto): Writer {
  const w = new Writer(v.unknown);
  if (v.name) w.string(1, v.name);
  if (v.type) {
    const type = new Writer(v.type.unknown);
    const tt = v.type.tensorType;
    if (tt) {
      const tw = new Writer(tt.unknown);
      if (tt.elemType) tw.int32(1, tt.elemType);
      if (tt.shape) {
        const sw = new Writer(tt.shape.unknown);
        for (const d of tt.shape.dim) {
          const dw = new Writer(d.unknown);
          if (d.dimValue !== undefined) dw.int64(1, BigInt(d.dimValue));
          if (d.dimParam !== undefined) dw.string(2, d.dimParam);
          sw.message(1, dw);
        }
        tw.message(2, sw);
      }
      type.message(1, tw);
    }
    w.message(2, type);
  }
  return w;
}

export function encodeModel(model: ModelProto): Uint8Array {
  const w = new Writer(model.unknown);
  if (model.irVersion) w.int64(1, BigInt(model.irVersion));
  if (model.producerName) w.string(2, model.producerName);
  const g = model.graph;
  const gw = new Writer(g.unknown);
  for (const n of g.node) gw.message(1, encodeNode(n));
  if (g.name) gw.string(2, g.name);
  for (const t of g.initializer) gw.message(5, encodeTensor(t));
  for (const v of g.input) gw.message(11, encodeValueInfo(v));
  for (const v of g.output) gw.message(12, encodeValueInfo(v));
  for (const v of g.valueInfo) gw.message(13, encodeValueInfo(v));
  w.message(7, gw);
  for (const o of model.opsetImport) {
    const ow = new Writer(o.unknown);
    if (o.domain) ow.string(1, o.domain);
    ow.int64(2, BigInt(o.version));
    w.message(8, ow);
  }
  return w.finish();
}

// ---- tensors ----

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function littleEndianBytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** The tensor's data as little-endian bytes, for data stored in the model file itself. */
export function inlineTensorBytes(t: TensorProto): Uint8Array {
  if (t.dataLocation === DataLocation.EXTERNAL) throw new Error(`tensor ${t.name} is stored externally: use loadTensorBytes (external-data.ts)`);
  if (t.rawData) return t.rawData;
  if (t.floatData?.length) return littleEndianBytes(Float32Array.from(t.floatData));
  if (t.int64Data?.length) return littleEndianBytes(BigInt64Array.from(t.int64Data));
  if (t.int32Data?.length) {
    // int32_data carries every type narrower than 32 bits, one element per entry.
    const v = t.int32Data;
    switch (t.dataType) {
      case DataType.FLOAT16:
      case DataType.BFLOAT16:
      case DataType.UINT16:
        return littleEndianBytes(Uint16Array.from(v));
      case DataType.INT16:
        return littleEndianBytes(Int16Array.from(v));
      case DataType.INT8:
        return littleEndianBytes(Int8Array.from(v));
      case DataType.UINT8:
      case DataType.BOOL:
        return Uint8Array.from(v);
      default:
        return littleEndianBytes(Int32Array.from(v));
    }
  }
  return new Uint8Array(0);
}

/** Floating-point tensor data (float32 or float16 bytes) as float32 values. */
export function bytesToFloat32(dataType: number, bytes: Uint8Array): Float32Array {
  // An aligned copy: views into a protobuf buffer start at any byte (and a Buffer's slice() is a view, not a copy).
  const copy = new Uint8Array(bytes);
  if (dataType === DataType.FLOAT) return new Float32Array(copy.buffer, 0, copy.length / 4);
  if (dataType === DataType.FLOAT16) return float16ToFloat32(new Uint16Array(copy.buffer, 0, copy.length / 2));
  throw new Error(`expected a float32 or float16 tensor, got ${elemTypeName(dataType)}`);
}

/** Replaces a float tensor's data (kept in its own data type) with `values`, stored inline as raw_data. */
export function setTensorFloat32(t: TensorProto, values: Float32Array): void {
  if (values.length !== elementCount(t.dims)) {
    throw new Error(`tensor ${t.name}: ${values.length} values for shape [${t.dims.join(', ')}]`);
  }
  if (t.dataType === DataType.FLOAT) t.rawData = littleEndianBytes(values.slice());
  else if (t.dataType === DataType.FLOAT16) t.rawData = littleEndianBytes(float32ToFloat16(values));
  else throw new Error(`tensor ${t.name} is ${elemTypeName(t.dataType)}, not a float tensor`);
  delete t.floatData;
  delete t.int32Data;
  delete t.externalData;
  delete t.dataLocation;
}

export type TensorValues = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;

/** A tensor with inline raw data. Float16 data is given as bit patterns (Uint16Array). */
export function makeTensor(name: string, dataType: number, dims: number[], values: TensorValues): TensorProto {
  const size = bytesPerElement(dataType);
  if (size === undefined || values.byteLength !== size * elementCount(dims)) {
    throw new Error(`tensor ${name}: ${values.byteLength} bytes do not fit ${elemTypeName(dataType)} [${dims.join(', ')}]`);
  }
  return { name, dims: [...dims], dataType, rawData: littleEndianBytes(values) };
}

// ---- building nodes ----

export const attr = {
  int: (name: string, v: number | bigint): AttributeProto => ({ ...bare(name, AttributeType.INT), i: BigInt(v) }),
  float: (name: string, v: number): AttributeProto => ({ ...bare(name, AttributeType.FLOAT), f: v }),
  string: (name: string, v: string): AttributeProto => ({ ...bare(name, AttributeType.STRING), s: new TextEncoder().encode(v) }),
  tensor: (name: string, t: TensorProto): AttributeProto => ({ ...bare(name, AttributeType.TENSOR), t }),
  ints: (name: string, v: readonly (number | bigint)[]): AttributeProto => ({ ...bare(name, AttributeType.INTS), ints: v.map((x) => BigInt(x)) }),
  floats: (name: string, v: readonly number[]): AttributeProto => ({ ...bare(name, AttributeType.FLOATS), floats: [...v] }),
};

function bare(name: string, type: number): AttributeProto {
  return { name, type, floats: [], ints: [], strings: [] };
}

export function makeNode(opType: string, input: string[], output: string[], name = '', attribute: AttributeProto[] = [], domain = ''): NodeProto {
  return { input, output, name, opType, domain, attribute };
}

export function makeValueInfo(name: string, elemType: number, shape: readonly (number | string)[]): ValueInfoProto {
  const dim = shape.map((d): TensorShapeDimension => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

/** A value info's shape as onnxruntime-node reports it: numbers, symbolic names, '' for an unnamed dim. */
export function valueInfoShape(v: ValueInfoProto): (number | string)[] {
  return (v.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimValue ?? d.dimParam ?? '');
}
