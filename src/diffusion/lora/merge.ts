// The merge itself: W' = W + Σ scale × (alpha / rank) × up·down, as diffusers 0.21.4 computes a LoRA
// layer (LoRALinearLayer / LoRAConv2dLayer scale the up projection by network_alpha / rank, and the
// pipeline's `cross_attention_kwargs["scale"]` multiplies the whole branch, in the UNet and — through
// adjust_lora_scale_text_encoder — in the text encoder alike). A convolution's down projection is a
// convolution with the layer's kernel ([rank, in, kh, kw]) and its up projection a 1×1 one, so its
// update is up·down with down flattened to [rank, in·kh·kw], laid out as the layer's weight.
//
// The products run through onnxruntime — a float32 GEMM, as torch's own fuse_lora — because a LoRA
// on every layer of an SD UNet takes tens of GFLOP, which plain JavaScript needs minutes for.
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel, makeNode, makeValueInfo } from '../onnx/proto.ts';
import { sessionOptions, type RuntimeOptions } from '../onnx-model.ts';

export interface LoraUpdate {
  /** [out, rank], row-major. */
  up: Float32Array;
  /** [rank, fanIn], row-major (fanIn = in·kh·kw for a convolution). */
  down: Float32Array;
  rank: number;
  /** The user's weight times alpha / rank. */
  scale: number;
}

/** merged = weight + a·b, for weight [rows, cols], a [rows, rank], b [rank, cols]. */
function mergeGraph(): Uint8Array {
  const f = DataType.FLOAT;
  return encodeModel({
    irVersion: 7,
    producerName: 'sdql',
    opsetImport: [{ domain: '', version: 14 }],
    graph: {
      name: 'lora_merge',
      node: [makeNode('MatMul', ['a', 'b'], ['update'], 'update'), makeNode('Add', ['weight', 'update'], ['merged'], 'merge')],
      initializer: [],
      input: [makeValueInfo('weight', f, ['rows', 'cols']), makeValueInfo('a', f, ['rows', 'rank']), makeValueInfo('b', f, ['rank', 'cols'])],
      output: [makeValueInfo('merged', f, ['rows', 'cols'])],
      valueInfo: [],
    },
  });
}

export class LoraMerger {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(runtime: RuntimeOptions = {}): Promise<LoraMerger> {
    return new LoraMerger(await ort.InferenceSession.create(mergeGraph(), sessionOptions({ ...runtime, executionProviders: ['cpu'] })));
  }

  /**
   * The weight plus the updates, for a weight of `out` rows of `fanIn` values; `transposed`: stored
   * [fanIn, out], as the exporter stores Linear weights for MatMul. All updates go into one product:
   * Σ upᵢ·downᵢ is [up₁ … upₙ]·[down₁; …; downₙ].
   */
  async merge(weight: Float32Array, out: number, fanIn: number, transposed: boolean, updates: readonly LoraUpdate[]): Promise<Float32Array> {
    if (weight.length !== out * fanIn) throw new RangeError(`a weight of ${weight.length} values is not ${out} × ${fanIn}`);
    const rank = updates.reduce((sum, u) => sum + u.rank, 0);
    const [rows, cols] = transposed ? [fanIn, out] : [out, fanIn];
    const a = new Float32Array(rows * rank);
    const b = new Float32Array(rank * cols);
    let offset = 0;
    for (const { up, down, rank: r, scale } of updates) {
      for (let i = 0; i < r; i++) {
        const k = offset + i;
        if (transposed) {
          // Stored [fanIn, out]: the update is downᵀ·(scale·up)ᵀ.
          for (let row = 0; row < fanIn; row++) a[row * rank + k] = down[i * fanIn + row];
          for (let col = 0; col < out; col++) b[k * cols + col] = scale * up[col * r + i];
        } else {
          for (let row = 0; row < out; row++) a[row * rank + k] = scale * up[row * r + i];
          b.set(down.subarray(i * fanIn, (i + 1) * fanIn), k * cols);
        }
      }
      offset += r;
    }
    const { merged } = await this.session.run({
      weight: new ort.Tensor('float32', weight, [rows, cols]),
      a: new ort.Tensor('float32', a, [rows, rank]),
      b: new ort.Tensor('float32', b, [rank, cols]),
    });
    return merged.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
