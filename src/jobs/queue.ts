// The generation queue is the Generation table itself: a QUEUED row is a job, a worker claims the
// next one (priority, then first come first served) with FOR UPDATE SKIP LOCKED, so any number of
// workers on one Postgres never take the same row, and the embedded database runs the same SQL.
// A running generation carries its worker's heartbeat; one whose heartbeat stops (a crashed
// process) is queued again, up to MAX_ATTEMPTS runs, then failed with a reason.
import { Prisma, type Generation, type PrismaClient } from '../db/index.ts';
import { log } from '../log.ts';
import type { GenerationEvent, GenerationStatus, JobEvents, QueueEvent } from './events.ts';

export const MAX_ATTEMPTS = 3;
/** How often a worker tells the database it still runs its generation... */
const HEARTBEAT_MS = 5_000;

/** ...and at least three times per lease, so a slow beat never looks like a dead worker. */
export const heartbeatInterval = (leaseMs: number) => Math.min(HEARTBEAT_MS, leaseMs / 3);

export class GenerationQueue {
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly prisma: PrismaClient,
    private readonly events: JobEvents,
  ) {}

  /** Wakes local workers and tells every subscriber that a generation entered the queue. */
  announce(generationId: string, status: QueueEvent['status']): void {
    for (const wake of this.waiters) wake();
    this.events.publish('queue', { generationId, status });
  }

  /** Resolves when work may have arrived (a local enqueue or a queue event), or after `ms`. */
  waitForWork(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Takes the next queued generation for `workerId`, marking it RUNNING; undefined when none waits. */
  async claimNext(workerId: string): Promise<Generation | undefined> {
    const [claimed] = await this.prisma.$queryRaw<{ id: string }[]>`
      UPDATE "Generation"
      SET "status" = 'RUNNING', "startedAt" = now(), "heartbeatAt" = now(), "workerId" = ${workerId},
          "attempts" = "attempts" + 1, "step" = 0
      WHERE "id" = (
        SELECT "id" FROM "Generation" WHERE "status" = 'QUEUED'
        ORDER BY "priority" DESC, "createdAt", "id" LIMIT 1 FOR UPDATE SKIP LOCKED
      )
      RETURNING "id"`;
    if (!claimed) return undefined;
    const generation = await this.prisma.generation.findUniqueOrThrow({ where: { id: claimed.id } });
    this.events.publish('queue', { generationId: generation.id, status: 'RUNNING' });
    return generation;
  }

  /**
   * The place in the queue of each of `ids` that is QUEUED (1 for the next to run), in one query;
   * ids not queued are absent.
   */
  async positions(ids: readonly string[]): Promise<Map<string, number>> {
    if (ids.length === 0) return new Map();
    const rows = await this.prisma.$queryRaw<{ id: string; position: number }[]>`
      SELECT id, position::int FROM (
        SELECT id, row_number() OVER (ORDER BY priority DESC, "createdAt" ASC, id ASC) AS position
        FROM "Generation" WHERE status = 'QUEUED'
      ) queued WHERE id IN (${Prisma.join(ids)})`;
    return new Map(rows.map((r) => [r.id, r.position]));
  }

  /** Records that the worker still runs the generation; returns whether someone asked to cancel it. */
  async heartbeat(id: string, workerId: string): Promise<{ cancelRequested: boolean }> {
    const rows = await this.prisma.generation.updateManyAndReturn({
      where: { id, workerId, status: 'RUNNING' },
      data: { heartbeatAt: new Date() },
      select: { cancelRequested: true },
    });
    return { cancelRequested: rows[0]?.cancelRequested ?? true };
  }

  /**
   * Cancels a generation: a queued one at once; a running one is flagged and its worker told to stop
   * at the next step. Returns false when the generation has already ended.
   */
  async cancel(id: string): Promise<boolean> {
    const [queued] = await this.prisma.generation.updateManyAndReturn({
      where: { id, status: 'QUEUED' },
      data: { status: 'CANCELED', finishedAt: new Date() },
      select: { step: true, totalSteps: true },
    });
    if (queued) {
      this.events.publish('generation', id, statusEvent(id, 'CANCELED', null, queued.step, queued.totalSteps));
      this.events.publish('queue', { generationId: id, status: 'CANCELED' });
      return true;
    }
    const running = await this.prisma.generation.updateMany({ where: { id, status: 'RUNNING' }, data: { cancelRequested: true } });
    if (running.count > 0) this.events.publish('cancel', id);
    return running.count > 0;
  }

  /** Puts a generation this worker will not finish (shutdown) back in the queue, without counting the run. */
  async release(id: string, workerId: string): Promise<void> {
    const [released] = await this.prisma.generation.updateManyAndReturn({
      where: { id, workerId, status: 'RUNNING' },
      data: { status: 'QUEUED', workerId: null, heartbeatAt: null, startedAt: null, step: 0, attempts: { decrement: 1 } },
      select: { id: true, totalSteps: true },
    });
    if (released) this.announceRequeued(released);
  }

  /** Back in the queue at step 0, with the totalSteps it keeps. */
  private announceRequeued({ id, totalSteps }: { id: string; totalSteps: number | null }): void {
    this.events.publish('generation', id, statusEvent(id, 'QUEUED', null, 0, totalSteps));
    this.events.publish('queue', { generationId: id, status: 'QUEUED' });
  }

  /**
   * Requeues generations whose worker stopped beating for `leaseMs` (0: every running one, for a
   * process that owns the database alone), failing those that already ran MAX_ATTEMPTS times.
   * `aliveWorkerId`: this process's worker, alive whatever its heartbeat says (its beats stop while
   * the database is unreachable, and it records its generation once the database is back).
   */
  async recoverAbandoned(leaseMs: number, aliveWorkerId?: string): Promise<{ requeued: number; failed: number }> {
    const stale = {
      status: 'RUNNING' as const,
      OR: [{ heartbeatAt: null }, { heartbeatAt: { lt: new Date(Date.now() - leaseMs) } }],
      ...(aliveWorkerId && { AND: [{ OR: [{ workerId: null }, { workerId: { not: aliveWorkerId } }] }] }),
    };
    const failed = await this.prisma.generation.updateManyAndReturn({
      where: { ...stale, attempts: { gte: MAX_ATTEMPTS } },
      data: {
        status: 'FAILED',
        finishedAt: new Date(),
        error: `its worker stopped during each of ${MAX_ATTEMPTS} attempts (a crash or a kill); not retried`,
      },
      select: { id: true, error: true, step: true, totalSteps: true },
    });
    const requeued = await this.prisma.generation.updateManyAndReturn({
      where: stale,
      data: { status: 'QUEUED', workerId: null, heartbeatAt: null, startedAt: null, step: 0 },
      select: { id: true, totalSteps: true },
    });
    for (const { id, error, step, totalSteps } of failed) {
      this.events.publish('generation', id, statusEvent(id, 'FAILED', error, step, totalSteps));
      this.events.publish('queue', { generationId: id, status: 'FAILED' });
    }
    for (const row of requeued) this.announceRequeued(row);
    if (requeued.length || failed.length) log.warn('recovered abandoned generations', { requeued: requeued.length, failed: failed.length });
    if (requeued.length) for (const wake of this.waiters) wake();
    return { requeued: requeued.length, failed: failed.length };
  }
}

/** An event that announces a status, without step progress. */
export function statusEvent(generationId: string, status: GenerationStatus, error: string | null = null, step = 0, totalSteps: number | null = null): GenerationEvent {
  return { generationId, status, step, totalSteps, imageIndex: 0, etaMs: null, preview: null, error };
}
