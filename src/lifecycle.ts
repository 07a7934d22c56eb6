// Graceful shutdown as a list of hooks. Whatever holds a resource registers how to release it when it
// starts; shutdown runs the hooks newest first, so each one runs while what it depends on (registered
// before it, like the database) is still open.
import { log } from './log.ts';

/** A start-up failure with a one-line reason for the user (the CLI prints it without a stack). */
export class StartError extends Error {
  override name = 'StartError';
}

export type ShutdownHook = () => Promise<void> | void;

/** How long one hook may take before shutdown moves on. */
const HOOK_TIMEOUT_MS = 10_000;

export class Lifecycle {
  private hooks: { name: string; hook: ShutdownHook }[] = [];
  private stopping: Promise<void> | undefined;

  /** Registers `hook` to run at shutdown, before every hook registered earlier. */
  onShutdown(name: string, hook: ShutdownHook): void {
    this.hooks.push({ name, hook });
  }

  get shuttingDown(): boolean {
    return this.stopping !== undefined;
  }

  /** Runs every hook once, newest first; a failing or slow hook is logged and the next one runs. */
  shutdown(): Promise<void> {
    this.stopping ??= (async () => {
      for (const { name, hook } of this.hooks.reverse()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(hook),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`took more than ${HOOK_TIMEOUT_MS / 1000} s`)), HOOK_TIMEOUT_MS);
            }),
          ]);
          log.debug('shutdown step done', { step: name });
        } catch (error) {
          log.error('shutdown step failed', { step: name, err: error });
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return this.stopping;
  }
}
