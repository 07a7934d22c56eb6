// Entry of a conversion thread (see checkpoint-model.ts): one conversion, progress out as it reads.
import { parentPort, workerData } from 'node:worker_threads';
import { convertCheckpoint, type ConversionProgress } from './convert.ts';
import { convertVaeFile, inspectVaeFile } from './vae-file.ts';

/** A checkpoint's four graphs, or (`vae`) a separate VAE file's encoder and decoder. */
export type ConvertJob = { outDir: string } & ({ kind: 'checkpoint'; file: string; yaml: string; vocabDir?: string } | { kind: 'vae'; file: string });

export type FromConvertWorker = { type: 'progress'; progress: ConversionProgress } | { type: 'done' } | { type: 'error'; message: string };

const port = parentPort!;
const job = workerData as ConvertJob;
let last = 0;
const converted =
  job.kind === 'vae'
    ? inspectVaeFile(job.file).then((info) => convertVaeFile(info, job.outDir))
    : convertCheckpoint(job.file, job.yaml, job.outDir, {
        vocabDir: job.vocabDir,
        onProgress: (progress) => {
          // A message per percent at most: tensors come by the thousand.
          const percent = Math.floor((100 * progress.doneBytes) / Math.max(1, progress.totalBytes));
          if (percent === last && progress.doneBytes !== 0) return;
          last = percent;
          port.postMessage({ type: 'progress', progress } satisfies FromConvertWorker);
        },
      });
converted.then(
  () => port.postMessage({ type: 'done' } satisfies FromConvertWorker),
  (error: Error) => port.postMessage({ type: 'error', message: error.message } satisfies FromConvertWorker),
);
