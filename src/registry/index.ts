// The models and LoRAs of SDQL_MODELS_DIR: scanned at start-up and on request, mirrored into the
// database (so that generations reference their model and hashes are computed once), and kept in
// memory with what the engine needs to load a model.
import { mkdir } from 'node:fs/promises';
import type { PrismaClient } from '../db/index.ts';
import { listLoras, scanModelsDir, sha256File, type LoraFileInfo, type ModelFolderInfo } from '../diffusion/index.ts';
import { log } from '../log.ts';
import { fileStamp } from './hash.ts';

export { shortHash } from './hash.ts';
export { PullError, type PullErrorCode } from './hub.ts';
export { ModelPulls, type ModelPullJob, type PullStatus } from './pulls.ts';
export type { LoraFileInfo } from '../diffusion/index.ts';

export interface ScanResult {
  models: ModelFolderInfo[];
  loras: LoraFileInfo[];
  scannedAt: Date;
}

/** What a model's hash is of: a folder's UNet graph, a checkpoint's whole file (as AUTOMATIC1111 hashes checkpoints). */
const hashedFile = (m: ModelFolderInfo) => m.checkpoint?.file ?? m.paths.unet;

export class Registry {
  private modelInfos = new Map<string, ModelFolderInfo>();
  private loraInfos = new Map<string, LoraFileInfo>();
  private scanning: Promise<ScanResult> | undefined;
  private hashing = new Map<string, Promise<string | null>>();

  constructor(
    private readonly prisma: PrismaClient,
    readonly modelsDir: string,
    readonly lorasDir: string,
  ) {}

  /** A model folder found by the last scan (broken ones included: check `error` and `supported`). */
  model(id: string): ModelFolderInfo | undefined {
    return this.modelInfos.get(id);
  }

  lora(id: string): LoraFileInfo | undefined {
    return this.loraInfos.get(id);
  }

  /** Rescans the folders and updates the database; concurrent calls share one scan. */
  scan(): Promise<ScanResult> {
    this.scanning ??= this.runScan().finally(() => (this.scanning = undefined));
    return this.scanning;
  }

  private async runScan(): Promise<ScanResult> {
    const started = performance.now();
    await this.ensureModelsDir();
    const [models, loras] = await Promise.all([scanModelsDir(this.modelsDir), listLoras(this.lorasDir)]);
    const scannedAt = new Date();
    await this.saveModels(models, scannedAt);
    await this.saveLoras(loras, scannedAt);
    this.modelInfos = new Map(models.map((m) => [m.id, m]));
    this.loraInfos = new Map(loras.map((l) => [l.id, l]));
    for (const m of models) if (m.error) log.warn('model folder cannot be used', { model: m.id, error: m.error });
    for (const l of loras) if (l.error) log.warn('LoRA file cannot be used', { lora: l.id, error: l.error });
    log.info('scanned models', { modelsDir: this.modelsDir, models: models.length, loras: loras.length, ms: Math.round(performance.now() - started) });
    return { models, loras, scannedAt };
  }

  private async ensureModelsDir(): Promise<void> {
    if ((await mkdir(this.modelsDir, { recursive: true })) === undefined) return;
    log.info('created the models folder: put model folders (diffusers ONNX layout) in it, then run the rescanModels mutation', {
      modelsDir: this.modelsDir,
      hint: 'README "Getting models"; `sdql models create-demo <dir>` makes a tiny demo model (its images are noise)',
    });
  }

  private async saveModels(models: ModelFolderInfo[], scannedAt: Date): Promise<void> {
    const stored = new Map((await this.prisma.model.findMany({ select: { id: true, unetStamp: true } })).map((r) => [r.id, r.unetStamp]));
    const writes = [];
    for (const m of models) {
      const unetStamp = m.error ? null : await fileStamp(hashedFile(m));
      // Facts of a broken folder may be defaults rather than the model's: store none of them.
      const ok = !m.error;
      const data = {
        name: m.name,
        family: m.family,
        supported: m.supported,
        predictionType: ok ? m.predictionType : null,
        vaeScaleFactor: ok ? m.vaeScaleFactor : null,
        nativeWidth: ok ? m.nativeWidth : null,
        nativeHeight: ok ? m.nativeHeight : null,
        canImg2img: ok && m.canImg2img,
        canInpaint: ok && m.canInpaint,
        precision: ok ? (m.precision === 'fp16' ? ('FP16' as const) : ('FP32' as const)) : null,
        sizeBytes: BigInt(m.sizeBytes),
        error: m.error ?? null,
        present: true,
        scannedAt,
        unetStamp,
        ...(stored.get(m.id) !== unetStamp ? { unetSha256: null } : {}),
      };
      writes.push(this.prisma.model.upsert({ where: { id: m.id }, create: { id: m.id, ...data }, update: data }));
    }
    writes.push(this.prisma.model.updateMany({ where: { id: { notIn: models.map((m) => m.id) }, present: true }, data: { present: false } }));
    await this.prisma.$transaction(writes);
  }

  private async saveLoras(loras: LoraFileInfo[], scannedAt: Date): Promise<void> {
    const stored = new Map((await this.prisma.lora.findMany({ select: { id: true, fileStamp: true } })).map((r) => [r.id, r.fileStamp]));
    const writes = [];
    for (const l of loras) {
      const stamp = l.error ? null : await fileStamp(l.path);
      const data = {
        name: l.name,
        sizeBytes: BigInt(l.sizeBytes),
        baseModelVersion: l.baseModelVersion ?? null,
        networkDim: l.networkDim !== undefined && Number.isInteger(l.networkDim) ? l.networkDim : null,
        networkAlpha: l.networkAlpha ?? null,
        triggerWords: l.triggerWords,
        error: l.error ?? null,
        present: true,
        scannedAt,
        fileStamp: stamp,
        ...(stored.get(l.id) !== stamp ? { sha256: null } : {}),
      };
      writes.push(this.prisma.lora.upsert({ where: { id: l.id }, create: { id: l.id, ...data }, update: data }));
    }
    writes.push(this.prisma.lora.updateMany({ where: { id: { notIn: loras.map((l) => l.id) }, present: true }, data: { present: false } }));
    await this.prisma.$transaction(writes);
  }

  /** SHA-256 of the model's UNet file: stored, or computed now (once, however many ask) and stored. */
  async modelSha256(id: string): Promise<string | null> {
    const row = await this.prisma.model.findUnique({ where: { id }, select: { unetSha256: true, unetStamp: true } });
    const info = this.modelInfos.get(id);
    if (!row || !info || row.unetStamp === null) return null;
    if (row.unetSha256) return row.unetSha256;
    return this.hashOnce(`model:${id}`, hashedFile(info), async (sha256) => {
      await this.prisma.model.updateMany({ where: { id, unetStamp: row.unetStamp }, data: { unetSha256: sha256 } });
    });
  }

  /** SHA-256 of the whole LoRA file, like modelSha256. */
  async loraSha256(id: string): Promise<string | null> {
    const row = await this.prisma.lora.findUnique({ where: { id }, select: { sha256: true, fileStamp: true } });
    const info = this.loraInfos.get(id);
    if (!row || !info || row.fileStamp === null) return null;
    if (row.sha256) return row.sha256;
    return this.hashOnce(`lora:${id}`, info.path, async (sha256) => {
      await this.prisma.lora.updateMany({ where: { id, fileStamp: row.fileStamp }, data: { sha256 } });
    });
  }

  /** The stamp condition in `store` keeps a hash of an older file from landing on a newer scan. */
  private hashOnce(key: string, path: string, store: (sha256: string) => Promise<void>): Promise<string | null> {
    let pending = this.hashing.get(key);
    if (!pending) {
      pending = (async () => {
        const started = performance.now();
        const sha256 = await sha256File(path);
        await store(sha256);
        log.info('hashed file', { path, ms: Math.round(performance.now() - started) });
        return sha256;
      })().finally(() => this.hashing.delete(key));
      this.hashing.set(key, pending);
    }
    return pending;
  }
}
