// The optimised-model cache: onnxruntime spends most of a session's creation optimising the graph
// (fusions, layout changes, constant folding: 7.5–8 s of an SD 1.5 UNet's load), and the optimised
// graph it can save loads in a fraction of that with optimisation off, holding less memory. Each
// entry is that saved graph for one source model (its files by size and mtime, and what was changed
// in memory: a LoRA set, exposed hidden states), one provider list, one onnxruntime version and one
// CPU (the CPU provider's layouts depend on its vector width).
//
// An entry is written into a temporary folder, its manifest (each file's size and SHA-256) last,
// then renamed into place: a crash leaves a temporary folder, never a half-written entry. An entry
// is used only once its manifest matches and every file hashes to it; anything else is deleted and
// rebuilt from the source.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { arch, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { inspectOnnx } from './onnx/inspect.ts';
import { externalDataPath } from './onnx/external-data.ts';
import { ORT_VERSION } from './providers.ts';

export const GRAPH_FILE = 'model.onnx';
export const DATA_FILE = 'model.onnx.data';
const MANIFEST = 'manifest.json';

/** What a cached graph was made from. */
export interface CacheSource {
  /** The model file the session reads (or that the edited model in memory was read from). */
  path: string;
  /** What was changed in memory; '' for the file as it is. */
  variant: string;
  providers: readonly string[];
}

interface Manifest {
  key: string;
  files: { name: string; size: number; sha256: string }[];
}

/** Session config entries that make onnxruntime save the optimised graph with its weights in DATA_FILE. */
export const SAVE_CONFIG = {
  optimized_model_external_initializers_file_name: DATA_FILE,
  optimized_model_external_initializers_min_size_in_bytes: '1024',
};

/** What an optimised graph is valid for besides its source: this onnxruntime and this CPU. */
export const RUNTIME_ID = `onnxruntime ${ORT_VERSION} ${arch()} ${cpus()[0]?.model ?? ''}`;

export class OptimizedModelCache {
  constructor(
    readonly dir: string,
    private readonly runtimeId = RUNTIME_ID,
  ) {}

  /** The entry's key: everything the optimised graph depends on. */
  async key(source: CacheSource): Promise<string> {
    const files = [source.path, ...(await inspectOnnx(source.path)).externalDataFiles.map((f) => externalDataPath(dirname(source.path), f))];
    const stats = await Promise.all(files.map(async (f) => {
      const s = await stat(f);
      return [f, s.size, s.mtimeMs, s.ino];
    }));
    return createHash('sha256').update(JSON.stringify({ stats, variant: source.variant, providers: source.providers, runtime: this.runtimeId })).digest('hex');
  }

  entryDir(key: string): string {
    return join(this.dir, key);
  }

  /**
   * The entry's graph file when its manifest is whole and its files have their sizes, else undefined
   * (and the entry removed). `verified` resolves to whether every file also hashes to the manifest:
   * it runs on another thread, so that the caller can create the session meanwhile and must not use
   * it before `verified` says true.
   */
  async open(key: string): Promise<{ path: string; verified: Promise<boolean> } | undefined> {
    const dir = this.entryDir(key);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest;
      if (manifest.key !== key || !manifest.files.some((f) => f.name === GRAPH_FILE)) throw new Error('not this entry');
      for (const f of manifest.files) if ((await stat(join(dir, f.name))).size !== f.size) throw new Error(`${f.name} changed size`);
    } catch {
      await this.discard(key);
      return undefined;
    }
    const verified = Promise.all(manifest.files.map(async (f) => (await hashFile(join(dir, f.name))) === f.sha256)).then((all) => all.every(Boolean), () => false);
    return { path: join(dir, GRAPH_FILE), verified };
  }

  /** A temporary folder for onnxruntime to save an optimised graph into; `commit` makes it the entry. */
  async writer(key: string): Promise<{ path: string; commit(): Promise<void>; abandon(): Promise<void> }> {
    const tmp = join(this.dir, `.tmp-${randomUUID()}`);
    await mkdir(tmp, { recursive: true });
    const abandon = () => rm(tmp, { recursive: true, force: true });
    return {
      path: join(tmp, GRAPH_FILE),
      abandon,
      commit: async () => {
        const names = [GRAPH_FILE, DATA_FILE];
        const files = [];
        for (const name of names) {
          const size = await stat(join(tmp, name)).then((s) => s.size, () => undefined);
          if (size !== undefined) files.push({ name, size, sha256: await hashFile(join(tmp, name)) });
        }
        await writeFile(join(tmp, MANIFEST), JSON.stringify({ key, files } satisfies Manifest));
        await this.discard(key);
        // Another process may have committed the same entry meanwhile: either copy is whole.
        await rename(tmp, this.entryDir(key)).catch(abandon);
      },
    };
  }

  async discard(key: string): Promise<void> {
    await rm(this.entryDir(key), { recursive: true, force: true });
  }
}

/**
 * SHA-256 of a file, hashed on a thread of its own: onnxruntime creates a session synchronously on the
 * engine's thread, and hashing a 3.4 GB UNet takes about as long as loading its optimised graph, so the
 * two run side by side instead of one after the other.
 */
function hashFile(path: string): Promise<string> {
  const code = `
    const { createHash } = require('node:crypto');
    const { createReadStream } = require('node:fs');
    const { parentPort, workerData } = require('node:worker_threads');
    const hash = createHash('sha256');
    createReadStream(workerData, { highWaterMark: 4 << 20 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', (error) => parentPort.postMessage({ error: error.message }))
      .on('end', () => parentPort.postMessage({ hex: hash.digest('hex') }));`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData: path });
    worker.once('message', (m: { hex?: string; error?: string }) => (m.hex ? resolve(m.hex) : reject(new Error(m.error))));
    worker.once('error', reject);
  });
}
