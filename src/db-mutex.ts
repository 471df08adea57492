/**
 * DbMutex: one lock table on one Sequelize instance. It owns every timer and connection it starts
 * (the heartbeat tick, the LISTEN connection, waiters' timers) and `close()` stops all of them.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { Sequelize } from 'sequelize';
import { StatementRunner } from './connection';
import { dialectFor } from './dialects';
import type { CurrentHolder, Dialect, EventRow, LockRow, LockStore, ReleaseNotice, SemaphoreAttempt } from './dialects/types';
import { DbMutexError, type DbMutexLostReason } from './errors';
import { Heartbeat } from './heartbeat';
import { Leadership, type LeadOptions } from './leadership';
import { Lease, type DbMutexHeldLock, type LeaseObserver } from './lease';
import { ReleaseListener, type ListenConnector, type PgNotifyingClient } from './listener';
import {
  LockOperator,
  type AuditOptions,
  type EventsOptions,
  type ForceReleaseOptions,
  type ForceReleaseResult,
  type HistoryOptions,
  type ListOptions,
  type PurgeHistoryOptions,
  type SemaphoreEntry,
  type SemaphoresOptions,
} from './operator';
import { storeSeamOf } from './internal/store-seam';
import { OrphanCleanup } from './orphan-cleanup';
import {
  ACQUIRE_OPTION_KEYS,
  rejectUnknownOptions,
  resolveAcquireOptions,
  resolveDbMutexOptions,
  validateLockId,
  validateOptionsObject,
  type AcquireOptions,
  type DbMutexOptions,
  type ResolvedAcquireOptions,
  type ResolvedDbMutexOptions,
} from './options';
import type { DbMutexHistoryEntry } from './history';
import { defineModels, type DefinedModels } from './schema';
import { acquireFailureResult, traceAcquire, type AcquireFailureResult } from './tracing';
import {
  PermitLease,
  semaphoreOfKey,
  semaphoreOfOrphanKey,
  semaphoreOrphanKey,
  semaphoreWaitKey,
  validateLimit,
  validateSemaphoreId,
  type DbMutexSemaphorePermit,
  type SemaphoreAcquireOptions,
} from './semaphore';
import { WaitQueue } from './wait-queue';

/** Events a DbMutex emits (all synchronous, listener errors are not caught). */
export interface DbMutexEvents {
  acquired: [{ lockId: string; fencingToken: number; holder: string; waitedMs: number }];
  contended: [{ lockId: string }];
  released: [{ lockId: string; fencingToken: number; heldMs: number }];
  lost: [{ lockId: string; fencingToken: number; reason: DbMutexLostReason }];
  renewalFailed: [{ error: unknown; lockCount: number }];
  listenerError: [{ error: unknown }];
  /**
   * Said once per DbMutex and feature when it works in a reduced way: `preparedStatements` when a
   * prepared-statement mismatch showed a transaction-mode pooler and statements went unnamed;
   * `listen` when release notices fall back to polling (unnamed statements without `listenUrl`);
   * `history` when the history table is missing (not migrated yet, or migrated back): history is off
   * for this DbMutex until it is created again and the process restarts; every lock works as before.
   * Without a listener for this event, it becomes a process warning (`process.emitWarning`).
   */
  degraded: [DbMutexDegradedEvent];
  // ---- observability (metrics, see src/metrics.ts) ----
  /**
   * An acquisition that did not succeed: `held` (refused at once), `wait_timeout`, `cancelled`
   * (the signal aborted, or the DbMutex closed), `error` (a statement failed). Not for a TypeError
   * thrown on bad arguments.
   */
  acquireFailed: [{ lockId: string; result: AcquireFailureResult; waitedMs: number; error: unknown }];
  /** An operator action of this DbMutex removed a lock row (`action`: force-release, release-stale, purge-expired). */
  forceReleased: [{ lockId: string; fencingToken: number; action: string; operator: string }];
  /** The release-notice (LISTEN) connection is back after it dropped or failed to connect. */
  listenerReconnected: [];
}

export interface DbMutexDegradedEvent {
  feature: 'preparedStatements' | 'listen' | 'history';
  /** Stable code, also the process warning's code. */
  code: 'DB_MUTEX_UNNAMED_STATEMENTS' | 'DB_MUTEX_POLLING' | 'DB_MUTEX_NO_HISTORY';
  message: string;
  /** The error that showed it, when an error did. */
  cause?: unknown;
}

export type {
  AuditOptions,
  EventsOptions,
  ForceReleaseOptions,
  ForceReleaseResult,
  HistoryOptions,
  ListOptions,
  PurgeHistoryOptions,
  SemaphoreEntry,
  SemaphoresOptions,
} from './operator';

/** How often a DbMutex prunes history older than `historyRetentionDays` (first at its first release). */
const HISTORY_PRUNE_INTERVAL_MS = 60 * 60 * 1000;

/** A loss as the holder's history row words it. */
const LOSS_DETAIL: Readonly<Record<Exclude<DbMutexLostReason, 'closed'>, string>> = {
  expired: 'expired',
  'released-by-other': 'released by another',
  unreachable: 'unreachable',
};

const SEMAPHORE_ACQUIRE_OPTION_KEYS = [...ACQUIRE_OPTION_KEYS, 'limit'];

type SemaphoreRefusal = Exclude<SemaphoreAttempt, { outcome: 'won' }>;

/** A refused attempt, with the holder when the acquire statement reported it. */
interface Refusal {
  holder: CurrentHolder | null;
}


export class DbMutex extends EventEmitter<DbMutexEvents> {
  readonly options: ResolvedDbMutexOptions;
  readonly models: DefinedModels;
  readonly dialect: Dialect;
  /** Every lock statement goes through the store: its SQL, rows and transactions are the database's. */
  private readonly store: LockStore;
  private readonly operator: LockOperator;
  private readonly runner: StatementRunner;
  private listener: ReleaseListener | null;
  private listenIdleTimer: NodeJS.Timeout | null = null;
  /** Monotonic ms when the listener last became unneeded (no waiter, no holder). */
  private listenIdleSince = 0;
  private readonly degradedSaid = new Set<DbMutexDegradedEvent['feature']>();
  private readonly waiters = new WaitQueue();
  /** Leases being renewed (held), by owner token. */
  private readonly held = new Map<string, Lease>();
  /** Leases not yet settled: held, or lost while their critical section still runs. close() releases these. */
  private readonly unsettled = new Set<Lease>();
  private readonly heartbeat: Heartbeat;
  /**
   * Acquisitions whose answer never arrived. A semaphore's is registered under an orphan key (see
   * semaphore.ts): which permit it may have taken is unknown, so it is released by semaphore id and token.
   */
  private readonly orphans = new OrphanCleanup(async (lockId, ownerToken) => {
    const semaphoreId = semaphoreOfOrphanKey(lockId);
    if (semaphoreId !== null) return this.store.releasePermitOf(semaphoreId, ownerToken);
    return (await this.store.release({ lockId, ownerToken })) !== null;
  });
  private closed = false;
  private readonly host = hostname();
  /** History writes and prunes running in the background; close() waits for them. */
  private readonly historyWork = new Set<Promise<void>>();
  /** Monotonic ms of the last history prune (none yet: the first release prunes). */
  private lastHistoryPrune = -Infinity;

  constructor(readonly sequelize: Sequelize, options: DbMutexOptions = {}) {
    super();
    this.dialect = dialectFor(sequelize);
    this.options = resolveDbMutexOptions(options);
    this.models = defineModels(sequelize, this.options);
    this.runner = new StatementRunner(sequelize, this.dialect.driver, this.options.statementTimeoutMs, {
      preparedStatements: this.options.preparedStatements,
      onUnnamed: (error) => this.onUnnamedStatements(error),
    });
    // Only the bench sets a seam (src/internal/bench-seam.ts); the library always uses its runner as is.
    const seam = storeSeamOf(options);
    const storeSettings = { history: this.options.history, onHistoryOff: (error: unknown) => this.onHistoryOff(error) };
    this.store = this.dialect.store(this.options, seam?.sender ? seam.sender(this.runner) : this.runner, storeSettings, seam?.variant);
    this.operator = new LockOperator(this.store, (events) => this.releasedHere(events));
    this.heartbeat = new Heartbeat(this.store, (error, lockCount) => this.emit('renewalFailed', { error, lockCount }));
    this.listener =
      this.options.listen && this.dialect.notifies && this.dialect.channel && this.dialect.parseNotice
        ? new ReleaseListener(this.listenConnector(), this.dialect.channel(this.options), (payload) => this.dialect.parseNotice!(payload), {
            onNotice: (notice) => this.onNotice(notice),
            onError: (error) => this.emit('listenerError', { error }),
            // Notices may have been missed while disconnected: let every waiter try again now.
            onReady: (info) => {
              this.waiters.wakeAll();
              if (info.reconnected) this.emit('listenerReconnected');
            },
          }, this.dialect.waiterMarkSql?.(this.options) ?? null, this.options.listenIdleMs)
        : null;
  }

  /** The DbMutexLock model class bound to this instance. */
  get Lock() {
    return this.models.Lock;
  }

  /** Creates the tables, indexes and sequence exactly as the migrations do. Idempotent. */
  async sync(): Promise<void> {
    await this.models.Lock.sync();
    await this.models.Event.sync();
    await this.models.History.sync();
  }

  /**
   * Acquires `lockId`. Without `waitMs` it fails at once with DbMutexError when the lock is held;
   * with `waitMs` it waits up to that long (woken by release notifications where the database has
   * them, jittered polling otherwise).
   */
  async acquire(
    lockId: string,
    options: AcquireOptions = {},
    /** @internal Not public API: what the row is marked as (leader elections pass `election`). */
    internal: { kind?: 'lock' | 'election' } = {},
  ): Promise<DbMutexHeldLock> {
    validateLockId(lockId);
    const opts = resolveAcquireOptions(this.options, options);
    const kind = internal.kind ?? 'lock';
    if (kind !== 'lock' && kind !== 'election') throw new TypeError(`kind must be "lock" or "election", got ${String(kind)}`);
    // Observability: the attempt runs inside an OpenTelemetry span (a no-op check without an SDK) and
    // a failed one is reported as an event for metrics.
    return this.traced(lockId, opts, () => this.acquireResolved(lockId, opts, kind));
  }

  /** Runs an acquisition inside its span and reports a failed one as an `acquireFailed` event. */
  private async traced<L extends Lease>(id: string, opts: ResolvedAcquireOptions, attempt: () => Promise<L>): Promise<L> {
    const started = performance.now();
    try {
      return await traceAcquire('db-mutex', id, attempt, opts.signal);
    } catch (error) {
      const result = acquireFailureResult(error, opts.signal);
      this.emit('acquireFailed', { lockId: id, result, waitedMs: (error as { waitedMs?: number }).waitedMs ?? performance.now() - started, error });
      throw error;
    }
  }

  private async acquireResolved(lockId: string, opts: ResolvedAcquireOptions, kind: 'lock' | 'election'): Promise<Lease> {
    if (this.closed) throw new DbMutexError(lockId, { code: 'DB_MUTEX_CLOSED' });
    return this.acquireLoop<Lease, Refusal>(
      lockId,
      lockId,
      opts,
      (waitedMs) => this.tryAcquire(lockId, opts, waitedMs, kind),
      async (refusal, code, waitedMs) => new DbMutexError(lockId, { code, waitedMs, ...(await this.holderOf(lockId, refusal)) }),
    );
  }

  /**
   * Takes one of the `limit` permits of `semaphoreId` (the lowest free one). Without `waitMs` it fails
   * at once with DbMutexError `DB_MUTEX_SEMAPHORE_FULL` when all are held; with `waitMs` it waits up to
   * that long, as `acquire` does. Holders with another limit: `DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH`, at once.
   */
  async acquireSemaphore(semaphoreId: string, options: SemaphoreAcquireOptions): Promise<DbMutexSemaphorePermit> {
    const id = validateSemaphoreId(semaphoreId);
    validateOptionsObject(options);
    rejectUnknownOptions(options, SEMAPHORE_ACQUIRE_OPTION_KEYS, 'mutex.acquireSemaphore');
    const { limit: rawLimit, ...acquireOptions } = options;
    const limit = validateLimit(rawLimit);
    const opts = resolveAcquireOptions(this.options, acquireOptions, 'mutex.acquireSemaphore');
    return this.traced(id, opts, async () => {
      if (this.closed) throw new DbMutexError(id, { code: 'DB_MUTEX_CLOSED' });
      return this.acquireLoop<PermitLease, SemaphoreRefusal>(
        id,
        semaphoreWaitKey(id),
        opts,
        (waitedMs) => this.trySemaphore(id, limit, opts, waitedMs),
        async (refusal, code, waitedMs) =>
          new DbMutexError(id, {
            code: code === 'DB_MUTEX_HELD' ? 'DB_MUTEX_SEMAPHORE_FULL' : code,
            waitedMs,
            limit,
            used: refusal.used,
            ...(refusal.holder ? { holder: refusal.holder.holder, expiresAt: refusal.holder.expiresAt } : {}),
          }),
      );
    });
  }

  /**
   * Attempts until one wins, the wait runs out, or `attempt` throws. Without `waitMs`, one attempt.
   * `waitKey` is what release notices and local releases wake; `id` (the lock id or semaphore id,
   * as the database knows it) is what the waiter marks as awaited on PostgreSQL, since the release
   * checks the row's semaphore id (a permit) or lock id, never the process-internal wait key.
   */
  private async acquireLoop<L extends Lease, R>(
    id: string,
    waitKey: string,
    opts: ResolvedAcquireOptions,
    attempt: (waitedMs: number) => Promise<L | R>,
    refused: (refusal: R, code: 'DB_MUTEX_HELD' | 'DB_MUTEX_WAIT_TIMEOUT', waitedMs: number) => Promise<DbMutexError>,
  ): Promise<L> {
    if (opts.waitMs === 0) {
      const outcome = await attempt(0);
      if (outcome instanceof Lease) return outcome;
      throw await refused(outcome, 'DB_MUTEX_HELD', 0);
    }
    const started = performance.now();
    const deadline = started + opts.waitMs;
    // Registered before the first attempt, so a release between a refused attempt and the wait
    // still wakes us (the waiter remembers a notice that arrives while it is not sleeping).
    const waiter = this.waiters.add(waitKey);
    this.listener?.awaited(id);
    try {
      // The first attempt comes after LISTEN is active, so a release cannot fall between the two
      // unheard; a release while the listener reconnects later is caught by onReady's wake-up.
      await this.listenerNeeded();
      for (;;) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        if (this.closed) throw new DbMutexError(id, { code: 'DB_MUTEX_CLOSED', waitedMs: performance.now() - started });
        waiter.clearNotice();
        // A release notifies only ids (lock ids, semaphore ids) some process has marked as awaited.
        // Marked before this attempt: a release after the attempt notifies us. Not yet: mark after
        // the refusal, then try again at once, since a release between the refusal and the mark did
        // not notify.
        const markedBefore = this.listener?.isMarked(id) ?? false;
        const outcome = await attempt(performance.now() - started);
        if (outcome instanceof Lease) return outcome;
        const remaining = deadline - performance.now();
        if (remaining <= 0) throw await refused(outcome, 'DB_MUTEX_WAIT_TIMEOUT', performance.now() - started);
        if (!markedBefore && this.listener && this.listenerUsable) {
          const marked = await this.listener.mark(id);
          if (marked !== 'unavailable') continue;
        }
        // Jitter spreads pollers of many processes so they do not stampede the row together. A
        // notice ends the wait at once (no jitter on that path).
        const poll = this.options.pollIntervalMs * (0.5 + Math.random());
        await waiter.wait(Math.min(remaining, poll), opts.signal);
      }
    } finally {
      // The last waiter of this process for the id: releases of it need not notify us any more. A
      // lock and a semaphore of the same id share the mark (it is the id the database knows), so it
      // stays while the other kind still waits here.
      if (this.waiters.remove(waiter) && !this.waiters.has(id) && !this.waiters.has(semaphoreWaitKey(id))) this.listener?.idle(id);
      this.listenerMaybeIdle();
    }
  }

  /**
   * The holder that refused us, for DbMutexError: from the acquire statement's own answer where the
   * dialect returns it, else (SQLite, or a PostgreSQL holder that arrived after the statement's
   * snapshot) from one read, made only now that the refusal is final. Best effort: a failed read,
   * or a holder gone meanwhile, leaves the fields unset rather than hiding the refusal.
   */
  private async holderOf(lockId: string, refusal: Refusal): Promise<{ holder?: string; expiresAt?: Date | null }> {
    let current: CurrentHolder | null = refusal.holder;
    if (!current) {
      try {
        current = await this.store.inspect(lockId);
      } catch {
        current = null;
      }
    }
    return current ? { holder: current.holder, expiresAt: current.expiresAt } : {};
  }

  private async tryAcquire(lockId: string, opts: ResolvedAcquireOptions, waitedMs: number, kind: 'lock' | 'election'): Promise<Lease | Refusal> {
    const ownerToken = randomUUID();
    const sentAt = performance.now();
    let row;
    try {
      row = await this.store.acquire({
        lockId,
        ownerToken,
        holder: opts.holder,
        hostname: this.host,
        pid: process.pid,
        ttlSeconds: opts.ttlSeconds,
        leaseSeconds: opts.leaseSeconds,
        kind,
      });
    } catch (error) {
      // The statement may still commit even though we never saw the answer (timeout, dropped
      // connection): keep trying to remove our row, so it does not linger until its expiry.
      const lifetimeSeconds = Math.min(opts.leaseSeconds ?? Infinity, opts.ttlSeconds ?? Infinity);
      this.orphans.add(lockId, ownerToken, lifetimeSeconds * 1000);
      throw error;
    }
    if (!row.won) {
      this.emit('contended', { lockId });
      return { holder: row.holder };
    }
    const lease = new Lease({
      store: this.store,
      observer: this.leaseObserver,
      lockId,
      ownerToken,
      fencingToken: row.fencingToken,
      acquiredAt: row.acquiredAt,
      expiresAt: row.expiresAt,
      holder: opts.holder,
      ttlSeconds: opts.ttlSeconds,
      leaseSeconds: opts.leaseSeconds,
      sentAt,
    });
    return this.adopt(lease, waitedMs);
  }

  /** One semaphore attempt: a permit, or why not (a limit mismatch throws). */
  private async trySemaphore(semaphoreId: string, limit: number, opts: ResolvedAcquireOptions, waitedMs: number): Promise<PermitLease | SemaphoreRefusal> {
    // A permit taken by a lock of the same row key meanwhile (`raced`), or a deadlock victim on
    // MariaDB (the store's transaction was rolled back as a whole), is tried again at once, a few times.
    for (let retries = 0; ; retries++) {
      const p = {
        semaphoreId,
        limit,
        ownerToken: randomUUID(),
        holder: opts.holder,
        hostname: this.host,
        pid: process.pid,
        ttlSeconds: opts.ttlSeconds,
        leaseSeconds: opts.leaseSeconds,
      };
      const sentAt = performance.now();
      let result: SemaphoreAttempt;
      try {
        result = await this.store.acquireSemaphore(p);
      } catch (error) {
        if (retries < 3 && this.dialect.driver.isRetryable?.(error)) continue;
        // As for a lock: the statement may still commit although we never saw the answer.
        const lifetimeSeconds = Math.min(opts.leaseSeconds ?? Infinity, opts.ttlSeconds ?? Infinity);
        this.orphans.add(semaphoreOrphanKey(semaphoreId), p.ownerToken, lifetimeSeconds * 1000);
        throw error;
      }
      if (result.outcome === 'raced' && retries < 3) continue;
      if (result.outcome === 'mismatch') {
        throw new DbMutexError(semaphoreId, {
          code: 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH',
          waitedMs,
          limit: result.currentLimit,
          used: result.used,
          ...(result.holder ? { holder: result.holder.holder, expiresAt: result.holder.expiresAt } : {}),
        });
      }
      if (result.outcome !== 'won') {
        this.emit('contended', { lockId: semaphoreId });
        return result;
      }
      const lease = new PermitLease({
        store: this.store,
        observer: this.leaseObserver,
        semaphoreId,
        permit: result.permit,
        limit,
        lockId: result.lockId,
        ownerToken: p.ownerToken,
        fencingToken: result.fencingToken,
        acquiredAt: result.acquiredAt,
        expiresAt: result.expiresAt,
        holder: opts.holder,
        ttlSeconds: opts.ttlSeconds,
        leaseSeconds: opts.leaseSeconds,
        sentAt,
      });
      return this.adopt(lease, waitedMs);
    }
  }

  /** A won acquisition becomes a held lease: renewed, listened for, released by close(). */
  private async adopt<L extends Lease>(lease: L, waitedMs: number): Promise<L> {
    this.held.set(lease.ownerToken, lease);
    this.unsettled.add(lease);
    // In the background, so an operator's force-release reaches this holder at once.
    void this.listenerNeeded();
    if (this.closed) {
      // close() ran while this statement was in flight: do not leave the row behind.
      lease.markLost('closed');
      await lease.settle().catch(() => undefined);
      throw new DbMutexError(lease.lockId, { code: 'DB_MUTEX_CLOSED', waitedMs });
    }
    this.heartbeat.add(lease);
    this.emit('acquired', { lockId: lease.lockId, fencingToken: lease.fencingToken, holder: lease.holder, waitedMs });
    return lease;
  }

  /** Wakes the waiters of `lockId`, and of its semaphore when it is a permit's row key. */
  private wake(lockId: string): void {
    this.waiters.wake(lockId);
    const semaphoreId = semaphoreOfKey(lockId);
    if (semaphoreId !== null) this.waiters.wake(semaphoreWaitKey(semaphoreId));
  }

  /**
   * Leader election: returns at once a Leadership that campaigns for `electionId` in the background
   * (waiting for its lock) and calls `onElected(lock)` each time this process becomes leader. See
   * src/leadership.ts and the README's "Leader election".
   */
  lead(electionId: string, options: LeadOptions): Leadership {
    return new Leadership(this, electionId, options);
  }

  /** What this DbMutex does when one of its leases ends or settles (the leases' only way back here). */
  private readonly leaseObserver: LeaseObserver = {
    ended: (lease, lost) => {
      this.held.delete(lease.ownerToken);
      this.heartbeat.remove(lease);
      this.listenerMaybeIdle();
      if (lost) this.emit('lost', { lockId: lease.lockId, fencingToken: lease.fencingToken, reason: lost });
      // A loss is recorded by the holder that learned it (close() is not a loss: its release records the end).
      if (lost && lost !== 'closed' && this.options.history) this.inBackground(this.store.recordLoss(lease, LOSS_DETAIL[lost]));
    },
    settled: (lease, outcome) => {
      this.unsettled.delete(lease);
      if (outcome.status === 'failed') return;
      this.maybePruneHistory();
      // A waiter in this process need not wait for the notice's round trip.
      this.wake(lease.lockId);
      if (outcome.status === 'released') this.emit('released', { lockId: lease.lockId, fencingToken: lease.fencingToken, heldMs: outcome.heldMs });
    },
  };

  // ---- the LISTEN connection: open only while this process waits for or holds a lock ------------

  private listenConnector(): ListenConnector {
    const url = this.options.listenUrl;
    if (url === null) {
      return {
        open: async () => (await this.runner.openDedicated()) as PgNotifyingClient,
        close: (client) => this.runner.closeDedicated(client),
      };
    }
    // The driver module Sequelize loaded for this instance (so `pg` resolves as the host app's does).
    const lib = (this.sequelize as unknown as { connectionManager: { lib: { Client: new (config: object) => PgNotifyingClient & { connect(): Promise<void>; end(): Promise<void> } } } })
      .connectionManager.lib;
    return {
      open: async () => {
        const client = new lib.Client({ connectionString: url });
        try {
          await client.connect();
        } catch (error) {
          client.end().catch(() => undefined);
          throw error;
        }
        return client;
      },
      close: (client) => (client as unknown as { end(): Promise<void> }).end(),
    };
  }

  /**
   * Through a transaction-mode pooler (named statements off), LISTEN on a pooled connection is
   * accepted but registers on whichever server connection ran it, which is then handed to others:
   * notices would be lost or delivered elsewhere. Without `listenUrl`, poll instead.
   */
  private get listenerUsable(): boolean {
    return this.listener !== null && (this.runner.preparedStatements || this.options.listenUrl !== null);
  }

  /** This process waits for or holds a lock: the listener must be (or become) active. */
  private listenerNeeded(): Promise<void> | undefined {
    if (!this.listener) return;
    if (!this.listenerUsable) {
      this.say({
        feature: 'listen',
        code: 'DB_MUTEX_POLLING',
        message:
          'db-mutex: statements go unnamed (transaction-mode pooler), where LISTEN cannot work: waiters poll ' +
          `every ~${this.options.pollIntervalMs} ms and holders learn of a force-release at their next renewal. ` +
          'Set listenUrl to a direct connection string for prompt notices, or listen: false to silence this.',
      });
      return;
    }
    // The common case on the hot path (every acquisition): already listening, nothing to do. A
    // pending idle timer is left alone; it finds the listener in use when it fires.
    if (this.listener.ready) return;
    return this.listener.start();
  }

  /** Nobody may need the listener any more: close it after `listenIdleMs` unless someone does by then. */
  private listenerMaybeIdle(): void {
    if (!this.listener || this.closed || this.waiters.size > 0 || this.held.size > 0) return;
    this.listenIdleSince = performance.now();
    // One timer per idle period, not one per acquisition: a timer that fires early (the listener was
    // used, then idle again meanwhile) is armed again for the rest of the period.
    if (!this.listenIdleTimer) this.armListenIdleTimer(this.options.listenIdleMs);
  }

  private armListenIdleTimer(delayMs: number): void {
    this.listenIdleTimer = setTimeout(() => {
      this.listenIdleTimer = null;
      if (this.closed || this.waiters.size > 0 || this.held.size > 0) return;
      const idleMs = performance.now() - this.listenIdleSince;
      if (idleMs < this.options.listenIdleMs) this.armListenIdleTimer(this.options.listenIdleMs - idleMs);
      else void this.listener?.stop();
    }, delayMs);
    this.listenIdleTimer.unref();
  }

  private onUnnamedStatements(error: unknown): void {
    this.say({
      feature: 'preparedStatements',
      code: 'DB_MUTEX_UNNAMED_STATEMENTS',
      message:
        'db-mutex: a named prepared statement was missing on (or already on) the server connection, so a ' +
        'transaction-mode pooler is in between; lock statements now go unnamed. Set preparedStatements: false ' +
        '(and listenUrl) to say so up front.',
      cause: error,
    });
    // LISTEN through that pooler is not to be trusted: stop it now unless it has its own URL.
    if (this.listener && !this.listenerUsable) {
      void this.listener.stop();
      if (this.waiters.size > 0 || this.held.size > 0) void this.listenerNeeded();
    }
  }

  private say(event: DbMutexDegradedEvent): void {
    if (this.degradedSaid.has(event.feature)) return;
    this.degradedSaid.add(event.feature);
    if (this.listenerCount('degraded') > 0) this.emit('degraded', event);
    else process.emitWarning(event.message, { code: event.code });
  }

  private onNotice(notice: ReleaseNotice): void {
    const lease = this.held.get(notice.ownerToken);
    // Our own release removed the lease from `held` before its statement ran, so a notice for a
    // lease still held means someone else removed our row.
    if (lease && lease.lockId === notice.lockId) lease.markLost('released-by-other');
    this.wake(notice.lockId);
  }

  // ---- operator API (validated and run by src/operator.ts) ----------------------------------

  /** Active locks (held, or expired and not yet taken over), oldest first. */
  list(options: ListOptions = {}): Promise<LockRow[]> {
    return this.operator.list(options);
  }

  /** Counting semaphores with permit rows: one entry each, with `used / limit` and the holder of each permit. */
  semaphores(options: SemaphoresOptions = {}): Promise<SemaphoreEntry[]> {
    return this.operator.semaphores(options);
  }

  /** Number of active locks and how many of them are stale. */
  counts(filter: string | null = null): Promise<{ total: number; stale: number; active: number }> {
    return this.operator.counts(filter);
  }

  /** The current row of one lock, or null when nobody holds it. */
  inspect(lockId: string): Promise<LockRow | null> {
    return this.operator.inspect(lockId);
  }

  /**
   * Operator action: deletes the lock row (optionally only the exact acquisition named by its
   * fencing token) and records it in the audit table, atomically. The holder's signal aborts:
   * at once through the release notice where the database has one, else at its next renewal.
   */
  forceRelease(options: ForceReleaseOptions): Promise<ForceReleaseResult> {
    return this.operator.forceRelease(options);
  }

  /** Operator action: force-releases every stale lock (expired or heartbeat overdue), audited. */
  releaseStale(options: AuditOptions): Promise<EventRow[]> {
    return this.operator.releaseStale(options);
  }

  /** Deletes expired rows (nobody can be relying on them), audited as `purge-expired`. */
  purgeExpired(options: AuditOptions): Promise<EventRow[]> {
    return this.operator.purgeExpired(options);
  }

  /** The audit trail, newest first. */
  events(options: EventsOptions = {}): Promise<EventRow[]> {
    return this.operator.events(options);
  }

  /**
   * Operator action after a failover to a standby that may have missed the newest fencing tokens
   * (asynchronous replication): makes every token handed out from now on greater than `floor`, for
   * every lock id of this table. Pass the highest token the protected resources have seen (or any
   * bound above it). Never lowers the token source, so a floor below the current tokens, or the same
   * floor twice, changes nothing. Safe while acquisitions run; it holds them off for a moment.
   */
  advanceFencingTokens(floor: number): Promise<void> {
    return this.operator.advanceFencingTokens(floor);
  }

  /**
   * How the recent acquisitions of `lockId` ended (released, lost, force-released, expired), newest
   * first, with holder and hold time. See the README's "Lock history".
   */
  history(options: HistoryOptions): Promise<DbMutexHistoryEntry[]> {
    return this.operator.history(options);
  }

  /** Deletes history entries older than `olderThanDays` (default `historyRetentionDays`); how many. Pruning also runs by itself. */
  purgeHistory(options: PurgeHistoryOptions = {}): Promise<number> {
    return this.operator.purgeHistory(options, this.options.historyRetentionDays);
  }

  /** At most once per HISTORY_PRUNE_INTERVAL_MS, after a release: drop history past its retention. */
  private maybePruneHistory(): void {
    if (!this.options.history || this.closed) return;
    const now = performance.now();
    if (now - this.lastHistoryPrune < HISTORY_PRUNE_INTERVAL_MS) return;
    this.lastHistoryPrune = now;
    // A failed prune (the table missing, say) is tried again at the next interval.
    this.inBackground(this.store.purgeHistory(this.options.historyRetentionDays).then(() => undefined));
  }

  /** Background history work: never fails the caller, and close() waits for it. */
  private inBackground(work: Promise<void>): void {
    const tracked: Promise<void> = work.catch(() => undefined).finally(() => this.historyWork.delete(tracked));
    this.historyWork.add(tracked);
  }

  private onHistoryOff(error: unknown): void {
    this.say({
      feature: 'history',
      code: 'DB_MUTEX_NO_HISTORY',
      message:
        `db-mutex: the history table "${this.options.historyTableName}" does not exist, so lock history is off for this ` +
        'DbMutex (locks work as before). Run the history migration (sequelize-db-mutex/migration-history) or sync(), ' +
        'then restart; or set history: false to silence this.',
      cause: error,
    });
  }

  /** An operator release (here or through the operator module) ended these acquisitions. */
  private releasedHere(events: EventRow[]): void {
    // Holders in this very process learn it now, without waiting for a notice or a renewal.
    for (const event of events) {
      for (const lease of this.held.values()) {
        if (lease.lockId === event.lockId && lease.fencingToken === event.fencingToken) lease.markLost('released-by-other');
      }
      this.wake(event.lockId);
      this.emit('forceReleased', { lockId: event.lockId, fencingToken: event.fencingToken, action: event.action, operator: event.operator });
    }
  }

  /** The locks this process holds through this DbMutex right now. */
  heldLocks(): DbMutexHeldLock[] {
    // A lease that is being lost is still in `held` while its signal's listeners run.
    return [...this.held.values()].filter((lease) => lease.isHeld());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Stops the heartbeat and the listener, fails waiters with DB_MUTEX_CLOSED, and releases every lock
   * this process holds (their signals abort with reason `closed`). Nothing of this DbMutex keeps the
   * event loop alive afterwards. Does not close the Sequelize instance.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.heartbeat.stop();
    if (this.listenIdleTimer) clearTimeout(this.listenIdleTimer);
    this.listenIdleTimer = null;
    this.waiters.closeAll();
    // Lost leases whose sections still run are included: their rows may still be ours to delete.
    const leases = [...this.unsettled];
    for (const lease of leases) lease.markLost('closed');
    await Promise.all(leases.map((lease) => lease.settle().catch(() => undefined)));
    await this.orphans.flush();
    await Promise.all([...this.historyWork]);
    await this.listener?.close();
  }
}
