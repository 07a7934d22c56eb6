// onnxruntime execution providers: which one each submodel runs on, and the start-up check that each
// provider asked for really works here. A provider that cannot create a session is an error that says
// what to install, never a silent fallback to the CPU: a server that quietly runs a GPU setting on
// the CPU is minutes per image instead of seconds, with nothing to tell why.
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel, makeNode, makeValueInfo } from './onnx/proto.ts';

/** The parts of a pipeline that can each be placed on their own providers. */
export const SUBMODELS = ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder'] as const;
export type Submodel = (typeof SUBMODELS)[number];

/** Providers per submodel; a submodel not named runs on the default list. */
export type Placement = Partial<Record<Submodel, readonly string[]>>;

/** What each provider needs, for the start-up error (onnxruntime-node 1.30's prebuilt binaries). */
const SETUP: Record<string, string> = {
  cpu: 'it is built into onnxruntime-node',
  cuda:
    'Linux x64 with an NVIDIA GPU, CUDA 12.x and cuDNN 9.x on the library path, and the CUDA provider libraries, ' +
    'which onnxruntime-node downloads at install: `npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12`',
  tensorrt:
    'what `cuda` needs (`npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12`, CUDA 12.x, cuDNN 9.x) and TensorRT 10 on the library path',
  webgpu: 'a GPU with a Vulkan (Linux), Direct3D 12 (Windows) or Metal (macOS) driver; onnxruntime-node ships it on x64 and macOS, experimental',
  dml: 'Windows with a DirectX 12 GPU (DirectML ships with onnxruntime-node on Windows)',
  coreml: 'macOS (CoreML ships with onnxruntime-node on macOS)',
};

/** The providers a submodel's sessions are created with. */
export function providersFor(defaults: readonly string[] | undefined, placement: Placement | undefined, submodel: Submodel | undefined): readonly string[] {
  return (submodel && placement?.[submodel]) ?? defaults ?? ['cpu'];
}

/** One Add node: enough for a provider to initialise its device. */
function probeModel(): Uint8Array {
  const f = DataType.FLOAT;
  return encodeModel({
    irVersion: 7,
    producerName: 'sdql',
    opsetImport: [{ domain: '', version: 14 }],
    graph: { name: 'probe', node: [makeNode('Add', ['x', 'x'], ['y'], 'add')], initializer: [], input: [makeValueInfo('x', f, [1])], output: [makeValueInfo('y', f, [1])], valueInfo: [] },
  });
}

/**
 * Creates and runs a one-node session on each provider, alone, so that a provider missing from this
 * onnxruntime-node build, its libraries, or its device fails here with what to install rather than at
 * the first generation. Throws an Error naming every provider that failed.
 */
export async function checkProviders(providers: Iterable<string>): Promise<void> {
  const built = new Set(ort.listSupportedBackends().map((b) => b.name));
  const failures: string[] = [];
  for (const name of new Set(providers)) {
    const needs = SETUP[name] ?? 'a provider onnxruntime-node knows';
    if (!built.has(name)) {
      failures.push(`${name}: not in this onnxruntime-node build for ${process.platform}/${process.arch} (it has ${[...built].join(', ')}); it needs ${needs}`);
      continue;
    }
    try {
      const session = await ort.InferenceSession.create(probeModel(), { executionProviders: [name], logSeverityLevel: 4 });
      try {
        await session.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) });
      } finally {
        await session.release();
      }
    } catch (error) {
      failures.push(`${name}: onnxruntime could not create a session on it (${(error as Error).message.split('\n')[0]}); it needs ${needs}`);
    }
  }
  if (failures.length) throw new Error(`execution provider unavailable: ${failures.join('; ')}`);
}

/** onnxruntime's version, part of what an optimised graph is valid for. */
export const ORT_VERSION = ort.env.versions.common;
