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
import { parseSemaphoreState } from './dialects/rows';
import type { CurrentHolder, Dialect, DialectStatements, EventRow, LockRow, ReleaseNotice, SemaphoreAttempt, Statement } from './dialects/types';
import { DbMutexError, type DbMutexLostReason } from './errors';
import { DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT, MAX_LIST_LIMIT, MAX_REASON_LENGTH } from './limits';
import { Lease, type DbMutexHeldLock, type LeaseOwner } from './lease';
import { ReleaseListener, type ListenConnector, type PgNotifyingClient } from './listener';
import { OrphanCleanup } from './orphan-cleanup';
import {
  resolveAcquireOptions,
  resolveDbMutexOptions,
  validateHolder,
  validateLockId,
  optionKeys,
  rejectUnknownOptions,
  ACQUIRE_OPTION_KEYS,
  validateOptionsObject,
  type AcquireOptions,
  type DbMutexOptions,
  type ResolvedAcquireOptions,
  type ResolvedDbMutexOptions,
} from './options';
import { defineModels, type DefinedModels } from './schema';
import {
  PermitLease,
  semaphoreOfKey,
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
   * `listen` when release notices fall back to polling (unnamed statements without `listenUrl`).
   * Without a listener for this event, it becomes a process warning (`process.emitWarning`).
   */
  degraded: [DbMutexDegradedEvent];
}

export interface DbMutexDegradedEvent {
  feature: 'preparedStatements' | 'listen';
  /** Stable code, also the process warning's code. */
  code: 'DB_MUTEX_UNNAMED_STATEMENTS' | 'DB_MUTEX_POLLING';
  message: string;
  /** The error that showed it, when an error did. */
  cause?: unknown;
}

export interface ListOptions {
  /** Only lock ids containing this text (plain substring, case-sensitive). */
  filter?: string | null;
  /** Only expired locks and locks whose heartbeat is overdue. */
  staleOnly?: boolean;
  /** At most this many rows; default: all. */
  limit?: number | null;
  /** Keyset cursor: the last row of the previous page. */
  after?: { acquiredAt: Date; lockId: string } | null;
}

export interface ForceReleaseOptions {
  lockId: string;
  /** Release only this exact acquisition; a re-acquired lock is left alone. */
  fencingToken?: number | null;
  /** Who did it, for the audit trail. */
  operator: string;
  reason?: string | null;
}

const SEMAPHORE_ACQUIRE_OPTION_KEYS = [...ACQUIRE_OPTION_KEYS, 'limit'];

const LIST_OPTION_KEYS = optionKeys<ListOptions>({ filter: true, staleOnly: true, limit: true, after: true });
const FORCE_RELEASE_OPTION_KEYS = optionKeys<ForceReleaseOptions>({
  lockId: true,
  fencingToken: true,
  operator: true,
  reason: true,
});

/** Options of `releaseStale` and `purgeExpired`. */
export interface AuditOptions {
  /** Who did it, for the audit trail. */
  operator: string;
  reason?: string | null;
}
const AUDIT_OPTION_KEYS = optionKeys<AuditOptions>({ operator: true, reason: true });

/** Options of `events`. */
export interface EventsOptions {
  /** At most this many entries, newest first; default 50, at most 100000. */
  limit?: number;
  /** Only this lock id's entries. */
  lockId?: string | null;
}
const EVENTS_OPTION_KEYS = optionKeys<EventsOptions>({ limit: true, lockId: true });

export type ForceReleaseResult =
  | { status: 'released'; event: EventRow }
  | { status: 'not-found' }
  | { status: 'token-mismatch'; currentFencingToken: number };

type SemaphoreRefusal = Exclude<SemaphoreAttempt, { outcome: 'won' }>;

/** A refused attempt, with the holder when the acquire statement reported it. */
interface Refusal {
  holder: CurrentHolder | null;
}


export class DbMutex extends EventEmitter<DbMutexEvents> implements LeaseOwner {
  readonly options: ResolvedDbMutexOptions;
  readonly models: DefinedModels;
  readonly dialect: Dialect;
  private readonly sql: DialectStatements;
  private readonly runner: StatementRunner;
  private listener: ReleaseListener | null;
  private listenIdleTimer: NodeJS.Timeout | null = null;
  private readonly degradedSaid = new Set<DbMutexDegradedEvent['feature']>();
  private readonly waiters = new WaitQueue();
  /** Leases being renewed (held), by owner token. */
  private readonly held = new Map<string, Lease>();
  /** Leases not yet settled: held, or lost while their critical section still runs. close() releases these. */
  private readonly unsettled = new Set<Lease>();
  private readonly orphans = new OrphanCleanup(async (lockId, ownerToken) => {
    const rows = await this.runner.run(this.sql.release(lockId, ownerToken));
    return this.sql.parseRelease(rows) !== null;
  });
  private tickTimer: NodeJS.Timeout | null = null;
  private tickDueAt = Infinity;
  private renewing = false;
  private closed = false;
  private readonly host = hostname();

  constructor(readonly sequelize: Sequelize, options: DbMutexOptions = {}) {
    super();
    this.dialect = dialectFor(sequelize);
    this.options = resolveDbMutexOptions(options);
    this.models = defineModels(sequelize, this.options);
    this.sql = this.dialect.statements(this.options);
    this.runner = new StatementRunner(sequelize, this.dialect.driver, this.options.statementTimeoutMs, {
      preparedStatements: this.options.preparedStatements,
      onUnnamed: (error) => this.onUnnamedStatements(error),
    });
    this.listener =
      this.options.listen && this.dialect.notifies && this.dialect.channel && this.dialect.parseNotice
        ? new ReleaseListener(this.listenConnector(), this.dialect.channel(this.options), (payload) => this.dialect.parseNotice!(payload), {
            onNotice: (notice) => this.onNotice(notice),
            onError: (error) => this.emit('listenerError', { error }),
            // Notices may have been missed while disconnected: let every waiter try again now.
            onReady: () => this.waiters.wakeAll(),
          })
        : null;
  }

  /** The DbMutexLock model class bound to this instance. */
  get Lock() {
    return this.models.Lock;
  }

  /** Creates the tables, indexes and sequence exactly as the migration does. Idempotent. */
  async sync(): Promise<void> {
    await this.models.Lock.sync();
    await this.models.Event.sync();
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
  }

  /**
   * Attempts until one wins, the wait runs out, or `attempt` throws. Without `waitMs`, one attempt.
   * `waitKey` is what release notices and local releases wake.
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
    try {
      // The first attempt comes after LISTEN is active, so a release cannot fall between the two
      // unheard; a release while the listener reconnects later is caught by onReady's wake-up.
      await this.listenerNeeded();
      for (;;) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        if (this.closed) throw new DbMutexError(id, { code: 'DB_MUTEX_CLOSED', waitedMs: performance.now() - started });
        waiter.clearNotice();
        const outcome = await attempt(performance.now() - started);
        if (outcome instanceof Lease) return outcome;
        const remaining = deadline - performance.now();
        if (remaining <= 0) throw await refused(outcome, 'DB_MUTEX_WAIT_TIMEOUT', performance.now() - started);
        // Jitter spreads pollers of many processes so they do not stampede the row together.
        const poll = this.options.pollIntervalMs * (0.5 + Math.random());
        await waiter.wait(Math.min(remaining, poll), opts.signal);
      }
    } finally {
      this.waiters.remove(waiter);
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
        current = await this.inspect(lockId);
      } catch {
        current = null;
      }
    }
    return current ? { holder: current.holder, expiresAt: current.expiresAt } : {};
  }

  private async tryAcquire(lockId: string, opts: ResolvedAcquireOptions, waitedMs: number, kind: 'lock' | 'election'): Promise<Lease | Refusal> {
    const ownerToken = randomUUID();
    const sentAt = performance.now();
    let rows;
    try {
      rows = await this.runner.run(
        this.sql.acquire({
          lockId,
          ownerToken,
          holder: opts.holder,
          hostname: this.host,
          pid: process.pid,
          ttlSeconds: opts.ttlSeconds,
          leaseSeconds: opts.leaseSeconds,
          kind,
        }),
      );
    } catch (error) {
      // The statement may still commit even though we never saw the answer (timeout, dropped
      // connection): keep trying to remove our row, so it does not linger until its expiry.
      const lifetimeSeconds = Math.min(opts.leaseSeconds ?? Infinity, opts.ttlSeconds ?? Infinity);
      this.orphans.add(lockId, ownerToken, lifetimeSeconds * 1000);
      throw error;
    }
    const row = this.sql.parseAcquire(rows);
    if (!row) {
      this.emit('contended', { lockId });
      return { holder: this.sql.parseRefused(rows) };
    }
    const lease = new Lease(
      this,
      lockId,
      ownerToken,
      row.fencingToken,
      row.acquiredAt,
      row.expiresAt,
      opts.holder,
      opts.ttlSeconds,
      opts.leaseSeconds,
      sentAt,
    );
    return this.adopt(lease, waitedMs);
  }

  /** One semaphore attempt: a permit, or why not (a limit mismatch throws). */
  private async trySemaphore(
    semaphoreId: string,
    limit: number,
    opts: ResolvedAcquireOptions,
    waitedMs: number,
  ): Promise<PermitLease | SemaphoreRefusal> {
    // A permit taken by a lock of the same row key meanwhile (`raced`), or a deadlock victim on
    // MariaDB (the transaction was rolled back as a whole), is tried again at once, a few times.
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
        const statements = this.sql.semaphoreAcquire(p);
        const rows =
          statements.length === 1 ? await this.runner.run(statements[0]!) : ((await this.transaction(statements)).at(-1) ?? []);
        result =
          this.sql.parseSemaphoreAcquire(rows, p) ??
          parseSemaphoreState(await this.runner.run(this.sql.semaphoreState(semaphoreId)), p);
      } catch (error) {
        if (retries < 3 && this.dialect.driver.isRetryable?.(error)) continue;
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
      const lease = new PermitLease(
        this,
        semaphoreId,
        result.permit,
        limit,
        result.lockId,
        p.ownerToken,
        result.fencingToken,
        result.acquiredAt,
        result.expiresAt,
        opts.holder,
        opts.ttlSeconds,
        opts.leaseSeconds,
        sentAt,
      );
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
    if (lease.heartbeat) this.scheduleTick(lease.leaseSeconds! * 1000 / 3);
    this.emit('acquired', { lockId: lease.lockId, fencingToken: lease.fencingToken, holder: lease.holder, waitedMs });
    return lease;
  }

  /** Wakes the waiters of `lockId`, and of its semaphore when it is a permit's row key. */
  private wake(lockId: string): void {
    this.waiters.wake(lockId);
    const semaphoreId = semaphoreOfKey(lockId);
    if (semaphoreId !== null) this.waiters.wake(semaphoreWaitKey(semaphoreId));
  }

  // ---- LeaseOwner -------------------------------------------------------------------------

  /** @internal */
  async releaseLease(lease: Lease): Promise<{ expired: boolean } | null> {
    const started = performance.now();
    const rows = await this.runner.run(this.sql.release(lease.lockId, lease.ownerToken));
    const outcome = this.sql.parseRelease(rows);
    // A waiter in this process need not wait for the notice's round trip.
    this.wake(lease.lockId);
    if (outcome && !outcome.expired) {
      this.emit('released', { lockId: lease.lockId, fencingToken: lease.fencingToken, heldMs: started - lease.startedAt });
    }
    return outcome;
  }

  /** @internal */
  async extendLease(lease: Lease, seconds: number | null) {
    const rows = await this.runner.run(this.sql.extend(lease.lockId, lease.ownerToken, seconds));
    const extended = this.sql.parseExtend(rows);
    if (extended) return { expiresAt: extended.expiresAt };
    return (await this.classify([lease])).has(lease.ownerToken) ? ('expired' as const) : ('released-by-other' as const);
  }

  /** @internal */
  forget(lease: Lease): void {
    this.held.delete(lease.ownerToken);
    this.listenerMaybeIdle();
  }

  /** @internal */
  settled(lease: Lease): void {
    this.unsettled.delete(lease);
  }

  /** @internal */
  onLost(lease: Lease, reason: DbMutexLostReason): void {
    this.emit('lost', { lockId: lease.lockId, fencingToken: lease.fencingToken, reason });
  }

  // ---- heartbeat -------------------------------------------------------------------------

  private scheduleTick(periodMs: number): void {
    if (this.closed) return;
    const due = performance.now() + periodMs;
    if (this.tickTimer && due >= this.tickDueAt) return;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.tickDueAt = due;
    // Node fires timers longer than 2^31-1 ms at once; a longer period is simply re-armed then.
    this.tickTimer = setTimeout(() => void this.tick(), Math.min(periodMs, 2_147_483_647));
    // A held lock alone does not keep the process alive; the critical section's own work does.
    this.tickTimer.unref();
  }

  /** One statement renews every heartbeat lock this DbMutex holds. */
  private async tick(): Promise<void> {
    this.tickTimer = null;
    this.tickDueAt = Infinity;
    if (this.renewing || this.closed) return;
    const leases = [...this.held.values()].filter((l) => l.heartbeat);
    if (leases.length === 0) return;
    const periodMs = Math.min(...leases.map((l) => l.leaseSeconds!)) * 1000 / 3;
    this.renewing = true;
    const sentAt = performance.now();
    try {
      const rows = await this.runner.run(this.sql.renew(leases.map((l) => l.lockId), leases.map((l) => l.ownerToken)));
      const renewed = this.sql.parseRenew(rows);
      const missing: Lease[] = [];
      for (const lease of leases) {
        if (renewed.has(lease.ownerToken)) lease.renewed(sentAt);
        else if (lease.isHeld()) missing.push(lease);
      }
      if (missing.length > 0) {
        const expired = await this.classify(missing);
        for (const lease of missing) lease.markLost(expired.has(lease.ownerToken) ? 'expired' : 'released-by-other');
      }
      this.renewing = false;
      this.scheduleTick(periodMs);
    } catch (error) {
      for (const lease of leases) lease.renewalFailing = true;
      this.renewing = false;
      this.emit('renewalFailed', { error, lockCount: leases.length });
      // Retry sooner than a full period: the lease keeps running out meanwhile.
      this.scheduleTick(Math.min(periodMs, 1000));
    }
  }

  private async classify(leases: Lease[]): Promise<Set<string>> {
    const rows = await this.runner.run(this.sql.classify(leases.map((l) => l.lockId), leases.map((l) => l.ownerToken)));
    return this.sql.parseClassify(rows);
  }

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
  private async listenerNeeded(): Promise<void> {
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
    if (this.listenIdleTimer) clearTimeout(this.listenIdleTimer);
    this.listenIdleTimer = null;
    await this.listener.start();
  }

  /** Nobody may need the listener any more: close it after `listenIdleMs` unless someone does by then. */
  private listenerMaybeIdle(): void {
    if (!this.listener || this.closed || this.waiters.size > 0 || this.held.size > 0 || this.listenIdleTimer) return;
    this.listenIdleTimer = setTimeout(() => {
      this.listenIdleTimer = null;
      if (this.waiters.size === 0 && this.held.size === 0) void this.listener?.stop();
    }, this.options.listenIdleMs);
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

  // ---- operator API ------------------------------------------------------------------------

  /** Active locks (held, or expired and not yet taken over), oldest first. */
  async list(options: ListOptions = {}): Promise<LockRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, LIST_OPTION_KEYS, 'mutex.list');
    const limit = options.limit ?? null;
    if (limit !== null && (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT)) {
      throw new RangeError(`limit must be a positive integer, got ${String(limit)}`);
    }
    const filter = options.filter ?? null;
    if (filter !== null && typeof filter !== 'string') throw new TypeError('filter must be a string');
    if (filter !== null && (filter.includes('\0') || !filter.isWellFormed())) {
      throw new TypeError('filter must be well-formed text without NUL characters');
    }
    const after = options.after ?? null;
    if (after !== null) {
      if (!(after.acquiredAt instanceof Date) || Number.isNaN(after.acquiredAt.getTime())) {
        throw new TypeError('after.acquiredAt must be a valid Date');
      }
      validateLockId(after.lockId, 'after.lockId');
    }
    const rows = await this.runner.run(
      this.sql.list({ filter: filter === '' ? null : filter, staleOnly: options.staleOnly === true, limit: limit ?? MAX_LIST_LIMIT, after }),
    );
    return this.sql.parseLocks(rows);
  }

  /** Number of active locks and how many of them are stale. */
  async counts(filter: string | null = null): Promise<{ total: number; stale: number; active: number }> {
    if (filter !== null && (typeof filter !== 'string' || filter.includes('\0') || !filter.isWellFormed())) {
      throw new TypeError('filter must be well-formed text without NUL characters');
    }
    const c = this.sql.parseCounts(await this.runner.run(this.sql.counts(filter === '' ? null : filter)));
    return { ...c, active: c.total - c.stale };
  }

  /** The current row of one lock, or null when nobody holds it. */
  async inspect(lockId: string): Promise<LockRow | null> {
    validateLockId(lockId);
    return this.sql.parseLocks(await this.runner.run(this.sql.inspect(lockId)))[0] ?? null;
  }

  /**
   * Operator action: deletes the lock row (optionally only the exact acquisition named by its
   * fencing token) and records it in the audit table, atomically. The holder's signal aborts:
   * at once through the release notice where the database has one, else at its next renewal.
   */
  async forceRelease(options: ForceReleaseOptions): Promise<ForceReleaseResult> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, FORCE_RELEASE_OPTION_KEYS, 'mutex.forceRelease');
    const lockId = validateLockId(options.lockId);
    const fencingToken = validateFencingToken(options.fencingToken ?? null);
    const operator = validateHolder(options.operator, 'operator');
    const reason = validateReason(options.reason ?? null);
    const events = await this.releaseAudited(
      this.sql.releaseAudited({ kind: 'one', lockId, fencingToken }, 'force-release', operator, reason),
    );
    const event = events[0];
    if (event) return { status: 'released', event };
    const current = await this.inspect(lockId);
    if (!current) return { status: 'not-found' };
    return { status: 'token-mismatch', currentFencingToken: current.fencingToken };
  }

  /** Operator action: force-releases every stale lock (expired or heartbeat overdue), audited. */
  async releaseStale(options: AuditOptions): Promise<EventRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, AUDIT_OPTION_KEYS, 'mutex.releaseStale');
    const operator = validateHolder(options.operator, 'operator');
    const reason = validateReason(options.reason ?? null);
    return this.releaseAudited(this.sql.releaseAudited({ kind: 'stale' }, 'release-stale', operator, reason));
  }

  /** Deletes expired rows (nobody can be relying on them), audited as `purge-expired`. */
  async purgeExpired(options: AuditOptions): Promise<EventRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, AUDIT_OPTION_KEYS, 'mutex.purgeExpired');
    const operator = validateHolder(options.operator, 'operator');
    const reason = validateReason(options.reason ?? null);
    return this.releaseAudited(this.sql.releaseAudited({ kind: 'expired' }, 'purge-expired', operator, reason));
  }

  /** The audit trail, newest first. */
  async events(options: EventsOptions = {}): Promise<EventRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, EVENTS_OPTION_KEYS, 'mutex.events');
    const limit = options.limit ?? DEFAULT_EVENTS_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_EVENTS_LIMIT) {
      throw new RangeError(`limit must be an integer between 1 and ${MAX_EVENTS_LIMIT}, got ${String(limit)}`);
    }
    const lockId = options.lockId == null ? null : validateLockId(options.lockId);
    return this.sql.parseEvents(await this.runner.run(this.sql.events(limit, lockId)));
  }

  /**
   * Operator action after a failover to a standby that may have missed the newest fencing tokens
   * (asynchronous replication): makes every token handed out from now on greater than `floor`, for
   * every lock id of this table. Pass the highest token the protected resources have seen (or any
   * bound above it). Never lowers the token source, so a floor below the current tokens, or the same
   * floor twice, changes nothing. Safe while acquisitions run; it holds them off for a moment.
   */
  async advanceFencingTokens(floor: number): Promise<void> {
    if (typeof floor !== 'number' || !Number.isSafeInteger(floor) || floor < 0) {
      throw new RangeError(`floor must be a non-negative safe integer, got ${typeof floor === 'number' ? floor : typeof floor}`);
    }
    await this.transaction(this.sql.fencingFloor(floor));
  }

  private transaction(statements: Statement[]) {
    const [begin, commit, rollback] = ['BEGIN', 'COMMIT', 'ROLLBACK'].map((text) => ({ name: '', text, values: [] }));
    return this.runner.runInTransaction(statements, begin!, commit!, rollback!);
  }

  private async releaseAudited(statements: Statement[]): Promise<EventRow[]> {
    const results = await this.transaction(statements);
    const events = this.sql.parseReleased(results[results.length - 1] ?? []);
    // Holders in this very process learn it now, without waiting for a notice or a renewal.
    for (const event of events) {
      for (const lease of this.held.values()) {
        if (lease.lockId === event.lockId && lease.fencingToken === event.fencingToken) lease.markLost('released-by-other');
      }
      this.wake(event.lockId);
    }
    return events;
  }

  /** The locks this process holds through this DbMutex right now. */
  heldLocks(): DbMutexHeldLock[] {
    return [...this.held.values()];
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
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.tickTimer = null;
    if (this.listenIdleTimer) clearTimeout(this.listenIdleTimer);
    this.listenIdleTimer = null;
    this.waiters.closeAll();
    // Lost leases whose sections still run are included: their rows may still be ours to delete.
    const leases = [...this.unsettled];
    for (const lease of leases) lease.markLost('closed');
    await Promise.all(leases.map((lease) => lease.settle().catch(() => undefined)));
    await this.orphans.flush();
    await this.listener?.close();
    this.emitClose();
  }

  private emitClose(): void {
    closeHooks.forEach((hook) => hook(this));
  }
}

/** Lets the default-instance registry forget a closed DbMutex without a circular import. */
export const closeHooks = new Set<(mutex: DbMutex) => void>();

function validateFencingToken(value: unknown): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`fencingToken must be a positive integer, got ${typeof value === 'number' ? value : typeof value}`);
  }
  return value;
}

function validateReason(value: unknown): string | null {
  if (value === null || value === '') return null;
  if (typeof value !== 'string') throw new TypeError('reason must be a string');
  if (value.includes('\0') || !value.isWellFormed()) throw new TypeError('reason must be well-formed text without NUL characters');
  if ([...value].length > MAX_REASON_LENGTH) throw new RangeError(`reason must be at most ${MAX_REASON_LENGTH} characters`);
  return value;
}

