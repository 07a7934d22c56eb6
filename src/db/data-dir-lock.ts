// PGlite does not lock its folder, and two processes writing one folder corrupt it: a lock file
// beside it holds the owner's pid, and a lock left by a process that is gone is taken over.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { DatabaseUnavailableError } from './errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `${dir}.lock`; returns its release. Throws DatabaseUnavailableError when a live process holds it. */
export function lockDataDir(dir: string): () => void {
  const path = `${dir}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
      const owner = Number(readFileSync(path, 'utf8'));
      if (owner && alive(owner)) {
        throw new DatabaseUnavailableError(
          `the embedded database in ${dir} is in use by another process (pid ${owner}); stop it, or give this one another SDQL_DATA_DIR`,
        );
      }
      unlinkSync(path);
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  };
}
