// Changing a few initializers of an ONNX model and handing the result to onnxruntime from memory,
// without writing the model anywhere. Edited tensors go inline into the re-encoded model; the others
// keep their place, external data included, which onnxruntime reads from the model's own folder.
// onnxruntime reads external data either all from disk or all from memory, so a model whose edited
// tensors would take it past protobuf's 2 GB limit gets every external and edited tensor in memory.
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { invalidModel } from '../errors.ts';
import type { ModelBuffer } from '../onnx-model.ts';
import { loadTensorBytes, setExternalData } from '../onnx/external-data.ts';
import { DataLocation, bytesToFloat32, decodeModel, encodeModel, inlineTensorBytes, setTensorFloat32, type ModelProto, type TensorProto } from '../onnx/proto.ts';
import { WeightIndex, type WeightSlot } from './weights.ts';

/** protobuf refuses to parse a message of 2 GB or more. */
export const MAX_MODEL_BYTES = 2 ** 31 - 1;
/** Size of each in-memory external data block. */
const BLOCK_BYTES = 2 ** 30;
/** In-memory tensors start on this boundary, aligned for any element type. */
const ALIGNMENT = 64;

export class ModelEditor {
  private index?: WeightIndex;
  private readonly edited = new Set<TensorProto>();
  private readonly written = new Set<WeightSlot>();
  /** Bytes the re-encoded model gains over the file. */
  private growth = 0;

  private constructor(
    readonly path: string,
    readonly model: ModelProto,
    private readonly fileBytes: number,
  ) {}

  static async open(path: string): Promise<ModelEditor> {
    const bytes = await readFile(path).catch((error: unknown) => {
      throw invalidModel(`cannot read ${path}`, error);
    });
    try {
      // A plain Uint8Array, not a Buffer: Buffer's slice() makes views, not the copies proto.ts expects.
      return new ModelEditor(path, decodeModel(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)), bytes.length);
    } catch (error) {
      throw invalidModel(`${path}: ${(error as Error).message}`, error);
    }
  }

  get dir(): string {
    return dirname(this.path);
  }

  get weights(): WeightIndex {
    return (this.index ??= new WeightIndex(this.model));
  }

  get changed(): boolean {
    return this.edited.size > 0;
  }

  /** The weight a slot's node reads, as float32, in its stored layout. */
  async read(slot: WeightSlot): Promise<Float32Array> {
    const t = slot.initializer;
    return bytesToFloat32(t.dataType, await loadTensorBytes(t, this.dir));
  }

  /**
   * Gives the slot's node `values` (stored layout, stored in the initializer's element type) of shape
   * `dims`; a shared initializer is copied for this node alone. A slot is written once.
   */
  write(slot: WeightSlot, values: Float32Array, dims: readonly number[] = slot.initializer.dims): void {
    if (this.written.has(slot)) throw new Error(`${slot.module} is written twice`);
    this.written.add(slot);
    let target = slot.initializer;
    if (slot.shared) {
      target = { name: `${target.name}::${slot.module}`, dims: [...dims], dataType: target.dataType };
      this.model.graph.initializer.push(target);
      slot.node.input[slot.input] = target.name;
    } else {
      if (target.dataLocation !== DataLocation.EXTERNAL) this.growth -= inlineTensorBytes(target).length;
      if (dims.join() !== target.dims.join()) this.reshape(target, dims);
    }
    setTensorFloat32(target, values);
    this.growth += target.rawData!.length;
    this.edited.add(target);
  }

  /** Models from before IR version 4 also declare initializers as graph inputs, with their shapes. */
  private reshape(t: TensorProto, dims: readonly number[]): void {
    t.dims = [...dims];
    const g = this.model.graph;
    for (const info of [...g.input, ...g.valueInfo]) {
      const shape = info.name === t.name ? info.type?.tensorType?.shape : undefined;
      if (shape) shape.dim = dims.map((d) => ({ dimValue: d }));
    }
  }

  /** The edited model, for OnnxModel.fromBuffer. `maxModelBytes` is protobuf's limit (smaller in tests). */
  async toBuffer(maxModelBytes = MAX_MODEL_BYTES): Promise<ModelBuffer> {
    const externalData = this.fileBytes + this.growth > maxModelBytes ? await this.moveToMemory() : [];
    return { bytes: encodeModel(this.model), dir: this.dir, externalData };
  }

  /** Points every external and every edited tensor at in-memory blocks. */
  private async moveToMemory(): Promise<{ path: string; data: Uint8Array }[]> {
    const blocks: { path: string; data: Uint8Array }[] = [];
    let parts: { bytes: Uint8Array; offset: number }[] = [];
    let size = 0;
    const flush = () => {
      const data = new Uint8Array(size);
      for (const { bytes, offset } of parts) data.set(bytes, offset);
      blocks.push({ path: `sdql-memory-${blocks.length}.bin`, data });
      parts = [];
      size = 0;
    };
    for (const t of this.model.graph.initializer) {
      const external = t.dataLocation === DataLocation.EXTERNAL;
      if (!external && !this.edited.has(t)) continue;
      const bytes = external ? await loadTensorBytes(t, this.dir) : inlineTensorBytes(t);
      if (size > 0 && size + bytes.length > BLOCK_BYTES) flush();
      parts.push({ bytes, offset: size });
      setExternalData(t, `sdql-memory-${blocks.length}.bin`, size, bytes.length);
      size += Math.ceil(bytes.length / ALIGNMENT) * ALIGNMENT;
    }
    if (size > 0) flush();
    return blocks;
  }
}
