/**
 * One acquisition: the `lock` object a critical section receives.
 *
 * Local deadlines use the monotonic clock and start *before* the statement that set them was sent,
 * so they can only fire early, never late, relative to the database's own expiry (clock rates aside).
 * Wall-clock time of this process is never compared with database times.
 */
import { DbMutexLostError, DbMutexNotHeldError, DbMutexTimeoutError, type DbMutexLostReason } from './errors';
import type { LeaseKey, LockStore } from './dialects/types';
import { validateSeconds } from './options';
import { sectionLost, traceRelease } from './tracing';

/** The lock object handed to critical sections and returned by `mutex.acquire()`. */
export interface DbMutexHeldLock {
  readonly lockId: string;
  /** Strictly increasing per lock id across every acquisition; pass it to the resource you protect. */
  readonly fencingToken: number;
  /** Aborts (with a DbMutexLostError as reason) when the lock is lost while held. */
  readonly signal: AbortSignal;
  /** Database-clock instant of the acquisition. */
  readonly acquiredAt: Date;
  /** Database-clock expiry as of the acquisition or the last `extend()`; null = never. */
  readonly expiresAt: Date | null;
  readonly holder: string;
  /** True while this process still believes it holds the lock (not released, not lost). */
  isHeld(): boolean;
  /**
   * Moves the hard cap (TTL) to `seconds` from now by the database clock and renews the lease.
   * Default: the acquisition's ttlSeconds. `null` removes the cap. Throws DbMutexTimeoutError if lost.
   */
  extend(seconds?: number | null): Promise<void>;
  /** Releases the lock. Twice is a no-op; throws DbMutexTimeoutError if the lock expired or was lost. */
  release(): Promise<void>;
}

/** How a release ended, as the lease tells its observer. */
export type ReleaseOutcome =
  /** Our row was removed before it expired; `heldMs` from sending the acquire to sending the release. */
  | { status: 'released'; heldMs: number }
  /** Our row was there but had expired (by the database clock) when the release removed it. */
  | { status: 'expired' }
  /** No row of ours was left (released by someone else, or taken over). */
  | { status: 'gone' }
  /** The release statement failed (database error): what became of the row is unknown. */
  | { status: 'failed' };

/**
 * What a lease reports to whoever keeps track of it (its DbMutex). The lease asks nothing back: it
 * runs its own statements through the store, and these are notices, in this order, once each.
 */
export interface LeaseObserver {
  /**
   * The lease stopped being held, so it must not be renewed any more: lost (`lost` is the reason;
   * its signal has just aborted), or its release began (`lost` null).
   */
  ended(lease: Lease, lost: DbMutexLostReason | null): void;
  /** The release statement answered (or failed): nothing of the lease is left to clean up. */
  settled(lease: Lease, outcome: ReleaseOutcome): void;
}

export interface LeaseOptions {
  /** Where the lease's own statements (release, extend) go. */
  store: LockStore;
  observer: LeaseObserver;
  lockId: string;
  ownerToken: string;
  fencingToken: number;
  /** Database-clock instant of the acquisition. */
  acquiredAt: Date;
  /** Database-clock expiry the acquire statement set; null = never. */
  expiresAt: Date | null;
  holder: string;
  ttlSeconds: number | null;
  /** Heartbeat lease; null = no heartbeat (the TTL alone bounds the lock). */
  leaseSeconds: number | null;
  /** Monotonic ms when the acquire statement was sent. */
  sentAt: number;
}

type State = 'held' | 'releasing' | 'released' | 'lost';

/**
 * A lease runs its own release and extend through the store. Its DbMutex acquires it, renews it
 * (src/heartbeat.ts tells it `renewed` or `renewalFailed`), marks it lost when it learns so
 * (`markLost`), and hears back only through the observer.
 */
export class Lease implements DbMutexHeldLock, LeaseKey {
  readonly lockId: string;
  readonly ownerToken: string;
  readonly fencingToken: number;
  readonly acquiredAt: Date;
  readonly holder: string;
  readonly leaseSeconds: number | null;
  /** Monotonic ms when the acquire statement was sent. */
  readonly startedAt: number;
  private readonly store: LockStore;
  private readonly observer: LeaseObserver;
  private ttlSeconds: number | null;
  /**
   * Made on first use of `signal`: an AbortController is among the costliest objects of a cycle
   * (an EventTarget, plus garbage), and most critical sections never look at the signal.
   */
  private controller: AbortController | null = null;
  /** Why the lock was lost, once it was: a signal first asked for afterwards starts aborted with it. */
  private abortReason: DbMutexLostError | null = null;
  private state: State = 'held';
  private lostReason: DbMutexLostReason | null = null;
  private releasing: Promise<DbMutexLostReason | null> | null = null;
  private releasedByCaller = false;
  private expiryTimer: NodeJS.Timeout | null = null;
  /** Monotonic ms; the lease runs out here unless renewed. */
  private localLeaseEnd: number;
  /** Monotonic ms; the TTL cap. */
  private localDeadline: number;
  /** Set when the last renewal attempt failed, so a lease that then runs out is reported as unreachable. */
  private renewalFailing = false;
  private currentExpiresAt: Date | null;

  constructor(options: LeaseOptions) {
    const { sentAt, ttlSeconds, leaseSeconds } = options;
    this.store = options.store;
    this.observer = options.observer;
    this.lockId = options.lockId;
    this.ownerToken = options.ownerToken;
    this.fencingToken = options.fencingToken;
    this.acquiredAt = options.acquiredAt;
    this.holder = options.holder;
    this.ttlSeconds = ttlSeconds;
    this.leaseSeconds = leaseSeconds;
    this.startedAt = sentAt;
    this.currentExpiresAt = options.expiresAt;
    this.localDeadline = ttlSeconds === null ? Infinity : sentAt + ttlSeconds * 1000;
    this.localLeaseEnd = leaseSeconds === null ? this.localDeadline : Math.min(sentAt + leaseSeconds * 1000, this.localDeadline);
    this.armExpiryTimer();
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  get expiresAt(): Date | null {
    return this.currentExpiresAt;
  }

  isHeld(): boolean {
    return this.state === 'held';
  }

  /** A renewal sent at `sentAt` (monotonic) succeeded. */
  renewed(sentAt: number): void {
    if (this.state !== 'held' || this.leaseSeconds === null) return;
    this.renewalFailing = false;
    this.localLeaseEnd = Math.min(sentAt + this.leaseSeconds * 1000, this.localDeadline);
    this.armExpiryTimer();
  }

  /** A renewal attempt failed (database unreachable?): if the lease now runs out, it is reported as `unreachable`. */
  renewalFailed(): void {
    this.renewalFailing = true;
  }

  /** Marks the lock lost: aborts the signal at once. Idempotent; ignored once released. */
  markLost(reason: DbMutexLostReason): void {
    if (this.state !== 'held') return;
    this.lose(reason);
  }

  private lose(reason: DbMutexLostReason): void {
    this.state = 'lost';
    this.lostReason = reason;
    this.clearTimer();
    this.abortReason = new DbMutexLostError(this.lockId, reason);
    this.controller?.abort(this.abortReason);
    sectionLost(this, reason);
    this.observer.ended(this, reason);
  }

  async extend(seconds?: number | null): Promise<void> {
    const next = seconds === undefined ? this.ttlSeconds : validateSeconds(seconds, 'seconds', { allowNull: true });
    if (this.state === 'lost') throw this.timeoutError(this.lostReason!);
    if (this.state !== 'held') throw new DbMutexNotHeldError(this.lockId, this.fencingToken);
    const sentAt = performance.now();
    const extended = await this.store.extend(this, next);
    if (!extended) {
      // Not extended: our row is gone or expired. Which one says how the lock was lost.
      const reason = (await this.store.classify([this])).has(this.ownerToken) ? 'expired' : 'released-by-other';
      this.markLost(reason);
      throw this.timeoutError(reason);
    }
    if (this.state !== 'held') throw this.timeoutError(this.lostReason ?? 'released-by-other');
    this.ttlSeconds = next;
    this.currentExpiresAt = extended.expiresAt;
    this.localDeadline = next === null ? Infinity : sentAt + next * 1000;
    this.localLeaseEnd = this.leaseSeconds === null ? this.localDeadline : Math.min(sentAt + this.leaseSeconds * 1000, this.localDeadline);
    this.renewalFailing = false;
    this.armExpiryTimer();
  }

  async release(): Promise<void> {
    // Only the caller's first release reports a loss; a second release is a harmless no-op.
    // (close() settling the lease first does not count as the caller's release.)
    if (this.releasedByCaller) return;
    this.releasedByCaller = true;
    const lost = await this.settle();
    if (lost) throw this.timeoutError(lost);
  }

  /**
   * Releases (once, however often it is called) and reports, instead of throwing, whether the lock
   * was lost before release. Every caller gets the same answer.
   */
  settle(): Promise<DbMutexLostReason | null> {
    // Observability: the release runs inside a release span that ends the section span (no-op without an SDK).
    this.releasing ??= traceRelease(this, () => this.doSettle());
    return this.releasing;
  }

  private async doSettle(): Promise<DbMutexLostReason | null> {
    if (this.state === 'released') return null;
    const wasLost = this.state === 'lost' ? this.lostReason : null;
    this.state = wasLost ? 'lost' : 'releasing';
    this.clearTimer();
    // Told before the release statement runs: a release notice for a lease still held then means
    // someone else removed our row.
    if (!wasLost) this.observer.ended(this, null);
    let outcome: { expired: boolean } | null;
    const sentAt = performance.now();
    try {
      // Even a lost lock may still be our row (e.g. the database was unreachable): deleting by owner
      // token can only ever remove our own acquisition.
      outcome = await this.store.release(this);
    } catch (error) {
      this.state = 'released';
      this.observer.settled(this, { status: 'failed' });
      if (wasLost) return wasLost;
      throw error;
    }
    this.observer.settled(
      this,
      outcome === null ? { status: 'gone' } : outcome.expired ? { status: 'expired' } : { status: 'released', heldMs: sentAt - this.startedAt },
    );
    if (wasLost) {
      this.state = 'released';
      return wasLost;
    }
    const reason: DbMutexLostReason | null = outcome === null ? 'released-by-other' : outcome.expired ? 'expired' : null;
    if (reason) this.lose(reason);
    this.state = 'released';
    return reason;
  }

  timeoutError(reason: DbMutexLostReason, extra: { result?: unknown; completed?: boolean; cause?: unknown } = {}): DbMutexTimeoutError {
    return new DbMutexTimeoutError(this.lockId, { reason, fencingToken: this.fencingToken, ...extra });
  }

  private armExpiryTimer(): void {
    this.clearTimer();
    const end = Math.min(this.localLeaseEnd, this.localDeadline);
    if (end === Infinity) return;
    const delay = Math.max(0, end - performance.now());
    // setTimeout's limit is 2^31-1 ms; longer deadlines are re-armed when they come closer.
    this.expiryTimer = setTimeout(() => this.onLocalExpiry(), Math.min(delay, 2_147_483_647));
    this.expiryTimer.unref();
  }

  private onLocalExpiry(): void {
    this.expiryTimer = null;
    const now = performance.now();
    if (now < Math.min(this.localLeaseEnd, this.localDeadline)) {
      this.armExpiryTimer();
      return;
    }
    this.markLost(now >= this.localDeadline || !this.renewalFailing ? 'expired' : 'unreachable');
  }

  private clearTimer(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
  }
}
