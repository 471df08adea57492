/**
 * One acquisition: the `lock` object a critical section receives.
 *
 * Local deadlines use the monotonic clock and start *before* the statement that set them was sent,
 * so they can only fire early, never late, relative to the database's own expiry (clock rates aside).
 * Wall-clock time of this process is never compared with database times.
 */
import { DbMutexLostError, DbMutexNotHeldError, DbMutexTimeoutError, type DbMutexLostReason } from './errors';
import { validateSeconds } from './options';
import { traceRelease } from './tracing';

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

/** What a Lease needs from its DbMutex. */
export interface LeaseOwner {
  releaseLease(lease: Lease): Promise<{ expired: boolean } | null>;
  extendLease(lease: Lease, seconds: number | null): Promise<{ expiresAt: Date | null } | 'expired' | 'released-by-other'>;
  /** The lease stopped being renewable (lost or being released). */
  forget(lease: Lease): void;
  /** The lease's release has finished (whatever its outcome): nothing of it is left to clean up. */
  settled(lease: Lease): void;
  onLost(lease: Lease, reason: DbMutexLostReason): void;
}

type State = 'held' | 'releasing' | 'released' | 'lost';

export class Lease implements DbMutexHeldLock {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
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
  renewalFailing = false;
  private currentExpiresAt: Date | null;

  constructor(
    private readonly owner: LeaseOwner,
    readonly lockId: string,
    readonly ownerToken: string,
    readonly fencingToken: number,
    readonly acquiredAt: Date,
    expiresAt: Date | null,
    readonly holder: string,
    private ttlSeconds: number | null,
    readonly leaseSeconds: number | null,
    /** Monotonic ms when the acquire statement was sent. */
    readonly startedAt: number,
  ) {
    const sentAt = startedAt;
    this.signal = this.controller.signal;
    this.currentExpiresAt = expiresAt;
    this.localDeadline = ttlSeconds === null ? Infinity : sentAt + ttlSeconds * 1000;
    this.localLeaseEnd = leaseSeconds === null ? this.localDeadline : Math.min(sentAt + leaseSeconds * 1000, this.localDeadline);
    this.armExpiryTimer();
  }

  get expiresAt(): Date | null {
    return this.currentExpiresAt;
  }

  isHeld(): boolean {
    return this.state === 'held';
  }

  get heartbeat(): boolean {
    return this.leaseSeconds !== null;
  }

  /** A renewal sent at `sentAt` (monotonic) succeeded. */
  renewed(sentAt: number): void {
    if (this.state !== 'held' || this.leaseSeconds === null) return;
    this.renewalFailing = false;
    this.localLeaseEnd = Math.min(sentAt + this.leaseSeconds * 1000, this.localDeadline);
    this.armExpiryTimer();
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
    this.owner.forget(this);
    this.controller.abort(new DbMutexLostError(this.lockId, reason));
    this.owner.onLost(this, reason);
  }

  async extend(seconds?: number | null): Promise<void> {
    const next = seconds === undefined ? this.ttlSeconds : validateSeconds(seconds, 'seconds', { allowNull: true });
    if (this.state === 'lost') throw this.timeoutError(this.lostReason!);
    if (this.state !== 'held') throw new DbMutexNotHeldError(this.lockId, this.fencingToken);
    const sentAt = performance.now();
    const outcome = await this.owner.extendLease(this, next);
    if (outcome === 'expired' || outcome === 'released-by-other') {
      this.markLost(outcome);
      throw this.timeoutError(outcome);
    }
    if (this.state !== 'held') throw this.timeoutError(this.lostReason ?? 'released-by-other');
    this.ttlSeconds = next;
    this.currentExpiresAt = outcome.expiresAt;
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
    // Observability: ends the section span and runs the release inside a release span (no-op without an SDK).
    this.releasing ??= traceRelease(this, () => this.doSettle()).finally(() => this.owner.settled(this));
    return this.releasing;
  }

  private async doSettle(): Promise<DbMutexLostReason | null> {
    if (this.state === 'released') return null;
    const wasLost = this.state === 'lost' ? this.lostReason : null;
    this.state = wasLost ? 'lost' : 'releasing';
    this.clearTimer();
    this.owner.forget(this);
    let outcome: { expired: boolean } | null;
    try {
      // Even a lost lock may still be our row (e.g. the database was unreachable): deleting by owner
      // token can only ever remove our own acquisition.
      outcome = await this.owner.releaseLease(this);
    } catch (error) {
      if (wasLost) {
        this.state = 'released';
        return wasLost;
      }
      this.state = 'released';
      throw error;
    }
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
