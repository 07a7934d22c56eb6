// Post-training int8 quantisation of a UNet graph (issue 11 part 5), for bench/int8.ts: the weights
// of every MatMul and Conv with a constant weight are quantised per output channel to symmetric int8.
// A MatMul becomes onnxruntime's dynamic form: DynamicQuantizeLinear on the activation (a uint8 scale
// and zero point per call, so no calibration), MatMulInteger, then a Cast and a Mul by activation
// scale × column scale, which onnxruntime fuses into DynamicQuantizeMatMul (u8×s8 kernels, VNNI where
// the CPU has it). A Conv takes the same dynamic form (ConvInteger, its bias added back) or the QDQ
// form with calibrated ranges (ConvFormat).
// Written here rather than with onnxruntime's Python quantiser: sdql reads and writes ONNX in
// TypeScript (src/diffusion/onnx/) and the bench must run without Python.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { inlineExternalData, loadTensorBytes, moveToExternalData } from '../../src/diffusion/onnx/external-data.ts';
import { OnnxModel, type TensorData } from '../../src/diffusion/onnx-model.ts';
import { DataType, attr, bytesToFloat32, decodeModel, encodeModel, makeNode, makeTensor, type ModelProto, type NodeProto, type TensorProto } from '../../src/diffusion/onnx/proto.ts';

export interface QuantizeReport {
  matMuls: number;
  convs: number;
  /** Float bytes of the weights replaced, and int8 bytes of their replacements. */
  floatBytes: number;
  int8Bytes: number;
}

/**
 * Symmetric int8 quantisation per channel: element i belongs to channel ⌊i / inner⌋ mod channels
 * (inner 1 for a MatMul weight [K, N] quantised per column N, K·kh·kw for a Conv weight [C, K, kh, kw]),
 * and is rounded to a multiple of its channel's max |w| / 127.
 */
export function quantizePerChannel(w: Float32Array, channels: number, inner: number): { q: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) {
    const c = Math.floor(i / inner) % channels;
    scales[c] = Math.max(scales[c], Math.abs(w[i]));
  }
  // An all-zero channel keeps scale 1 (any scale reproduces zeros; 0 would divide by zero).
  for (let c = 0; c < channels; c++) scales[c] = scales[c] / 127 || 1;
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = Math.round(w[i] / scales[Math.floor(i / inner) % channels]);
  return { q, scales };
}

// Convs this small stay float: conv_in (4 latent channels × 3 × 3 in) and conv_out (4 channels out)
// are a negligible share of the work, and the output's few channels carry all of the error.
const MIN_CONV_FAN_IN = 64;
const MIN_CONV_OUT = 16;

function weightOf(node: NodeProto, inits: Map<string, TensorProto>, ops: readonly string[]): TensorProto | undefined {
  if (!ops.includes(node.opType)) return undefined;
  const w = inits.get(node.input[1]);
  if (!w || (w.dataType !== DataType.FLOAT && w.dataType !== DataType.FLOAT16)) return undefined;
  if (node.opType === 'MatMul') return w.dims.length === 2 ? w : undefined;
  if (node.opType !== 'Conv' || w.dims.length !== 4) return undefined;
  const group = node.attribute.find((a) => a.name === 'group')?.i ?? 1n;
  const [out, inC, kh, kw] = w.dims;
  return group === 1n && inC * kh * kw >= MIN_CONV_FAN_IN && out >= MIN_CONV_OUT ? w : undefined;
}

/**
 * How Convs are quantised. 'dynamic': DynamicQuantizeLinear + ConvInteger, no calibration.
 * 'qdq': QuantizeLinear/DequantizeLinear pairs with calibrated activation ranges around the Conv,
 * which onnxruntime fuses into QLinearConv (NHWC, u8×s8). MatMuls are dynamic either way: their
 * fused DynamicQuantizeMatMul needs no calibration.
 */
export type ConvFormat = 'dynamic' | 'qdq';

export interface QuantizeOptions {
  convFormat?: ConvFormat;
  /** 'qdq': the [min, max] of every quantised Conv's input and output (convActivations names them). */
  ranges?: ReadonlyMap<string, readonly [number, number]>;
}

/** The activations whose ranges a 'qdq' quantisation needs: each quantisable Conv's input and output. */
export function convActivations(model: ModelProto): string[] {
  const inits = new Map(model.graph.initializer.map((t) => [t.name, t]));
  const names = model.graph.node.filter((n) => n.opType === 'Conv' && weightOf(n, inits, ['Conv'])).flatMap((n) => [n.input[0], n.output[0]]);
  return [...new Set(names)];
}

/** uint8 affine parameters covering [min, max] and zero (which must stay exact: padding is zero). */
function uint8Params([min, max]: readonly [number, number]): { scale: number; zeroPoint: number } {
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const scale = (hi - lo) / 255 || 1;
  return { scale, zeroPoint: Math.round(-lo / scale) };
}

/** Quantises `model` in place (see the header); float weights are read from `modelDir` when stored externally. */
export async function quantizeGraph(model: ModelProto, modelDir: string, options: QuantizeOptions = {}): Promise<QuantizeReport> {
  const { convFormat = 'dynamic', ranges } = options;
  const g = model.graph;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const report: QuantizeReport = { matMuls: 0, convs: 0, floatBytes: 0, int8Bytes: 0 };
  const replaced = new Set<string>();
  const nodes: NodeProto[] = [];
  const addInit = (t: TensorProto) => {
    if (inits.has(t.name)) return t.name;
    g.initializer.push(t);
    inits.set(t.name, t);
    return t.name;
  };
  const floats = async (name: string) => {
    const t = inits.get(name);
    if (!t) throw new Error(`${name} is not an initializer`);
    return bytesToFloat32(t.dataType, await loadTensorBytes(t, modelDir));
  };
  // One quantisation per activation, shared by its consumers (q, k and v read the same input).
  const dynamic = new Map<string, [string, string, string]>();
  const dynamicQuantize = (x: string) => {
    let out = dynamic.get(x);
    if (!out) {
      out = [`${x}_quantized`, `${x}_quantized_scale`, `${x}_quantized_zero_point`];
      nodes.push(makeNode('DynamicQuantizeLinear', [x], out, `${x}_DynamicQuantizeLinear`));
      dynamic.set(x, out);
    }
    return out;
  };
  const staticScales = new Map<string, number>();
  /** QuantizeLinear → DequantizeLinear of `x` into `output` with the calibrated range of `measured`; returns the scale. */
  const fakeQuantize = (x: string, output: string, measured = x) => {
    const range = ranges?.get(measured);
    if (!range) throw new Error(`no calibrated range for ${measured}`);
    const { scale, zeroPoint } = uint8Params(range);
    const s = addInit(makeTensor(`${x}_qdq_scale`, DataType.FLOAT, [], Float32Array.of(scale)));
    const z = addInit(makeTensor(`${x}_qdq_zero_point`, DataType.UINT8, [], Uint8Array.of(zeroPoint)));
    nodes.push(makeNode('QuantizeLinear', [x, s, z], [`${x}_qdq_quantized`], `${x}_QuantizeLinear`));
    nodes.push(makeNode('DequantizeLinear', [`${x}_qdq_quantized`, s, z], [output], `${x}_DequantizeLinear`));
    staticScales.set(x, scale);
    return scale;
  };

  for (const node of g.node) {
    const w = weightOf(node, inits, ['MatMul', 'Conv']);
    if (!w) {
      nodes.push(node);
      continue;
    }
    const conv = node.opType === 'Conv';
    const values = await floats(w.name);
    const channels = conv ? w.dims[0] : w.dims[1];
    const { q, scales } = quantizePerChannel(values, channels, conv ? values.length / channels : 1);
    report.floatBytes += values.length * 4;
    report.int8Bytes += q.length;
    replaced.add(w.name);
    const wq = addInit(makeTensor(`${w.name}_quantized`, DataType.INT8, w.dims, q));
    const [x, weightName, bias] = node.input;
    const y = node.output[0];
    if (conv) report.convs++;
    else report.matMuls++;

    if (conv && convFormat === 'qdq') {
      // DQ(x), DQ(w), DQ(bias as int32 at scale x·w) → Conv → Q → DQ: the pattern onnxruntime turns into QLinearConv.
      const xScale = staticScales.get(x) ?? fakeQuantize(x, `${x}_qdq`);
      const wScale = addInit(makeTensor(`${weightName}_qdq_scale`, DataType.FLOAT, [channels], scales));
      const wZero = addInit(makeTensor(`${weightName}_qdq_zero_point`, DataType.INT8, [channels], new Int8Array(channels)));
      nodes.push(makeNode('DequantizeLinear', [wq, wScale, wZero], [`${weightName}_qdq`], `${weightName}_DequantizeLinear`, [attr.int('axis', 0)]));
      const inputs = [`${x}_qdq`, `${weightName}_qdq`];
      if (bias) {
        const b = await floats(bias);
        const biasScales = scales.map((s) => s * xScale);
        const bq = addInit(makeTensor(`${bias}_qdq_quantized`, DataType.INT32, [channels], Int32Array.from(b, (v, c) => Math.round(v / biasScales[c]))));
        const bScale = addInit(makeTensor(`${bias}_qdq_scale`, DataType.FLOAT, [channels], biasScales));
        nodes.push(makeNode('DequantizeLinear', [bq, bScale], [`${bias}_qdq`], `${bias}_DequantizeLinear`, [attr.int('axis', 0)]));
        inputs.push(`${bias}_qdq`);
        replaced.add(bias);
      }
      nodes.push({ ...node, input: inputs, output: [`${y}_float`] });
      fakeQuantize(`${y}_float`, y, y);
      continue;
    }

    const [xQuant, xScale, xZero] = dynamicQuantize(x);
    // Per column for MatMulInteger; ConvInteger takes one zero point for the whole weight.
    const wZero = addInit(makeTensor(`${weightName}_zero_point`, DataType.INT8, conv ? [] : [channels], new Int8Array(conv ? 1 : channels)));
    const wScale = addInit(makeTensor(`${weightName}_scale`, DataType.FLOAT, conv ? [channels, 1, 1] : [channels], scales));
    const integer = `${y}_int32`;
    nodes.push(makeNode(conv ? 'ConvInteger' : 'MatMulInteger', [xQuant, wq, xZero, wZero], [integer], `${node.name}_quant`, conv ? node.attribute : []));
    nodes.push(makeNode('Cast', [integer], [`${integer}_cast`], `${node.name}_cast`, [attr.int('to', DataType.FLOAT)]));
    nodes.push(makeNode('Mul', [xScale, wScale], [`${y}_rescale_factor`], `${node.name}_scale`));
    const scaled = bias ? `${y}_unbiased` : y;
    nodes.push(makeNode('Mul', [`${integer}_cast`, `${y}_rescale_factor`], [scaled], `${node.name}_rescale`));
    if (bias) {
      const perChannel = addInit(makeTensor(`${bias}_per_channel`, DataType.FLOAT, [channels, 1, 1], await floats(bias)));
      nodes.push(makeNode('Add', [scaled, perChannel], [y], `${node.name}_bias`));
      replaced.add(bias);
    }
  }
  g.node = nodes;
  // Float weights nothing else reads any more are dropped.
  const stillRead = new Set(nodes.flatMap((n) => n.input));
  g.initializer = g.initializer.filter((t) => !replaced.has(t.name) || stillRead.has(t.name));
  return report;
}

/** Quantises the model file `source` (with its external data) into `target` and `target`_data. */
export async function quantizeModelFile(source: string, target: string, options: QuantizeOptions = {}): Promise<QuantizeReport> {
  const model = decodeModel(await readFile(source));
  const report = await quantizeGraph(model, dirname(source), options);
  // What stays float (norms, biases, the time embedding) is small: bring it along inline, then write
  // every large tensor to the target's own data file.
  await inlineExternalData(model, dirname(source));
  const location = `${target.split('/').at(-1)}_data`;
  const data = moveToExternalData(model, location);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, encodeModel(model));
  await writeFile(join(dirname(target), location), data);
  return report;
}

/** The [min, max] of each of `names` over runs of the float model on `feeds` (calibration for 'qdq'). */
export async function activationRanges(model: ModelProto, modelDir: string, names: readonly string[], feeds: readonly Record<string, TensorData>[]): Promise<Map<string, [number, number]>> {
  const declared = new Set(model.graph.output.map((o) => o.name));
  const probe: ModelProto = {
    ...model,
    graph: { ...model.graph, output: [...model.graph.output, ...names.filter((n) => !declared.has(n)).map((n) => ({ name: n, type: { tensorType: { elemType: DataType.FLOAT } } }))] },
  };
  const session = await OnnxModel.fromBuffer(join(modelDir, 'calibration.onnx'), { bytes: encodeModel(probe), dir: modelDir, externalData: [] });
  const ranges = new Map<string, [number, number]>();
  try {
    for (const feed of feeds) {
      const out = await session.run(feed, names);
      for (const name of names) {
        const range = ranges.get(name) ?? [Infinity, -Infinity];
        for (const v of out[name].data) {
          if (v < range[0]) range[0] = v;
          if (v > range[1]) range[1] = v;
        }
        ranges.set(name, range);
      }
    }
  } finally {
    await session.release();
  }
  return ranges;
}
