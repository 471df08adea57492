/**
 * The original's "Usage with Celery" pattern, for Node schedulers (node-cron, BullMQ repeatable jobs,
 * setInterval…): a periodic job that must never run twice at once, across every process and machine.
 *
 * - Lock already held (another worker is running it): skip quietly, it is not an error.
 * - Lock lost while running (`DbMutexTimeoutError`: the lease ran out, or an operator force-released
 *   it): the run may have overlapped another one, so report it.
 * - Anything else the job throws: report it too.
 *
 * In an app, import from 'sequelize-db-mutex' instead of '../../src'.
 */
import { DbMutexError, DbMutexTimeoutError, withDbMutex, type DbMutex, type DbMutexHeldLock } from '../../src';

export type JobOutcome<T = unknown> =
  | { status: 'ran'; result: T }
  | { status: 'skipped'; error: DbMutexError }
  | { status: 'lost'; error: DbMutexTimeoutError }
  | { status: 'failed'; error: unknown };

export interface LockedJobOptions<T> {
  /** Lock id shared by every process that runs this job (the original used the task's class name). */
  lockId: string;
  /** The work. Pass `lock.signal` to whatever supports cancellation, `lock.fencingToken` to guarded writes. */
  run: (lock: DbMutexHeldLock) => Promise<T>;
  mutex: DbMutex;
  /** Hard cap for one run; default: the DbMutex's ttlSeconds (30 min unless configured). */
  ttlSeconds?: number | null;
  /** Lease renewed by the heartbeat; a crashed worker frees the job within this. Default: the DbMutex's. */
  leaseSeconds?: number;
  /** Called when the run lost its lock. Wire it to your error tracker. */
  onLost: (error: DbMutexTimeoutError) => void;
  /** Called when the job itself failed. */
  onError: (error: unknown) => void;
  /** Called when the run was skipped because another one holds the lock. Default: nothing (quiet). */
  onSkipped?: (error: DbMutexError) => void;
}

/**
 * Returns a function that runs the job once under its lock. It never rejects, so it can be handed to
 * any scheduler as is (a rejected promise in a timer callback would be an unhandled rejection).
 */
export function lockedJob<T>(options: LockedJobOptions<T>): () => Promise<JobOutcome<T>> {
  const { lockId, run, mutex, ttlSeconds, leaseSeconds, onLost, onError, onSkipped } = options;
  return async function runLockedJob(): Promise<JobOutcome<T>> {
    try {
      const result = await withDbMutex(lockId, run, {
        mutex,
        ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
        ...(leaseSeconds !== undefined ? { leaseSeconds } : {}),
      });
      return { status: 'ran', result };
    } catch (error) {
      if (error instanceof DbMutexError) {
        if (onSkipped) report(onSkipped, error);
        return { status: 'skipped', error };
      }
      if (error instanceof DbMutexTimeoutError) {
        report(onLost, error);
        return { status: 'lost', error };
      }
      report(onError, error);
      return { status: 'failed', error };
    }
  };
}

/** A throwing reporter must not turn the outcome into a rejection; it is logged instead. */
function report<E>(callback: (error: E) => void, error: E): void {
  try {
    callback(error);
  } catch (callbackError) {
    console.error('lockedJob: the reporting callback threw', callbackError);
  }
}
