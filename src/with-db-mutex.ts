/** The critical-section helpers: `withDbMutex` and its wrapper/decorator form `dbMutex`. */
import { getDefaultDbMutex } from './default-mutex';
import type { DbMutex } from './db-mutex';
import { DbMutexError } from './errors';
import type { DbMutexHeldLock, Lease } from './lease';
import { runInSection, sectionFailed } from './tracing';
import { ACQUIRE_OPTION_KEYS, optionKeys, rejectUnknownOptions, validateOptionsObject, type AcquireOptions } from './options';

export interface WithDbMutexOptions extends AcquireOptions {
  /** Which DbMutex; default the one from `initDbMutex`. */
  mutex?: DbMutex;
}

/**
 * Acquires `lockId`, runs `fn(lock)`, releases in every case and returns fn's result.
 * - Lock held (or `waitMs` ran out): DbMutexError, fn does not run.
 * - Lock expired or lost before fn completed: DbMutexTimeoutError after fn settles, with fn's result
 *   on `.result` (if it returned) or fn's error as `cause` (if it threw).
 */
export async function withDbMutex<T>(
  lockId: string,
  fn: (lock: DbMutexHeldLock) => T | Promise<T>,
  options: WithDbMutexOptions = {},
): Promise<T> {
  if (typeof fn !== 'function') throw new TypeError('fn must be a function');
  // null is taken for "no options", as it always was.
  const opts = options ?? {};
  validateOptionsObject(opts);
  rejectUnknownOptions(opts, WITH_DB_MUTEX_OPTION_KEYS, 'withDbMutex');
  const { mutex, ...acquireOptions } = opts;
  const target = mutex ?? getDefaultDbMutex();
  const lock = (await target.acquire(lockId, acquireOptions)) as Lease;
  return runHeld(lock, fn);
}

/**
 * Runs `fn(lock)` on a lock just acquired, releases it in every case and returns fn's result; a loss
 * before fn completed becomes DbMutexTimeoutError (shared by `withDbMutex` and `withDbSemaphore`).
 */
export async function runHeld<L extends Lease, T>(lock: L, fn: (lock: L) => T | Promise<T>): Promise<T> {
  let result: T | undefined;
  let failure: { error: unknown } | null = null;
  try {
    // Inside the section span when tracing is on, so the app's own spans nest in it.
    result = await runInSection(lock, () => fn(lock));
  } catch (error) {
    failure = { error };
    sectionFailed(lock, error);
  }
  let lost;
  try {
    lost = await lock.settle();
  } catch (releaseError) {
    // The release statement itself failed (database error). The body's error matters more.
    if (failure) throw failure.error;
    throw releaseError;
  }
  if (lost) {
    throw lock.timeoutError(lost, failure ? { cause: failure.error, completed: false } : { result, completed: true });
  }
  if (failure) throw failure.error;
  return result as T;
}

export const WITH_DB_MUTEX_OPTION_KEYS = [...ACQUIRE_OPTION_KEYS, ...optionKeys<Omit<WithDbMutexOptions, keyof AcquireOptions>>({ mutex: true })];

export interface DbMutexWrapperOptions extends WithDbMutexOptions {
  /**
   * Like the original's `suppress_acquisition_exceptions`: when the lock cannot be acquired, do not
   * run and resolve to undefined instead of throwing DbMutexError. Never suppresses DbMutexTimeoutError.
   */
  suppressAcquisitionErrors?: boolean;
  /** Called with the suppressed DbMutexError and the call's arguments. */
  onSuppressed?: (error: DbMutexError, args: unknown[]) => void;
}

export const WRAPPER_OPTION_KEYS = [
  ...WITH_DB_MUTEX_OPTION_KEYS,
  ...optionKeys<Omit<DbMutexWrapperOptions, keyof WithDbMutexOptions>>({ suppressAcquisitionErrors: true, onSuppressed: true }),
];

/**
 * Wrapper form: `dbMutex('nightly')(fn)` returns a function with fn's parameters that runs fn under
 * the lock. The lock id may be a function of the call's arguments. Also works as a standard
 * (TypeScript 5) method decorator: `@dbMutex('report') async run() {…}`.
 */
export function dbMutex<K extends unknown[] = unknown[]>(lockId: string | ((...args: K) => string), options: DbMutexWrapperOptions = {}) {
  if (typeof lockId !== 'string' && typeof lockId !== 'function') {
    throw new TypeError('lockId must be a string or a function of the call arguments');
  }
  // Checked when the wrapper is made (at startup, for a decorator), not at its first call.
  validateOptionsObject(options);
  rejectUnknownOptions(options, WRAPPER_OPTION_KEYS, 'dbMutex');
  const { suppressAcquisitionErrors = false, onSuppressed, ...lockOptions } = options;
  // The wrapped function's own parameter types flow through; a lock-id function receives the same arguments.
  return function wrap<This, A extends unknown[], R>(
    fn: (this: This, ...args: A) => R | Promise<R>,
    _context?: ClassMethodDecoratorContext<This, (this: This, ...args: A) => R | Promise<R>>,
  ): (this: This, ...args: A) => Promise<R> {
    if (typeof fn !== 'function') throw new TypeError('dbMutex(...) must wrap a function');
    return async function locked(this: This, ...args: A): Promise<R> {
      const id = typeof lockId === 'function' ? lockId(...(args as unknown[] as K)) : lockId;
      try {
        return await withDbMutex(id, () => fn.apply(this, args), lockOptions);
      } catch (error) {
        if (suppressAcquisitionErrors && error instanceof DbMutexError) {
          onSuppressed?.(error, args);
          return undefined as R;
        }
        throw error;
      }
    };
  };
}
