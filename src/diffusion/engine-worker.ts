// Entry of the engine thread (see engine-thread.ts): one Engine, requests run one at a time in
// arrival order, each abortable by its id between steps.
import { parentPort, workerData } from 'node:worker_threads';
import { Engine, type EngineOptions } from './engine.ts';
import { DiffusionError } from './errors.ts';
import type { FromWorker, ToWorker } from './engine-thread.ts';

const port = parentPort!;
const engine = new Engine(workerData as EngineOptions);
const controllers = new Map<number, AbortController>();
let queue = Promise.resolve();

const send = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
engine.onModelsChanged = () => send({ type: 'models', models: engine.models() });
const failure = (e: Error) => ({ code: e instanceof DiffusionError ? e.code : undefined, message: e.message, stack: e.stack });

port.on('message', (message: ToWorker) => {
  if (message.type === 'abort') {
    controllers.get(message.id)?.abort();
    return;
  }
  if (message.type === 'close') {
    queue = queue.then(async () => {
      await engine.close();
      send({ type: 'closed' });
      port.close();
    });
    return;
  }
  if (message.type === 'preload') {
    const { id, model } = message;
    queue = queue.then(() =>
      engine.preload(model).then(
        () => send({ type: 'done', id }),
        (error: Error) => send({ type: 'error', id, error: failure(error) }),
      ),
    );
    return;
  }
  const { id } = message;
  const controller = new AbortController();
  controllers.set(id, controller);
  // An abort arrives as a message, which the event loop delivers only between macrotasks: let it
  // in after each step or tile, before the engine checks the signal, or the next would start regardless.
  const letAbortIn = () => new Promise((resolve) => setImmediate(resolve));
  queue = queue.then(async () => {
    try {
      if (message.type === 'upscale') {
        const image = await engine.upscale(message.job, {
          signal: controller.signal,
          onTile: async (done, total) => {
            send({ type: 'tile', id, done, total });
            await letAbortIn();
          },
        });
        send({ type: 'done', id, result: image }, [image.data.buffer as ArrayBuffer]);
        return;
      }
      const result = await engine.run(message.model, message.request, {
        signal: controller.signal,
        previews: message.previews,
        onStep: async (progress) => {
          const latents = progress.latents.slice();
          const transfer = [latents.buffer, ...(progress.previewRgb ? [progress.previewRgb.data.buffer as ArrayBuffer] : [])];
          send({ type: 'step', id, progress: { ...progress, latents } }, transfer);
          await letAbortIn();
        },
      });
      send({ type: 'done', id, result }, result.images.map((i) => i.image.data.buffer as ArrayBuffer));
    } catch (error) {
      send({ type: 'error', id, error: failure(error as Error) });
    } finally {
      controllers.delete(id);
    }
  });
});
