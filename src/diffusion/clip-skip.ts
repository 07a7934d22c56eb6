// AUTOMATIC1111's "Clip skip" N on an ONNX text encoder: the prompt is hidden_states[-N] (the input of
// layer L + 1 − N, as transformers counts hidden states) through the encoder's final LayerNorm. Most
// SD exports output only last_hidden_state, so the hidden states are made graph outputs: each is
// the value a layer's first LayerNorm reads (the last, the final LayerNorm's), found through the
// LayerNorm weights, which keep their state-dict names in torch exports. The final LayerNorm is then
// applied here, with the graph's own weights.
import { invalidModel } from './errors.ts';
import type { ModelEditor } from './lora/model-editor.ts';
import { loadTensorBytes } from './onnx/external-data.ts';
import { bytesToFloat32, makeValueInfo, type GraphProto, type NodeProto, type TensorProto } from './onnx/proto.ts';

export interface LayerNormWeights {
  weight: Float32Array;
  bias: Float32Array;
  eps: number;
}

/** Where a text encoder's hidden states come out, and its final LayerNorm. */
export interface HiddenStates {
  /** Graph outputs: [0] the embeddings, [i] the output of encoder layer i (as transformers' hidden_states). */
  outputs: string[];
  finalLayerNorm: LayerNormWeights;
}

/** transformers' CLIPTextConfig.layer_norm_eps, which every SD text encoder keeps; a decomposed LayerNorm does not name it. */
const CLIP_LAYER_NORM_EPS = 1e-5;

const layerNormWeight = (layer: number) => `text_model.encoder.layers.${layer}.layer_norm1.weight`;
const FINAL_WEIGHT = 'text_model.final_layer_norm.weight';
const FINAL_BIAS = 'text_model.final_layer_norm.bias';

/**
 * Makes the hidden states of the editor's text encoder graph outputs (those it already outputs as
 * `hidden_states.<i>` are used as they are) and reads its final LayerNorm. MODEL_INVALID when the
 * graph does not show them.
 */
export async function exposeHiddenStates(editor: ModelEditor): Promise<HiddenStates> {
  const graph = editor.model.graph;
  const producers = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const node of graph.node) {
    for (const output of node.output) producers.set(output, node);
    for (const input of node.input) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  }
  const fail = (what: string) => invalidModel(`${editor.path}: clipSkip needs the text encoder's hidden states, and ${what}`);
  const normInput = (weightName: string): { value: string; eps: number } | undefined => {
    for (const node of consumers.get(weightName) ?? []) {
      if (node.opType === 'LayerNormalization') return { value: node.input[0], eps: epsilonOf(node) };
      if (node.opType === 'SkipLayerNormalization') {
        // onnxruntime's fusion of the residual Add and the LayerNorm: the sum is its optional fourth output.
        while (node.output.length < 4) node.output.push('');
        node.output[3] ||= `${node.name || weightName}/sdql_skip_sum`;
        return { value: node.output[3], eps: epsilonOf(node) };
      }
      // torch's opset < 17 LayerNorm: (x − ReduceMean(x)) / √(var + ε) · weight + bias.
      const mean = findUpstream(node, producers, (n) => n.opType === 'ReduceMean');
      if (mean) return { value: mean.input[0], eps: CLIP_LAYER_NORM_EPS };
    }
    return undefined;
  };
  const existing = graph.output.map((o) => o.name);
  const values: string[] = [];
  for (let layer = 0; ; layer++) {
    const found = normInput(layerNormWeight(layer));
    if (!found) break;
    values.push(found.value);
  }
  const final = normInput(FINAL_WEIGHT);
  if (values.length === 0 || !final) throw fail(`its graph has no ${layerNormWeight(0)} or ${FINAL_WEIGHT} LayerNorm`);
  values.push(final.value);
  const outputs = values.map((value, i) => (existing.includes(`hidden_states.${i}`) ? `hidden_states.${i}` : value));
  const weight = await readInitializer(editor, graph, producers, FINAL_WEIGHT);
  const bias = await readInitializer(editor, graph, producers, FINAL_BIAS);
  if (!weight || !bias) throw fail(`its graph has no ${FINAL_WEIGHT} and ${FINAL_BIAS}`);
  const hiddenSize = weight.values.length;
  for (const name of outputs) {
    if (!existing.includes(name)) graph.output.push(makeValueInfo(name, weight.tensor.dataType, ['batch_size', 'sequence_length', hiddenSize]));
  }
  return { outputs, finalLayerNorm: { weight: weight.values, bias: bias.values, eps: final.eps } };
}

function epsilonOf(node: NodeProto): number {
  return node.attribute.find((a) => a.name === 'epsilon')?.f ?? CLIP_LAYER_NORM_EPS;
}

/** The nearest node above `start` (through its inputs' producers) that `match` accepts. */
function findUpstream(start: NodeProto, producers: Map<string, NodeProto>, match: (node: NodeProto) => boolean): NodeProto | undefined {
  const seen = new Set<NodeProto>();
  const queue = [start];
  while (queue.length) {
    const node = queue.shift()!;
    for (const input of node.input) {
      const producer = producers.get(input);
      if (!producer || seen.has(producer)) continue;
      if (match(producer)) return producer;
      seen.add(producer);
      queue.push(producer);
    }
  }
  return undefined;
}

/** An initializer's values by name, also when the exporter merged identical ones behind Identity nodes. */
async function readInitializer(editor: ModelEditor, graph: GraphProto, producers: Map<string, NodeProto>, name: string): Promise<{ tensor: TensorProto; values: Float32Array } | undefined> {
  let source = name;
  for (let producer = producers.get(source); producer?.opType === 'Identity'; producer = producers.get(source)) source = producer.input[0];
  const tensor = graph.initializer.find((t) => t.name === source);
  return tensor && { tensor, values: bytesToFloat32(tensor.dataType, await loadTensorBytes(tensor, editor.dir)) };
}

/** Clip skip N reads hidden_states[L + 1 − N]: [0] (the embeddings) is as far back as it goes. */
export function clipSkipBeyondMessage(modelId: string, clipSkip: number, layers: number): string {
  return `clipSkip ${clipSkip} is more than model ${modelId}'s text encoder allows: it has ${layers} layers, so at most ${layers + 1}`;
}

/** LayerNorm over the last axis of [tokens × hidden] values, in float64 as the sums need, to float32. */
export function layerNorm(values: Float32Array, { weight, bias, eps }: LayerNormWeights): Float32Array {
  const hidden = weight.length;
  const out = new Float32Array(values.length);
  for (let start = 0; start < values.length; start += hidden) {
    const row = values.subarray(start, start + hidden);
    let mean = 0;
    for (const v of row) mean += v;
    mean /= hidden;
    let variance = 0;
    for (const v of row) variance += (v - mean) ** 2;
    const scale = 1 / Math.sqrt(variance / hidden + eps);
    for (let j = 0; j < hidden; j++) out[start + j] = (row[j] - mean) * scale * weight[j] + bias[j];
  }
  return out;
}
