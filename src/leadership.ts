/**
 * Leader election on top of the lock: the leader is whoever holds the election's lock. A Leadership
 * campaigns by waiting for that lock (release notices on PostgreSQL, jittered polling elsewhere),
 * holds it with the heartbeat lease while it leads, and campaigns again after a loss. Nothing here
 * touches SQL: every guarantee (database clock, owner token, fencing token, loss → signal) is the
 * lock's own.
 *
 * Decisions:
 * - `onElected` returning (or resolving) keeps leadership: the term lasts until the lock is lost or
 *   `stop()`. Long-running work belongs inside it, bound to `lock.signal`.
 * - `onElected` throwing while still leader steps down (`demoted` with reason `failed`, then the
 *   `error` event), releases the lock so another process can lead, and campaigns again after
 *   `retryDelayMs`.
 * - A new term never starts in this process before the previous `onElected` has settled, so two
 *   terms of one process never run their code at once (the old one is told by its signal to end).
 */
import { EventEmitter } from 'node:events';
import type { DbMutex } from './db-mutex';
import { DbMutexDemotedError, DbMutexError, DbMutexLostError, type DbMutexDemotedReason } from './errors';
import type { DbMutexHeldLock, Lease } from './lease';
import { describe, optionKeys, rejectUnknownOptions, validateHolder, validateLockId, validateMs, validateOptionsObject, validateSeconds } from './options';
import { runInSection } from './tracing';

/** Options of `mutex.lead()`. */
export interface LeadOptions {
  /**
   * Runs each time this process becomes leader, with the election's lock: `lock.fencingToken` is the
   * term's epoch, `lock.signal` aborts (with a DbMutexDemotedError) when the term ends. Returning keeps
   * leadership; throwing steps down (see the README's "Leader election").
   */
  onElected: (lock: DbMutexHeldLock) => unknown;
  /** The leader's heartbeat lease, in seconds: a dead leader is replaced within about one lease. Default: the DbMutex's leaseSeconds. */
  leaseSeconds?: number;
  /** Label stored with the lock, shown to operators. Default: the DbMutex's holder. */
  holder?: string;
  /** Aborting it is `stop()`. */
  signal?: AbortSignal;
  /**
   * How long to wait before campaigning again after `onElected` threw, the leader resigned, or a
   * database error interrupted the campaign, in milliseconds. Default 1000.
   */
  retryDelayMs?: number;
}

export const LEAD_OPTION_KEYS = optionKeys<LeadOptions>({ onElected: true, leaseSeconds: true, holder: true, signal: true, retryDelayMs: true });

export const DEFAULT_RETRY_DELAY_MS = 1000;
/**
 * One wait of the campaign, in milliseconds. Waiting is already as cheap as it gets (one acquire
 * attempt per poll interval, or per release notice); the wait is only cut into pieces so that the
 * refusal's holder look-up, which ends each piece, stays rare.
 */
const CAMPAIGN_WAIT_MS = 10 * 60_000;

/** Events a Leadership emits. Listener errors are caught and reported through `error`. */
export interface LeadershipEvents {
  /** This process became leader; `onElected` is being called. `epoch` is the lock's fencing token. */
  elected: [{ electionId: string; epoch: number; holder: string; acquiredAt: Date }];
  /** This process stopped being leader. `error` is what `onElected` threw, for reason `failed`. */
  demoted: [{ electionId: string; epoch: number; reason: DbMutexDemotedReason; error?: unknown }];
  /**
   * `onElected` threw, or a database error interrupted the campaign (it goes on after `retryDelayMs`).
   * Without a listener, it becomes a process warning instead of an uncaught 'error' event.
   */
  error: [error: unknown];
}

interface ResolvedLeadOptions {
  onElected: LeadOptions['onElected'];
  leaseSeconds: number;
  holder: string;
  signal: AbortSignal | undefined;
  retryDelayMs: number;
}

function resolveLeadOptions(mutex: DbMutex, options: LeadOptions): ResolvedLeadOptions {
  validateOptionsObject(options);
  rejectUnknownOptions(options, LEAD_OPTION_KEYS, 'mutex.lead');
  if (typeof options.onElected !== 'function') throw new TypeError(`onElected must be a function, got ${describe(options.onElected)}`);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${describe(options.signal)}`);
  }
  return {
    onElected: options.onElected,
    leaseSeconds:
      options.leaseSeconds === undefined ? mutex.options.leaseSeconds : (validateSeconds(options.leaseSeconds, 'leaseSeconds', { allowNull: false }) as number),
    holder: options.holder === undefined ? mutex.options.holder : validateHolder(options.holder),
    signal: options.signal,
    retryDelayMs: options.retryDelayMs === undefined ? DEFAULT_RETRY_DELAY_MS : validateMs(options.retryDelayMs, 'retryDelayMs', { min: 0 }),
  };
}

/** One term of leadership: the lease, and the signal that `onElected` sees. */
class Term {
  private readonly controller = new AbortController();
  readonly lock: DbMutexHeldLock;
  reason: DbMutexDemotedReason | null = null;
  readonly ended: Promise<void>;
  private resolveEnded!: () => void;

  constructor(
    readonly lease: Lease,
    private readonly electionId: string,
    private readonly onEnd: (term: Term, reason: DbMutexDemotedReason, error?: unknown) => void,
  ) {
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
    const onLeaseLost = () => {
      const cause: unknown = lease.signal.reason;
      this.end(cause instanceof DbMutexLostError ? cause.reason : 'released-by-other', cause);
    };
    const signal = this.controller.signal;
    const resign = () => this.end('resigned');
    // The lock `onElected` gets: the lease, with a signal that also covers stop(), resigning and failing.
    this.lock = {
      lockId: lease.lockId,
      fencingToken: lease.fencingToken,
      signal,
      acquiredAt: lease.acquiredAt,
      get expiresAt() {
        return lease.expiresAt;
      },
      holder: lease.holder,
      isHeld: () => !signal.aborted && lease.isHeld(),
      extend: (seconds?: number | null) => lease.extend(seconds),
      // Resigning: the term ends and the lock is released; the campaign goes on after retryDelayMs.
      async release() {
        resign();
        await lease.settle();
      },
    };
    this.onLeaseLost = onLeaseLost;
  }

  private readonly onLeaseLost: () => void;

  /** From now on a loss of the lease ends the term (at once, if it was lost already). */
  watchLease(): void {
    if (this.lease.signal.aborted) this.onLeaseLost();
    else this.lease.signal.addEventListener('abort', this.onLeaseLost, { once: true });
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  get signalReason(): unknown {
    return this.controller.signal.reason;
  }

  /** Ends the term once; the first reason wins. The signal aborts before `demoted` is emitted. */
  end(reason: DbMutexDemotedReason, cause?: unknown): void {
    if (this.reason !== null) return;
    this.reason = reason;
    this.controller.abort(new DbMutexDemotedError(this.electionId, this.lease.fencingToken, reason, cause === undefined ? undefined : { cause }));
    this.onEnd(this, reason, reason === 'failed' ? cause : undefined);
    this.resolveEnded();
  }
}

/**
 * A process's candidacy for one election, returned by `mutex.lead()`. It campaigns in the background
 * from the moment it is made until `stop()` (or its signal, or `mutex.close()`).
 */
export class Leadership extends EventEmitter<LeadershipEvents> {
  private term: Term | null = null;
  private stopping = false;
  /** Cancels the campaign's wait and its back-off. */
  private readonly stopController = new AbortController();
  private readonly done: Promise<void>;
  private readonly onCallerAbort = () => void this.stop();

  readonly electionId: string;
  private readonly options: ResolvedLeadOptions;

  /** Use `mutex.lead()`. Invalid arguments throw here, before any SQL. */
  constructor(
    private readonly mutex: DbMutex,
    electionId: string,
    options: LeadOptions,
  ) {
    super();
    this.electionId = validateLockId(electionId, 'electionId');
    this.options = resolveLeadOptions(mutex, options);
    if (mutex.isClosed) throw new DbMutexError(electionId, { code: 'DB_MUTEX_CLOSED' });
    this.options.signal?.addEventListener('abort', this.onCallerAbort, { once: true });
    if (this.options.signal?.aborted) this.stopping = true;
    // Never rejects: every failure inside is reported through `error` and retried.
    this.done = this.campaign();
  }

  /** True while this process leads (elected, and the term has not ended). */
  isLeader(): boolean {
    return this.term !== null && !this.term.aborted && this.term.lease.isHeld();
  }

  /** The election's lock while this process leads, else null. Its `fencingToken` is the epoch. */
  current(): DbMutexHeldLock | null {
    return this.isLeader() ? this.term!.lock : null;
  }

  /**
   * Stops campaigning and steps down: the leader's signal aborts (reason `stopped`) and its lock is
   * released at once, so another process can take over. Resolves once the lock is released and the
   * running `onElected` (if any) has settled. Twice does no harm.
   */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.stopController.abort(new DbMutexError(this.electionId, { code: 'DB_MUTEX_CLOSED' }));
      this.term?.end('stopped');
    }
    return this.done;
  }

  private async campaign(): Promise<void> {
    // The caller attaches its listeners after lead() returns: nothing happens before that.
    await Promise.resolve();
    let backOff = false;
    try {
      while (!this.stopping) {
        if (backOff) {
          backOff = false;
          await this.pause(this.options.retryDelayMs);
          continue;
        }
        let lease: Lease;
        try {
          lease = (await this.mutex.acquire(this.electionId, {
            waitMs: CAMPAIGN_WAIT_MS,
            leaseSeconds: this.options.leaseSeconds,
            heartbeat: true,
            // A term has no cap: the heartbeat lease alone bounds how long a dead leader blocks the election.
            ttlSeconds: null,
            holder: this.options.holder,
            signal: this.stopController.signal,
            // Marks the row as an election's for operators (dashboard, CLI, list): not public API.
          }, { kind: 'election' })) as Lease;
        } catch (error) {
          if (this.stopping) break;
          if (error instanceof DbMutexError && error.code === 'DB_MUTEX_WAIT_TIMEOUT') continue;
          if (error instanceof DbMutexError && error.code === 'DB_MUTEX_CLOSED') break;
          this.report(error);
          backOff = true;
          continue;
        }
        if (this.stopping) {
          // stop() came while the winning statement was in flight.
          await lease.settle().catch(() => undefined);
          break;
        }
        const reason = await this.serve(lease);
        // A leader that failed or resigned lets the others go first; after a loss there is nobody to wait for.
        backOff = reason === 'failed' || reason === 'resigned';
      }
    } finally {
      this.stopping = true;
      this.options.signal?.removeEventListener('abort', this.onCallerAbort);
    }
  }

  /** One term: from election to the release of the lock and the end of `onElected`. */
  private async serve(lease: Lease): Promise<DbMutexDemotedReason> {
    const term = new Term(lease, this.electionId, (t, reason, error) => {
      this.safeEmit('demoted', { electionId: this.electionId, epoch: t.lease.fencingToken, reason, ...(reason === 'failed' ? { error } : {}) });
      if (reason === 'failed') this.report(error);
    });
    this.term = term;
    this.safeEmit('elected', { electionId: this.electionId, epoch: lease.fencingToken, holder: lease.holder, acquiredAt: lease.acquiredAt });
    // Watched only now, so a lease lost in the meantime is reported after `elected`, never before.
    term.watchLease();
    const running = (async () => {
      if (term.aborted) return;
      try {
        // Inside the term's section span when tracing is on, so the app's own spans nest in it.
        await runInSection(lease, () => this.options.onElected(term.lock));
      } catch (error) {
        if (!term.aborted) term.end('failed', error);
        // After the term ended, its own signal's reason is the expected way out; anything else is news.
        else if (error !== term.signalReason) this.report(error);
      }
    })();
    await term.ended;
    // Released before waiting for onElected, so the next leader is not held up by this one's cleanup.
    // (A lost lock may still be our row, e.g. after an unreachable spell: deleting by owner token is safe.)
    await lease.settle().catch((error: unknown) => this.report(error));
    await running;
    if (this.term === term) this.term = null;
    return term.reason!;
  }

  /** Sleeps `ms`, or less when stop() comes. Keeps the process alive, as a waiting acquire does. */
  private pause(ms: number): Promise<void> {
    const signal = this.stopController.signal;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      if (signal.aborted) done();
    });
  }

  private report(error: unknown): void {
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', error);
      } catch {
        // A throwing 'error' listener must not stop the campaign.
      }
      return;
    }
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    process.emitWarning(`db-mutex: leadership of ${JSON.stringify(this.electionId)}: ${message}`, { code: 'DB_MUTEX_LEADERSHIP_ERROR' });
  }

  private safeEmit<K extends 'elected' | 'demoted'>(event: K, ...args: LeadershipEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: LeadershipEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.report(error);
    }
  }
}
