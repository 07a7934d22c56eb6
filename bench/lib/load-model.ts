// Child process of bench/model-load.ts: loads one model file as the engine does, then reports the
// load's milliseconds, its resident memory and where the graph came from. A fresh process per load,
// so that neither the page cache's owner nor an earlier session's memory counts against the next.
import { OnnxModel } from '../../src/diffusion/onnx-model.ts';

const [path, cacheDir] = process.argv.slice(2);
const started = performance.now();
const model = await OnnxModel.load(path, { optimizedCacheDir: cacheDir || undefined });
const ms = performance.now() - started;
process.send!({ ms, rss: process.memoryUsage().rss, from: model.loadedFrom });
await model.release();
