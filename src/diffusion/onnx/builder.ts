// Builds graphs whose names follow torch.onnx's exporter: nodes named after the module path
// (`/text_model/encoder/layers.0/self_attn/q_proj/MatMul`, repeats in a scope get `_1`, `_2`...), outputs
// `<node>_output_0`, parameters under their state-dict name, and anonymous `onnx::MatMul_<n>`
// initializers for the transposed Linear weights the exporter folds.
import { DataType, makeNode, makeTensor, makeValueInfo, attr, type AttributeProto, type GraphProto, type ModelProto, type TensorValues } from './proto.ts';

export class GraphBuilder {
  readonly graph: GraphProto;
  private readonly seen = new Map<string, number>();
  private nextAnonymous: number;

  constructor(name = 'main_graph', firstAnonymousId = 1000) {
    this.graph = { node: [], name, initializer: [], input: [], output: [], valueInfo: [] };
    this.nextAnonymous = firstAnonymousId;
  }

  input(name: string, elemType: number, shape: (number | string)[]): string {
    this.graph.input.push(makeValueInfo(name, elemType, shape));
    return name;
  }

  /** Declares a graph output; the value must be produced by a node given this name as its output. */
  output(name: string, elemType: number, shape: (number | string)[]): void {
    this.graph.output.push(makeValueInfo(name, elemType, shape));
  }

  initializer(name: string, dataType: number, dims: number[], values: TensorValues): string {
    this.graph.initializer.push(makeTensor(name, dataType, dims, values));
    return name;
  }

  /** An initializer the exporter created while folding, named after the op that consumes it. */
  anonymous(consumerOp: string, dataType: number, dims: number[], values: TensorValues): string {
    return this.initializer(this.anonymousName(consumerOp), dataType, dims, values);
  }

  /** The next anonymous initializer name for `consumerOp`. */
  anonymousName(consumerOp: string): string {
    return `onnx::${consumerOp}_${this.nextAnonymous++}`;
  }

  private nodeName(scope: string, opType: string): string {
    const base = `${scope}/${opType}`;
    const n = this.seen.get(base) ?? 0;
    this.seen.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }

  /** Adds a node; returns its output names (`<node name>_output_<i>` unless given). */
  node(scope: string, opType: string, inputs: string[], attributes: AttributeProto[] = [], outputs: string[] | number = 1): string[] {
    const name = this.nodeName(scope, opType);
    const out = typeof outputs === 'number' ? Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`) : outputs;
    this.graph.node.push(makeNode(opType, inputs, out, name, attributes));
    return out;
  }

  /** A single-output node. */
  op(scope: string, opType: string, inputs: string[], attributes: AttributeProto[] = [], output?: string): string {
    return this.node(scope, opType, inputs, attributes, output ? [output] : 1)[0];
  }

  /** A Constant node, as the exporter emits for shapes and axes. */
  constant(scope: string, dataType: number, dims: number[], values: TensorValues): string {
    return this.op(scope, 'Constant', [], [attr.tensor('value', makeTensor('', dataType, dims, values))]);
  }

  int64s(scope: string, values: number[]): string {
    return this.constant(scope, DataType.INT64, [values.length], BigInt64Array.from(values, (v) => BigInt(v)));
  }

  model(opsetVersion: number, producerName = 'pytorch'): ModelProto {
    // IR version 7 is what torch 1.13 writes for opset 14.
    return { irVersion: 7, producerName, graph: this.graph, opsetImport: [{ domain: '', version: opsetVersion }] };
  }
}
