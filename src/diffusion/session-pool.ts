// Sessions of model files loaded as they are, shared by every cached pipeline that uses the file
// unchanged: a LoRA set leaves the VAE (and, for UNet-only LoRAs, the text encoder) as the bare
// model has it, and a second session of the same file would hold its weights and arena twice.
import { OnnxModel, type RuntimeOptions } from './onnx-model.ts';

interface Shared {
  model: Promise<OnnxModel>;
  users: number;
}

export class SessionPool {
  private readonly sessions = new Map<string, Shared>();
  private readonly owners = new Map<OnnxModel, string>();

  /** The session of the file at `path` with these options, loading it if no one holds it. */
  async acquire(path: string, runtime: RuntimeOptions = {}): Promise<OnnxModel> {
    const key = `${path}\n${JSON.stringify(runtime)}`;
    let entry = this.sessions.get(key);
    if (!entry) {
      const loading: Shared = { model: OnnxModel.load(path, runtime), users: 0 };
      this.sessions.set(key, loading);
      loading.model.then(
        (model) => this.owners.set(model, key),
        () => this.sessions.get(key) === loading && this.sessions.delete(key),
      );
      entry = loading;
    }
    entry.users++;
    return entry.model;
  }

  /** Gives back a session from `acquire` (released once no one holds it); any other session is released. */
  async release(model: OnnxModel): Promise<void> {
    const key = this.owners.get(model);
    const entry = key === undefined ? undefined : this.sessions.get(key);
    if (!entry) return model.release();
    if (--entry.users > 0) return;
    this.sessions.delete(key!);
    this.owners.delete(model);
    await model.release();
  }
}
