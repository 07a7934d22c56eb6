// Protocol-buffer wire format (https://protobuf.dev/programming-guides/encoding/): the few primitives
// the ONNX messages need. Bytes fields decode as views into the input, so a 2 GB model is never copied.

export const WireType = { Varint: 0, Fixed64: 1, LengthDelimited: 2, Fixed32: 5 } as const;
type WireType = (typeof WireType)[keyof typeof WireType];

/** A field this code does not interpret, kept byte for byte (tag included) so re-encoding preserves it. */
export interface UnknownField {
  field: number;
  bytes: Uint8Array;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });
const utf8Encoder = new TextEncoder();

export class Reader {
  pos: number;
  private readonly view: DataView;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** Reads a varint as two unsigned 32-bit halves (JS numbers lose precision above 2^53). */
  private varintParts(): [lo: number, hi: number] {
    let lo = 0;
    let hi = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new RangeError('protobuf: truncated varint');
      const b = this.buf[this.pos++];
      if (shift < 28) lo |= (b & 0x7f) << shift;
      else if (shift === 28) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (shift - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
      shift += 7;
    }
    throw new RangeError('protobuf: varint longer than 10 bytes');
  }

  /** An unsigned varint that fits a JS number (tags, lengths, dims, enum values). */
  uint(): number {
    if (this.pos < this.end && this.buf[this.pos] < 0x80) return this.buf[this.pos++];
    const [lo, hi] = this.varintParts();
    if (hi > 0x1fffff) throw new RangeError('protobuf: varint beyond 2^53');
    return hi * 0x1_0000_0000 + lo;
  }

  /** An int32 field: negative values arrive sign-extended to 64 bits. */
  int32(): number {
    return this.varintParts()[0] | 0;
  }

  int64(): bigint {
    const [lo, hi] = this.varintParts();
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
  }

  float(): number {
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  bytes(): Uint8Array {
    const len = this.uint();
    const start = this.pos;
    if (start + len > this.end) throw new RangeError('protobuf: length-delimited field runs past its message');
    this.pos += len;
    return this.buf.subarray(start, start + len);
  }

  string(): string {
    return utf8.decode(this.bytes());
  }

  /** A sub-reader over a nested message. */
  message(): Reader {
    const len = this.uint();
    if (this.pos + len > this.end) throw new RangeError('protobuf: nested message runs past its parent');
    const sub = new Reader(this.buf, this.pos, this.pos + len);
    this.pos += len;
    return sub;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WireType.Varint:
        this.varintParts();
        return;
      case WireType.Fixed64:
        this.pos += 8;
        break;
      case WireType.LengthDelimited: {
        const len = this.uint();
        this.pos += len;
        break;
      }
      case WireType.Fixed32:
        this.pos += 4;
        break;
      default:
        throw new RangeError(`protobuf: unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new RangeError('protobuf: field runs past its message');
  }

  /** Skips the field whose tag was just read and returns it whole, for re-encoding. */
  unknown(tagStart: number, field: number, wireType: number): UnknownField {
    this.skip(wireType);
    return { field, bytes: this.buf.subarray(tagStart, this.pos) };
  }

  /** Repeated scalars arrive packed (one length-delimited run) or one tag per value: parsers must take both. */
  repeated<T>(wireType: number, out: T[], read: () => T): void {
    if (wireType !== WireType.LengthDelimited) {
      out.push(read());
      return;
    }
    const len = this.uint();
    const end = this.pos + len;
    if (end > this.end) throw new RangeError('protobuf: packed field runs past its message');
    while (this.pos < end) out.push(read());
  }
}

/** Iterates the fields of a message: `for (const [field, wireType, tagStart] of fields(r))`. */
export function* fields(r: Reader): Generator<[field: number, wireType: number, tagStart: number]> {
  while (r.pos < r.end) {
    const tagStart = r.pos;
    const tag = r.uint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new RangeError('protobuf: field number 0');
    yield [field, tag & 7, tagStart];
  }
}

const LARGE = 16 * 1024;

/**
 * Serialises one message. Writes go to a growing scratch buffer; large byte fields and nested messages
 * are kept as separate chunks and only copied once, into the final buffer.
 * Unknown fields are written back in field-number order among the known ones, as protobuf's own
 * serialisers order fields, so a model that only passes through comes out byte for byte the same.
 */
export class Writer {
  private chunks: Uint8Array[] = [];
  private scratch = new Uint8Array(256);
  private used = 0;
  private total = 0;
  private nextUnknown = 0;

  constructor(private readonly unknownFields: readonly UnknownField[] = []) {}

  get length(): number {
    return this.total + this.used;
  }

  private reserve(n: number): void {
    if (this.used + n <= this.scratch.length) return;
    const next = new Uint8Array(Math.max(this.scratch.length * 2, this.used + n));
    next.set(this.scratch.subarray(0, this.used));
    this.scratch = next;
  }

  private flushScratch(): void {
    if (this.used === 0) return;
    this.chunks.push(this.scratch.slice(0, this.used));
    this.total += this.used;
    this.used = 0;
  }

  private append(data: Uint8Array): void {
    if (data.length >= LARGE) {
      this.flushScratch();
      this.chunks.push(data);
      this.total += data.length;
    } else {
      this.reserve(data.length);
      this.scratch.set(data, this.used);
      this.used += data.length;
    }
  }

  private rawVarint(v: number): void {
    this.reserve(10);
    while (v >= 0x80) {
      this.scratch[this.used++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.scratch[this.used++] = v;
  }

  private rawVarint64(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    this.reserve(10);
    while (u >= 0x80n) {
      this.scratch[this.used++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.scratch[this.used++] = Number(u);
  }

  private tag(field: number, wireType: WireType): void {
    const pending = this.unknownFields;
    while (this.nextUnknown < pending.length && pending[this.nextUnknown].field < field) {
      this.append(pending[this.nextUnknown++].bytes);
    }
    this.rawVarint(field * 8 + wireType);
  }

  int32(field: number, v: number): void {
    this.tag(field, WireType.Varint);
    if (v >= 0) this.rawVarint(v);
    else this.rawVarint64(BigInt(v));
  }

  int64(field: number, v: bigint): void {
    this.tag(field, WireType.Varint);
    this.rawVarint64(v);
  }

  float(field: number, v: number): void {
    this.tag(field, WireType.Fixed32);
    this.reserve(4);
    new DataView(this.scratch.buffer).setFloat32(this.used, v, true);
    this.used += 4;
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, WireType.LengthDelimited);
    this.rawVarint(data.length);
    this.append(data);
  }

  string(field: number, s: string): void {
    this.bytes(field, utf8Encoder.encode(s));
  }

  message(field: number, child: Writer): void {
    child.finishUnknown();
    this.tag(field, WireType.LengthDelimited);
    this.rawVarint(child.length);
    if (child.total === 0) {
      this.append(child.scratch.subarray(0, child.used));
      return;
    }
    child.flushScratch();
    this.flushScratch();
    for (const c of child.chunks) this.chunks.push(c);
    this.total += child.total;
  }

  packedInt32(field: number, values: ArrayLike<number>): void {
    const inner = new Writer();
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v >= 0) inner.rawVarint(v);
      else inner.rawVarint64(BigInt(v));
    }
    this.message(field, inner);
  }

  packedInt64(field: number, values: ArrayLike<bigint>): void {
    const inner = new Writer();
    for (let i = 0; i < values.length; i++) inner.rawVarint64(values[i]);
    this.message(field, inner);
  }

  packedFloat(field: number, values: ArrayLike<number>): void {
    this.bytes(field, new Uint8Array(Float32Array.from(values).buffer));
  }

  private finishUnknown(): void {
    const pending = this.unknownFields;
    while (this.nextUnknown < pending.length) this.append(pending[this.nextUnknown++].bytes);
  }

  finish(): Uint8Array {
    this.finishUnknown();
    this.flushScratch();
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.total);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}
