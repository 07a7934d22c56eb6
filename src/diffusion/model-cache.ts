// Loaded pipelines kept between requests: building onnxruntime sessions costs seconds and
// gigabytes, so each model (and later each LoRA set on it) is loaded once and reused, within a
// memory budget, evicting the least recently used entries that no request is using. An entry
// counts an estimate while it loads and, in a measuring cache, the growth of the process's resident
// memory over its load once loaded: what its sessions really hold (onnxruntime's copies of the
// weights and prepacked kernels), and nothing for sessions it shares with entries loaded before it.

export interface Releasable {
  release(): Promise<void>;
}

interface Entry<T> {
  value: Promise<T>;
  bytes: number;
  users: number;
  lastUsed: number;
}

export class ModelCache<T extends Releasable> {
  private readonly entries = new Map<string, Entry<T>>();
  private clock = 0;

  constructor(
    readonly budgetBytes: number,
    /** Count each entry's RSS growth over its load instead of the estimate given to `use`. */
    private readonly measure = false,
  ) {}

  /** Runs `fn` with the cached value for `key`, loading it first if needed; the value stays cached while `fn` runs. */
  async use<R>(key: string, bytes: number, load: () => Promise<T>, fn: (value: T) => Promise<R>): Promise<R> {
    let entry = this.entries.get(key);
    if (!entry) {
      // Room is made before the load starts (a microtask later, once this entry counts as in use),
      // so that the budget bounds memory while a model loads too.
      const loading: Entry<T> = { value: Promise.resolve().then(() => this.evictOverBudget()).then(() => this.load(loading, load)), bytes, users: 0, lastUsed: 0 };
      entry = loading;
      this.entries.set(key, entry);
      entry.value.catch(() => this.entries.delete(key));
    }
    entry.users++;
    entry.lastUsed = ++this.clock;
    try {
      const value = await entry.value;
      await this.evictOverBudget();
      return await fn(value);
    } finally {
      entry.users--;
    }
  }

  private async load(entry: Entry<T>, load: () => Promise<T>): Promise<T> {
    const before = process.memoryUsage.rss();
    const value = await load();
    if (this.measure) entry.bytes = Math.max(0, process.memoryUsage.rss() - before);
    return value;
  }

  get keys(): string[] {
    return [...this.entries.keys()];
  }

  get usedBytes(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.bytes;
    return total;
  }

  /** Releases every entry no request is using. */
  async clear(): Promise<void> {
    for (const [key, entry] of this.entries) if (entry.users === 0) await this.evict(key, entry);
  }

  private async evictOverBudget(): Promise<void> {
    const idle = [...this.entries].filter(([, e]) => e.users === 0).sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    for (const [key, entry] of idle) {
      if (this.usedBytes <= this.budgetBytes) break;
      await this.evict(key, entry);
    }
  }

  private async evict(key: string, entry: Entry<T>): Promise<void> {
    // Evictions can overlap (each awaits a release): an entry another one already took is gone.
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    await (await entry.value).release();
  }
}
