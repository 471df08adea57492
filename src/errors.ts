/**
 * Error classes of sequelize-db-mutex.
 *
 * The two classes the original (django-db-mutex) had are kept distinct on purpose:
 * `DbMutexError` means "the critical section did not run", `DbMutexTimeoutError` means
 * "it ran, but the lock may not have protected it the whole time". Neither extends the other
 * so a `catch` for one never swallows the other.
 */

/** Why an acquisition was refused. */
export type DbMutexErrorCode =
  /** The lock is held by someone else (or by this very call chain: locks are not reentrant). */
  | 'DB_MUTEX_HELD'
  /** `waitMs` ran out before the lock became free. */
  | 'DB_MUTEX_WAIT_TIMEOUT'
  /** The DbMutex was closed while the call waited or before it started. */
  | 'DB_MUTEX_CLOSED'
  /** Every permit of the semaphore is held (`used` of `limit`). */
  | 'DB_MUTEX_SEMAPHORE_FULL'
  /**
   * The semaphore's current holders acquired it with another `limit` (on `limit`); refused at once,
   * even with `waitMs`, so two limits never share one semaphore id.
   */
  | 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH';

const SEMAPHORE_CODES: readonly DbMutexErrorCode[] = ['DB_MUTEX_SEMAPHORE_FULL', 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH'];

/** Could not acquire the lock; the critical section did not run. */
export class DbMutexError extends Error {
  override readonly name = 'DbMutexError';
  readonly code: DbMutexErrorCode;
  readonly lockId: string;
  /**
   * Holder label of the lock's current holder (`DB_MUTEX_HELD`, `DB_MUTEX_WAIT_TIMEOUT`); undefined
   * when it could not be learned (it released in the instant between the refusal and the look-up, or
   * the look-up failed) and for `DB_MUTEX_CLOSED`.
   */
  readonly holder: string | undefined;
  /**
   * When the current holder's lease or TTL runs out, by the database clock, as of the refusal (a
   * heartbeat may renew it); null when it never expires; undefined when unknown, as for `holder`.
   */
  readonly expiresAt: Date | null | undefined;
  /** How long the call waited before giving up, in milliseconds (0 for an immediate refusal). */
  readonly waitedMs: number;
  /**
   * Semaphores: the limit of the current holders (for `DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH`, the one
   * that differs from the caller's); undefined for locks.
   */
  readonly limit: number | undefined;
  /** Semaphores: how many permits were held at the refusal; undefined for locks. */
  readonly used: number | undefined;

  constructor(
    lockId: string,
    options: {
      code?: DbMutexErrorCode;
      holder?: string;
      expiresAt?: Date | null;
      waitedMs?: number;
      limit?: number;
      used?: number;
      cause?: unknown;
    } = {},
  ) {
    super(refusalMessage(lockId, options), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code ?? 'DB_MUTEX_HELD';
    this.lockId = lockId;
    this.holder = options.holder;
    this.expiresAt = options.expiresAt;
    this.waitedMs = options.waitedMs ?? 0;
    this.limit = options.limit;
    this.used = options.used;
  }
}

function refusalMessage(id: string, o: { code?: DbMutexErrorCode; limit?: number; used?: number }): string {
  if (o.code === 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH') {
    return `Could not acquire semaphore: ${id} (its holders use limit ${o.limit ?? '?'}, a different one)`;
  }
  if (o.code && SEMAPHORE_CODES.includes(o.code)) return `Could not acquire semaphore: ${id} (${o.used ?? '?'} of ${o.limit ?? '?'} permits held)`;
  return `Could not acquire lock: ${id}`;
}

/**
 * Why a held lock was lost.
 * - `expired`: the lease or the TTL ran out by the database clock (nobody may have taken it yet).
 * - `released-by-other`: the row is gone or carries another owner token (operator force-release,
 *   manual delete, or another process took it over after it expired).
 * - `unreachable`: renewals kept failing until the lease had run out, so we can no longer be sure.
 * - `closed`: `mutex.close()` was called while the critical section was still running.
 */
export type DbMutexLostReason = 'expired' | 'released-by-other' | 'unreachable' | 'closed';

export const LOST_REASON_TEXT: Readonly<Record<DbMutexLostReason, string>> = {
  expired: 'the lease or TTL ran out by the database clock',
  'released-by-other': 'the lock row was removed or taken over by another holder (force-release, delete or takeover)',
  unreachable: 'renewals failed until the lease ran out (database unreachable?)',
  closed: 'the DbMutex was closed while the lock was held',
};

/** The lock expired or was lost before the function completed. */
export class DbMutexTimeoutError extends Error {
  override readonly name = 'DbMutexTimeoutError';
  readonly code = 'DB_MUTEX_LOST' as const;
  readonly lockId: string;
  readonly reason: DbMutexLostReason;
  readonly fencingToken: number;
  /** The function's return value, when it returned normally. */
  readonly result: unknown;
  /** True when the function returned (so `result` is meaningful), false when it threw. */
  readonly completed: boolean;

  constructor(
    lockId: string,
    options: { reason: DbMutexLostReason; fencingToken: number; result?: unknown; completed?: boolean; cause?: unknown },
  ) {
    super(
      `Lock ${lockId} expired before function completed`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.lockId = lockId;
    this.reason = options.reason;
    this.fencingToken = options.fencingToken;
    this.result = options.result;
    this.completed = options.completed ?? false;
  }
}

/** Used as `signal.reason` when a held lock is lost. */
export class DbMutexLostError extends Error {
  override readonly name = 'DbMutexLostError';
  readonly code = 'DB_MUTEX_LOST' as const;
  constructor(
    readonly lockId: string,
    readonly reason: DbMutexLostReason,
    options?: { cause?: unknown },
  ) {
    super(`Lock ${lockId} was lost: ${LOST_REASON_TEXT[reason]}`, options);
  }
}

/** The configured dialect is not one this library supports. */
export class DbMutexUnsupportedDialectError extends Error {
  override readonly name = 'DbMutexUnsupportedDialectError';
  readonly code = 'DB_MUTEX_UNSUPPORTED_DIALECT' as const;
  constructor(readonly dialect: string, supported: readonly string[]) {
    super(`sequelize-db-mutex does not support the "${dialect}" dialect; supported: ${supported.join(', ')}`);
  }
}

/** Thrown when a `mariadb`/`mysql` Sequelize instance points at a server these statements cannot run on. */
export class DbMutexUnsupportedServerError extends Error {
  override readonly name = 'DbMutexUnsupportedServerError';
  readonly code = 'DB_MUTEX_UNSUPPORTED_SERVER' as const;
  constructor(readonly serverVersion: string) {
    super(
      `sequelize-db-mutex needs MariaDB 10.5 or later for the mariadb/mysql dialects (it uses sequences and ` +
        `INSERT … RETURNING); this server reports version ${JSON.stringify(serverVersion)}`,
    );
  }
}

/**
 * `lock.extend()` on a lock its own holder already released. (A lock that was lost instead, by
 * expiry or another's action, gives DbMutexTimeoutError: that is not the caller's doing.)
 */
export class DbMutexNotHeldError extends Error {
  override readonly name = 'DbMutexNotHeldError';
  readonly code = 'DB_MUTEX_NOT_HELD' as const;
  constructor(
    readonly lockId: string,
    readonly fencingToken: number,
  ) {
    super(`Lock ${lockId} is not held (already released)`);
  }
}

/**
 * Why a leader stopped being leader (the `demoted` event of a Leadership, and the `reason` of
 * DbMutexDemotedError): a way its lock can be lost, or
 * - `stopped`: `leadership.stop()` (or its `signal`) stepped down;
 * - `resigned`: `onElected`'s code called `lock.release()`;
 * - `failed`: `onElected` threw (or rejected) while this process was still leader.
 */
export type DbMutexDemotedReason = DbMutexLostReason | 'stopped' | 'resigned' | 'failed';

/**
 * The `reason` of a leader lock's `signal` when leadership ends. When the lock itself was lost (lease
 * ran out, force-release, database unreachable, mutex closed), `cause` is that DbMutexLostError.
 */
export class DbMutexDemotedError extends Error {
  override readonly name = 'DbMutexDemotedError';
  readonly code = 'DB_MUTEX_DEMOTED' as const;
  constructor(
    readonly electionId: string,
    /** The epoch (fencing token) of the term that ended. */
    readonly epoch: number,
    readonly reason: DbMutexDemotedReason,
    options?: { cause?: unknown },
  ) {
    super(`Leadership of ${electionId} (epoch ${epoch}) ended: ${reason}`, options);
  }
}

/**
 * An optional feature needs a package the app has not installed: `createDbMutexMetrics` needs
 * `prom-client`. Importing sequelize-db-mutex never needs it; only the feature that uses it throws.
 */
export class DbMutexMissingPeerError extends Error {
  override readonly name = 'DbMutexMissingPeerError';
  readonly code = 'DB_MUTEX_MISSING_PEER' as const;
  constructor(
    /** The npm package to install. */
    readonly peer: string,
    /** The function that needs it. */
    readonly feature: string,
    options?: { cause?: unknown },
  ) {
    super(`${feature} needs the optional peer dependency "${peer}": npm install ${peer}`, options);
  }
}
