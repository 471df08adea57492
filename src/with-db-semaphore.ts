/** The critical-section helpers of counting semaphores: `withDbSemaphore` and its wrapper form `dbSemaphore`. */
import { getDefaultDbMutex } from './default-mutex';
import { DbMutexError } from './errors';
import { rejectUnknownOptions, validateOptionsObject } from './options';
import type { DbMutexSemaphorePermit, PermitLease } from './semaphore';
import { runHeld, WITH_DB_MUTEX_OPTION_KEYS, WRAPPER_OPTION_KEYS, type DbMutexWrapperOptions, type WithDbMutexOptions } from './with-db-mutex';

export interface WithDbSemaphoreOptions extends WithDbMutexOptions {
  /** How many holders the semaphore admits at once (1 … 1000). Required; the same for every holder of the id. */
  limit: number;
}

export interface DbSemaphoreWrapperOptions extends DbMutexWrapperOptions {
  /** How many holders the semaphore admits at once (1 … 1000). Required; the same for every holder of the id. */
  limit: number;
}

/**
 * Takes one of the `limit` permits of `semaphoreId`, runs `fn(permit)`, releases in every case and
 * returns fn's result, exactly as `withDbMutex` does for a lock:
 * - all permits held (or `waitMs` ran out): DbMutexError `DB_MUTEX_SEMAPHORE_FULL` (`DB_MUTEX_WAIT_TIMEOUT`),
 *   and `DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH` when the holders use another limit; fn does not run;
 * - the permit expired or was lost before fn completed: DbMutexTimeoutError after fn settles.
 */
export async function withDbSemaphore<T>(
  semaphoreId: string,
  fn: (permit: DbMutexSemaphorePermit) => T | Promise<T>,
  options: WithDbSemaphoreOptions,
): Promise<T> {
  if (typeof fn !== 'function') throw new TypeError('fn must be a function');
  validateOptionsObject(options);
  rejectUnknownOptions(options, WITH_DB_SEMAPHORE_OPTION_KEYS, 'withDbSemaphore');
  const { mutex, ...acquireOptions } = options;
  const target = mutex ?? getDefaultDbMutex();
  const permit = (await target.acquireSemaphore(semaphoreId, acquireOptions)) as PermitLease;
  return runHeld(permit, fn);
}

const WITH_DB_SEMAPHORE_OPTION_KEYS = [...WITH_DB_MUTEX_OPTION_KEYS, 'limit'];
const SEMAPHORE_WRAPPER_OPTION_KEYS = [...WRAPPER_OPTION_KEYS, 'limit'];

/**
 * Wrapper form: `dbSemaphore('exports', { limit: 3 })(fn)` returns a function with fn's parameters
 * that runs fn holding a permit. The id may be a function of the call's arguments. Also a standard
 * (TypeScript 5) method decorator. `suppressAcquisitionErrors` resolves to undefined instead of
 * throwing when no permit could be had (never for a limit mismatch, a programming error).
 */
export function dbSemaphore<K extends unknown[] = unknown[]>(
  semaphoreId: string | ((...args: K) => string),
  options: DbSemaphoreWrapperOptions,
) {
  if (typeof semaphoreId !== 'string' && typeof semaphoreId !== 'function') {
    throw new TypeError('semaphoreId must be a string or a function of the call arguments');
  }
  // Checked when the wrapper is made (at startup, for a decorator), not at its first call.
  validateOptionsObject(options);
  rejectUnknownOptions(options, SEMAPHORE_WRAPPER_OPTION_KEYS, 'dbSemaphore');
  const { suppressAcquisitionErrors = false, onSuppressed, ...semaphoreOptions } = options;
  return function wrap<This, A extends unknown[], R>(
    fn: (this: This, ...args: A) => R | Promise<R>,
    _context?: ClassMethodDecoratorContext<This, (this: This, ...args: A) => R | Promise<R>>,
  ): (this: This, ...args: A) => Promise<R> {
    if (typeof fn !== 'function') throw new TypeError('dbSemaphore(...) must wrap a function');
    return async function limited(this: This, ...args: A): Promise<R> {
      const id = typeof semaphoreId === 'function' ? semaphoreId(...(args as unknown[] as K)) : semaphoreId;
      try {
        return await withDbSemaphore(id, () => fn.apply(this, args), semaphoreOptions);
      } catch (error) {
        if (suppressAcquisitionErrors && error instanceof DbMutexError && error.code !== 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH') {
          onSuppressed?.(error, args);
          return undefined as R;
        }
        throw error;
      }
    };
  };
}
