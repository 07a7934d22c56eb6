// The Hub pulls this server process runs (the `pullModel` mutation): kept in memory, not in the
// database. What lasts of a pull is its partial folder, all a resumed pull needs; a row would outlive
// the process doing the download and claim a pull that nobody runs. A restart forgets the job, and
// the same pull submitted again resumes from the files.
import { randomUUID } from 'node:crypto';
import { Repeater, SlidingBuffer } from '@repeaterjs/repeater';
import { log } from '../log.ts';
import { checkPullRequest, planPull, PullError, runPull, type HubAccess, type PullErrorCode, type PullPlan, type PullRequest } from './hub.ts';

/** What a pull needs of the registry (index.ts): where models go, and a rescan once one is there. */
interface ModelsFolder {
  readonly modelsDir: string;
  scan(): Promise<{ scannedAt: Date }>;
}

export type PullStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED';

export interface ModelPullJob {
  id: string;
  repo: string;
  revision: string;
  subfolder: string | null;
  file: string | null;
  /** The model's id once pulled. */
  name: string;
  status: PullStatus;
  /** Known once the repository is listed. */
  kind: PullPlan['kind'] | null;
  /** Repository paths to download, once listed. */
  files: string[];
  filesDone: number;
  currentFile: string | null;
  bytesDone: number;
  bytesTotal: number;
  error: string | null;
  errorCode: PullErrorCode | null;
  startedAt: Date;
  finishedAt: Date | null;
}

/** Progress events: one per 1/200 of all the bytes, and one per file, so that a fast download does not flood subscribers. */
const STEPS = 200;

export class ModelPulls {
  private readonly jobs = new Map<string, ModelPullJob>();
  private readonly watchers = new Map<string, Set<() => void>>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly registry: ModelsFolder,
    private readonly access: HubAccess,
    /** After a pull's rescan: the schema announces `modelsChanged`. */
    private readonly scanned: (scannedAt: Date) => void,
  ) {}

  /** Checks the request (a PullError with code BAD_USER_INPUT) and starts the pull; returns its job at once. */
  start(request: PullRequest): ModelPullJob {
    const checked = checkPullRequest(request, this.registry.modelsDir);
    if ([...this.jobs.values()].some((j) => j.status === 'RUNNING' && j.name === checked.name)) {
      throw new PullError('BAD_USER_INPUT', `a pull into "${checked.name}" is running already: follow it, or give another name`);
    }
    const job: ModelPullJob = {
      id: randomUUID(),
      repo: checked.repo,
      revision: checked.revision,
      subfolder: checked.subfolder || null,
      file: checked.file ?? null,
      name: checked.name,
      status: 'RUNNING',
      kind: null,
      files: [],
      filesDone: 0,
      currentFile: null,
      bytesDone: 0,
      bytesTotal: 0,
      error: null,
      errorCode: null,
      startedAt: new Date(),
      finishedAt: null,
    };
    this.jobs.set(job.id, job);
    void this.run(job, checked);
    return job;
  }

  get(id: string): ModelPullJob | undefined {
    return this.jobs.get(id);
  }

  /** This process's pulls, newest first. */
  list(): ModelPullJob[] {
    return [...this.jobs.values()].reverse();
  }

  /** The job now, then after each change (the latest state when a reader lags), ending after it finishes. */
  watch(id: string): Repeater<ModelPullJob> {
    return new Repeater<ModelPullJob>(async (push, stop) => {
      const job = this.jobs.get(id);
      if (!job) return stop();
      const send = () => {
        void push({ ...job });
        if (job.status !== 'RUNNING') stop();
      };
      const watchers = this.watchers.get(id) ?? new Set();
      this.watchers.set(id, watchers);
      watchers.add(send);
      send();
      await stop;
      watchers.delete(send);
    }, new SlidingBuffer(1));
  }

  /** Stops the running pulls (at shutdown); their files stay for the next pull to resume. */
  close(): void {
    this.stopping.abort();
  }

  private changed(job: ModelPullJob): void {
    for (const send of this.watchers.get(job.id) ?? []) send();
  }

  private async run(job: ModelPullJob, checked: ReturnType<typeof checkPullRequest>): Promise<void> {
    try {
      const plan = await planPull(checked, this.access);
      Object.assign(job, { kind: plan.kind, files: plan.files.map((f) => f.path), bytesTotal: plan.totalBytes });
      this.changed(job);
      log.info('pulling a model from the Hub', { pull: job.id, repo: job.repo, revision: job.revision, model: job.name, files: plan.files.length, bytes: plan.totalBytes });
      let step = -1;
      await runPull(plan, this.registry.modelsDir, this.access, {
        signal: this.stopping.signal,
        onProgress: (p) => {
          const now = Math.floor((p.bytesDone / Math.max(1, p.bytesTotal)) * STEPS);
          const news = now !== step || p.filesDone !== job.filesDone || p.file !== job.currentFile;
          Object.assign(job, { filesDone: p.filesDone, currentFile: p.file, bytesDone: p.bytesDone });
          step = now;
          if (news) this.changed(job);
        },
      });
      const scan = await this.registry.scan();
      this.scanned(scan.scannedAt);
      Object.assign(job, { status: 'SUCCEEDED', currentFile: null });
      log.info('pulled a model from the Hub', { pull: job.id, model: job.name });
    } catch (error) {
      const known = error instanceof PullError;
      if (!known) log.error('a pull from the Hub failed unexpectedly', { pull: job.id, err: error });
      else log.warn('a pull from the Hub failed', { pull: job.id, code: error.code, error: error.message });
      Object.assign(job, { status: 'FAILED', error: known ? error.message : `unexpected error: ${(error as Error).message}`, errorCode: known ? error.code : 'DOWNLOAD_FAILED' });
    } finally {
      job.finishedAt = new Date();
      this.changed(job);
    }
  }
}
