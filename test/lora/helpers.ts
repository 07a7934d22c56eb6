// Shared by the LoRA and embedding tests: a safetensors writer, random LoRA factors, a tiny model with
// the exporter's names for one layer of each kind, and reading weights back from an edited model.
import { Net, type Precision } from '../../src/diffusion/fixtures/net.ts';
import type { ModelBuffer } from '../../src/diffusion/onnx-model.ts';
import { externalDataRef, loadTensorBytes } from '../../src/diffusion/onnx/external-data.ts';
import { DataLocation, attr, bytesToFloat32, decodeModel, inlineTensorBytes, type ModelProto, type TensorProto } from '../../src/diffusion/onnx/proto.ts';
import type { TestTensor } from '../../src/diffusion/fixtures/adapters.ts';

export { randomLora, writeSafetensors, type TestTensor } from '../../src/diffusion/fixtures/adapters.ts';

/** The layers of the tiny model, by module path, with their torch weight shapes. */
export const TINY_LAYERS = {
  conv3x3: { module: 'blocks.0.conv1', shape: [6, 4, 3, 3] },
  conv1x1: { module: 'blocks.0.proj_in', shape: [8, 6, 1, 1] },
  linear: { module: 'blocks.0.attn.to_q', shape: [12, 8] },
} as const;
export const TINY_INPUT = [1, 4, 5, 5];

/** x [1, 4, 5, 5] → 3×3 Conv → 1×1 Conv → tokens [1, 25, 8] → Linear (MatMul on a transposed anonymous
 * weight, no bias) → y [1, 25, 12], named as torch.onnx names a module `blocks.0`. */
export function tinyModel(precision: Precision, seed = 7): ModelProto {
  const net = new Net(seed, precision);
  const g = net.g;
  const x = g.input('x', net.float, TINY_INPUT);
  let h = net.conv('/blocks.0/conv1', x, 4, 6, 3);
  h = net.conv('/blocks.0/proj_in', h, 6, 8, 1);
  const flat = g.op('/blocks.0', 'Reshape', [h, g.int64s('/blocks.0', [0, 8, -1])], [attr.int('allowzero', 0)]);
  const tokens = g.op('/blocks.0', 'Transpose', [flat], [attr.ints('perm', [0, 2, 1])]);
  const y = net.linear('/blocks.0/attn/to_q', tokens, 8, 12, false);
  g.op('', 'Identity', [y], [], 'y');
  g.output('y', net.float, [1, 25, 12]);
  return net.model();
}

/** An initializer's values as float32, wherever the tensor lives. */
export async function tensorValues(t: TensorProto, dir: string, memory: ModelBuffer['externalData'] = []): Promise<Float32Array> {
  const ref = externalDataRef(t);
  const block = ref && memory.find((m) => m.path === ref.location);
  if (block) return bytesToFloat32(t.dataType, block.data.subarray(ref.offset, ref.offset + ref.length!));
  return bytesToFloat32(t.dataType, t.dataLocation === DataLocation.EXTERNAL ? await loadTensorBytes(t, dir) : inlineTensorBytes(t));
}

/** The initializer `name` of an edited model, and its values. */
export async function bufferTensor(buffer: ModelBuffer, name: string): Promise<{ tensor: TensorProto; values: Float32Array }> {
  const tensor = decodeModel(buffer.bytes).graph.initializer.find((t) => t.name === name);
  if (!tensor) throw new Error(`no initializer ${name}`);
  return { tensor, values: await tensorValues(tensor, buffer.dir, buffer.externalData) };
}

/** The initializer a node reads at input `index`, found by the node's name. */
export function nodeInput(model: ModelProto, nodeName: string, index: number): string {
  const node = model.graph.node.find((n) => n.name === nodeName);
  if (!node) throw new Error(`no node ${nodeName}`);
  return node.input[index];
}

/** W + scale·up·down for a torch weight [out, fanIn…] computed the plain way, in float64. */
export function mergedDirectly(weight: Float32Array, up: TestTensor, down: TestTensor, scale: number): Float64Array {
  const [out, rank] = up.shape;
  const fanIn = down.data.length / rank;
  const merged = Float64Array.from(weight);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < fanIn; k++) {
      let sum = 0;
      for (let r = 0; r < rank; r++) sum += up.data[o * rank + r] * down.data[r * fanIn + k];
      merged[o * fanIn + k] += scale * sum;
    }
  }
  return merged;
}

/** [a, b] → [b, a] (row-major). */
export function transpose(values: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = values[i * cols + j];
  return out;
}
