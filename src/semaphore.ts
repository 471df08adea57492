/**
 * Counting semaphores: at most `limit` holders of one semaphore id at once.
 *
 * Each held permit is one row of the lock table, keyed `<semaphoreId>/permit/<n>` (n = 0 … limit-1),
 * with kind `semaphore` and the semaphore id, permit number and limit in their own columns. So a
 * permit is a lock in every other respect: the same heartbeat renews it, the same release, extend,
 * force-release, listing and audit trail apply, and the PRIMARY KEY keeps each permit to one holder.
 * What is new is only the acquisition, which takes the lowest free permit (one statement per
 * database, see each dialect's `semaphoreAcquire`).
 *
 * Lock ids and semaphore ids share the table's key space, and collisions are refused rather than
 * merged: a semaphore id names no row itself (`withDbMutex('x')` and `withDbSemaphore('x', …)` never
 * meet), while a lock whose id is exactly a permit's row key (`x/permit/0`) is refused while that
 * permit is held, and a semaphore skips a permit whose key such a lock holds (it never counts it as
 * free, so it cannot over-admit). The row key is unambiguous: the digits after the last `/permit/`
 * are the permit, everything before it the semaphore id.
 */
import type { DbMutexHeldLock } from './lease';
import { Lease, type LeaseOptions } from './lease';
import { describe, validateLockId, codePointLength, type AcquireOptions } from './options';

/** Longest semaphore id, in characters: the permit's row key (`<id>/permit/<n>`) must fit the 255 of a lock id. */
export const MAX_SEMAPHORE_ID_LENGTH = 240;
/** Largest `limit` of a semaphore. */
export const MAX_SEMAPHORE_LIMIT = 1000;

export { permitKey } from './dialects/rows';

/** The semaphore id of a permit's row key, or null when the key is not one. */
export function semaphoreOfKey(key: string): string | null {
  const match = /\/permit\/(0|[1-9][0-9]{0,2})$/.exec(key);
  return match ? key.slice(0, match.index) : null;
}

/**
 * Waiters of one semaphore share this key in the wait queue; a release of any of its permits wakes
 * them. (A lock id can never equal it: a permit key ends in digits, this ends in a slash.)
 */
export function semaphoreWaitKey(semaphoreId: string): string {
  return `${semaphoreId}/permit/`;
}

/**
 * The clean-up of a semaphore acquisition whose answer never arrived is keyed by this instead of a
 * row key (which permit it may have taken is unknown). Lock ids never contain NUL, so no lock's
 * clean-up can be taken for one.
 */
const ORPHAN_PREFIX = '\u0000semaphore\u0000';

export function semaphoreOrphanKey(semaphoreId: string): string {
  return `${ORPHAN_PREFIX}${semaphoreId}`;
}

/** The semaphore id of an orphan key, or null for a lock id. */
export function semaphoreOfOrphanKey(key: string): string | null {
  return key.startsWith(ORPHAN_PREFIX) ? key.slice(ORPHAN_PREFIX.length) : null;
}

export function validateSemaphoreId(value: unknown): string {
  const id = validateLockId(value, 'semaphoreId');
  if (codePointLength(id) > MAX_SEMAPHORE_ID_LENGTH) {
    throw new RangeError(`semaphoreId must be at most ${MAX_SEMAPHORE_ID_LENGTH} characters, got ${codePointLength(id)}`);
  }
  return id;
}

export function validateLimit(value: unknown): number {
  if (typeof value !== 'number') throw new TypeError(`limit must be a number, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < 1 || value > MAX_SEMAPHORE_LIMIT) {
    throw new RangeError(`limit must be an integer between 1 and ${MAX_SEMAPHORE_LIMIT}, got ${value}`);
  }
  return value;
}

/** Options of `mutex.acquireSemaphore`: the acquisition options of a lock, plus the limit. */
export interface SemaphoreAcquireOptions extends AcquireOptions {
  /**
   * How many holders the semaphore admits at once (1 … 1000). Required. Every holder of one
   * semaphore id must use the same limit: a different one is refused with
   * `DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH` while the others hold permits.
   */
  limit: number;
}

/** A held permit: the lock object of `withDbMutex`, plus which permit it is. */
export interface DbMutexSemaphorePermit extends DbMutexHeldLock {
  /** The semaphore id (`lockId` is the permit's row key, `<semaphoreId>/permit/<permit>`). */
  readonly semaphoreId: string;
  /** Which of the `limit` permits this holder has, 0-based. */
  readonly permit: number;
  /** The semaphore's limit. */
  readonly limit: number;
}

export class PermitLease extends Lease implements DbMutexSemaphorePermit {
  readonly semaphoreId: string;
  readonly permit: number;
  readonly limit: number;

  constructor(options: LeaseOptions & { semaphoreId: string; permit: number; limit: number }) {
    super(options);
    this.semaphoreId = options.semaphoreId;
    this.permit = options.permit;
    this.limit = options.limit;
  }
}
