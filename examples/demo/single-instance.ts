/**
 * One demo at a time per data folder: two embedded PostgreSQL servers (or two initdb runs) on the same
 * folder would corrupt it. The running demo's pid is kept in a file created atomically ('wx'); a file
 * left by a demo that died (its pid is gone) is taken over.
 */
import fs from 'node:fs';
import path from 'node:path';

export class DemoAlreadyRunningError extends Error {
  override readonly name = 'DemoAlreadyRunningError';
  readonly code = 'DEMO_ALREADY_RUNNING';
  constructor(readonly pid: number, readonly file: string) {
    super(
      `Another demo is already running${pid > 0 ? ` (pid ${pid})` : ''} on the embedded database in ${path.dirname(file)}. ` +
        'Stop it first (Ctrl-C in its terminal), or run this one against another server: DATABASE_URL=postgres://… PORT=3001 npm start. ' +
        `(If no demo is running, delete ${file}.)`,
    );
  }
}

export interface InstanceClaim {
  /** Removes the pid file, if it is still ours. */
  release(): void;
}

/** True when a process with this pid exists (EPERM: it exists but belongs to another user). */
export function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

export function claimInstance(file: string, pid: number = process.pid): InstanceClaim {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Two attempts: the second follows the removal of a dead demo's file. Losing that race too means
  // another demo started at this very moment, and it wins.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx');
      try {
        fs.writeSync(fd, `${pid}\n`);
      } finally {
        fs.closeSync(fd);
      }
      return {
        release() {
          if (readPid(file) === pid) fs.rmSync(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = readPid(file);
      // An empty file: the other demo created it and has not written its pid yet.
      if (holder === null && fs.existsSync(file) && fs.statSync(file).size === 0) throw new DemoAlreadyRunningError(0, file);
      if (holder !== null && holder !== pid && isAlive(holder)) throw new DemoAlreadyRunningError(holder, file);
      fs.rmSync(file, { force: true });
    }
  }
  throw new DemoAlreadyRunningError(readPid(file) ?? 0, file);
}
