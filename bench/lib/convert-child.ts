// A child of bench/convert.ts, so that its peak RSS is the measured work's alone: converts a
// checkpoint (`convert <file> <out> <vocab>`) or loads a pipeline folder's four sessions (`load <dir>`),
// then reports its wall time and peak RSS.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { convertCheckpoint } from '../../src/diffusion/convert/convert.ts';
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';

export interface ChildReport {
  ms: number;
  maxRssBytes: number;
}

const [mode, ...args] = process.argv.slice(2);
const started = performance.now();
if (mode === 'convert') {
  const [file, out, vocabDir] = args;
  rmSync(out, { recursive: true, force: true });
  await convertCheckpoint(file, file.replace(/\.safetensors$/, '.yaml'), out, { vocabDir });
} else {
  const models = [];
  for (const submodel of ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder']) models.push(await OnnxModel.load(join(args[0], submodel, 'model.onnx')));
  for (const model of models) await model.release();
}
process.send!({ ms: performance.now() - started, maxRssBytes: process.resourceUsage().maxRSS * 1024 } satisfies ChildReport);
