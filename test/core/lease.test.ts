import { hostname } from 'node:os';
import type { DbMutex, DbMutexHeldLock } from '../../src';
import { DbMutexError, DbMutexLostError, DbMutexTimeoutError, withDbMutex } from '../../src';
import { dialect, itIf, notifies, pooler, TestContext } from '../helpers/db';
import { connectionTag, serverConnections } from '../helpers/server-connections';
import { sleep } from '../helpers/wait';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'lease-test' }, connectionTag('lease-test', dialect));
  rival = await ctx.mutex({ holder: 'rival' });
});
afterAll(() => ctx.cleanup());


/**
 * Polls `probe` until it returns something other than null/false; fails after `withinMs`, which is a
 * hang guard far beyond the expected time, not a claim about speed.
 */
async function until<T>(probe: () => Promise<T | null | false> | T | null | false, withinMs: number, what: string): Promise<T> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await sleep(25);
  }
}

/** Resolves once `m` has been refused `lockId` `times` times (a waiter that tried and now waits). */
function refusals(m: DbMutex, lockId: string, times = 1): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const onContended = (e: { lockId: string }) => {
      if (e.lockId !== lockId || ++seen < times) return;
      m.off('contended', onContended);
      resolve();
    };
    m.on('contended', onContended);
  });
}

/** A rival's attempt: refused (false) or, unexpectedly, granted (the lock, released at once); other errors throw. */
async function rivalGets(lockId: string): Promise<boolean> {
  try {
    await (await rival.acquire(lockId)).release();
    return true;
  } catch (error) {
    if (error instanceof DbMutexError && error.code === 'DB_MUTEX_HELD') return false;
    throw error;
  }
}

/** Sequelize `logging` that records the names of the lock statements (e.g. `dbm_db_mutex_locks_renew`). */
function statementNames(into: string[]) {
  return (_sql: string, options?: unknown) => {
    const name = (options as { dbMutex?: boolean; name?: string } | undefined)?.name;
    if ((options as { dbMutex?: boolean } | undefined)?.dbMutex && name) into.push(name);
  };
}
const renewals = (names: string[]) => names.filter((n) => n.endsWith('_renew'));

/** Resolves when the signal aborts; rejects if it has not within `withinMs` (a correctness bound, not a benchmark). */
function aborted(signal: AbortSignal, withinMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve(signal.reason);
    const timer = setTimeout(() => reject(new Error(`signal did not abort within ${withinMs} ms`)), withinMs);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    });
  });
}

describe('heartbeat lease', () => {
  it('keeps the lock through a job three leases long (by the database clock) and completes without error', async () => {
    const leaseSeconds = 2;
    let attempts = 0;
    let granted = 0;
    const result = await withDbMutex('long-job', async (lock) => {
      // Three leases measured on the database clock, so a slow machine makes the job longer, not shorter.
      while ((await ctx.sql.dbNowMs()) < lock.acquiredAt.getTime() + 3 * leaseSeconds * 1000) {
        await sleep(250);
        attempts++;
        if (await rivalGets('long-job')) granted++;
      }
      expect(lock.signal.aborted).toBe(false);
      // Renewed through it all: the last heartbeat is more than two leases after the acquisition.
      const row = (await rival.inspect('long-job'))!;
      expect(row.fencingToken).toBe(lock.fencingToken);
      expect(row.heartbeatAt.getTime()).toBeGreaterThan(lock.acquiredAt.getTime() + 2 * leaseSeconds * 1000);
      return 'finished';
    }, { mutex, leaseSeconds });
    expect(result).toBe('finished');
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(granted).toBe(0);
  });

  it('stores the last heartbeat and the holder identity on the row', async () => {
    const lock = await mutex.acquire('identity', { leaseSeconds: 0.6 });
    const first = (await mutex.inspect('identity'))!;
    const later = await until(async () => {
      const row = (await mutex.inspect('identity'))!;
      return row.heartbeatAt.getTime() > first.heartbeatAt.getTime() ? row : null;
    }, 20_000, 'no renewal stored on the row');
    expect(later).toMatchObject({ hostname: hostname(), pid: process.pid, holder: 'lease-test', leaseSeconds: 0.6, stale: false });
    await lock.release();
  });

  it('aborts the signal at the first renewal after an operator deletes the row (within one renewal period), and withDbMutex reports the reason', async () => {
    const names: string[] = [];
    const watched = await ctx.mutex({ holder: 'lease-test' }, { logging: statementNames(names) });
    let after: string[] = [];
    let reason: unknown;
    const error = await withDbMutex('deleted', async (lock) => {
      await ctx.sql.deleteLock('deleted');
      const mark = names.length;
      // Nothing but a renewal can tell it (a DELETE behind the library's back sends no notice).
      reason = await aborted(lock.signal, 30_000);
      after = names.slice(mark);
      return 'stopped early';
    }, { mutex: watched, leaseSeconds: 1.5 }).catch((e: unknown) => e);
    expect(reason).toBeInstanceOf(DbMutexLostError);
    // Counted in renewal statements, not milliseconds: the abort came with the first renewal that ran
    // after the deletion (one more may have been on its way when the row was deleted), followed by
    // the read that tells "released by someone else" from "expired".
    expect(renewals(after).length).toBeGreaterThanOrEqual(1);
    expect(renewals(after).length).toBeLessThanOrEqual(2);
    expect(after.slice(-2)).toEqual([expect.stringMatching(/_renew$/), expect.stringMatching(/_classify$/)]);
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect((error as DbMutexTimeoutError).reason).toBe('released-by-other');
    expect((error as DbMutexTimeoutError).result).toBe('stopped early');
  });

  itIf(notifies)('aborts the holder at once when another process force-releases it (release notice, not the next renewal)', async () => {
    const lock = await mutex.acquire('forced', { leaseSeconds: 60 });
    // The listener connects in the background after an acquisition: wait until the server has it.
    await until(async () => (await serverConnections(ctx, 'lease-test')).listening === 1, 20_000, 'no LISTEN connection of the holder');
    const outcome = await rival.forceRelease({ lockId: 'forced', fencingToken: lock.fencingToken, operator: 'ops', reason: 'stuck' });
    expect(outcome.status).toBe('released');
    // The next renewal is 20 s away, so only the notice can abort it this soon.
    await aborted(lock.signal, 3000);
    await expect(lock.release()).rejects.toMatchObject({ reason: 'released-by-other' });
  });

  itIf(!notifies)('aborts the holder at its next renewal when another process force-releases it (no release notices here)', async () => {
    const lock = await mutex.acquire('forced-polled', { leaseSeconds: 1.5 });
    const outcome = await rival.forceRelease({ lockId: 'forced-polled', fencingToken: lock.fencingToken, operator: 'ops', reason: 'stuck' });
    expect(outcome.status).toBe('released');
    // Renewals run every 0.5 s; the first one after the release finds the row gone. (The bound is a
    // hang guard; the renewal count is checked by the operator-deletion test above.)
    const reason = (await aborted(lock.signal, 30_000)) as DbMutexLostError;
    expect(reason.reason).toBe('released-by-other');
    await expect(lock.release()).rejects.toMatchObject({ reason: 'released-by-other' });
  });

  it('loses the lock at the TTL even while the heartbeat runs', async () => {
    const error = await withDbMutex('capped', async (lock) => {
      const reason = (await aborted(lock.signal, 30_000)) as DbMutexLostError;
      expect(reason.reason).toBe('expired');
      return 'ran past the cap';
    }, { mutex, ttlSeconds: 1.5, leaseSeconds: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect((error as DbMutexTimeoutError).reason).toBe('expired');
  });

  it('restores the original behaviour with heartbeat: false (one expiry at the TTL, no renewals)', async () => {
    const names: string[] = [];
    const quiet = await ctx.mutex({}, { logging: statementNames(names) });
    const lock = await quiet.acquire('no-heartbeat', { heartbeat: false, ttlSeconds: 30, leaseSeconds: 0.3 });
    await sleep(700);
    expect(names).toEqual([expect.stringMatching(/_acquire$/)]);
    expect(renewals(names)).toHaveLength(0);
    const row = (await quiet.inspect('no-heartbeat'))!;
    expect(row.leaseSeconds).toBeNull();
    expect(row.expiresAt!.getTime() - row.acquiredAt.getTime()).toBe(30_000);
    await lock.release();
  });

  it('renews 500 held locks with one statement per renewal period', async () => {
    const names: string[] = [];
    const many = await ctx.mutex({}, { logging: statementNames(names) });
    const locks: DbMutexHeldLock[] = [];
    // A 3 s lease (renewed every second) leaves the 500 releases at the end time to run even on a
    // busy machine; with a shorter one, the last rows may expire while they wait their turn.
    const leaseSeconds = 3;
    for (let i = 0; i < 500; i++) locks.push(await many.acquire(`batch-${i}`, { leaseSeconds }));
    const windowStart = await ctx.sql.dbNowMs();
    names.length = 0;
    await until(() => renewals(names).length >= 3, 60_000, 'three renewals');
    const windowMs = (await ctx.sql.dbNowMs()) - windowStart;
    // Renewals never come more often than one per period, whatever the number of locks (a slow
    // machine only spaces them further apart): over the window, measured by the database clock...
    expect(renewals(names).length).toBeLessThanOrEqual(Math.floor(windowMs / ((leaseSeconds * 1000) / 3)) + 1);
    // ...and nothing but renewals: no per-lock statements, no follow-up reads.
    expect(names).toEqual(renewals(names));
    expect(locks.every((l) => l.isHeld())).toBe(true);
    // One statement renewed them all: every row carries the same heartbeat instant, the database's
    // now() of that statement, after the acquisitions.
    const rows = await many.list({ filter: 'batch-' });
    expect(rows).toHaveLength(500);
    expect(new Set(rows.map((r) => r.heartbeatAt.getTime())).size).toBe(1);
    expect(rows.every((r) => r.heartbeatAt.getTime() > r.acquiredAt.getTime())).toBe(true);
    await Promise.all(locks.map((l) => l.release()));
  });
});

describe('waiting acquire', () => {
  it('hands the lock to every one of several waiters in turn, never two at once', async () => {
    const waiters = await Promise.all([0, 1, 2, 3, 4].map(() => ctx.mutex({ pollIntervalMs: 200 })));
    let inside = 0;
    let maxInside = 0;
    const order: number[] = [];
    await Promise.all(
      waiters.map((m, i) =>
        withDbMutex('queue', async () => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          await sleep(50);
          order.push(i);
          inside--;
        }, { mutex: m, waitMs: 15_000 }),
      ),
    );
    expect(order.sort()).toEqual([0, 1, 2, 3, 4]);
    expect(maxInside).toBe(1);
  });

  itIf(notifies)('wakes a waiter through the release notice, long before its polling interval', async () => {
    const slowPoller = await ctx.mutex({ pollIntervalMs: 60_000 });
    const held = await mutex.acquire('notify-me');
    const refused = refusals(slowPoller, 'notify-me');
    const waiting = slowPoller.acquire('notify-me', { waitMs: 50_000 });
    await refused; // it tried, was refused, and now waits (its next poll is 30-90 s away)
    await held.release();
    const lock = await waiting; // would take ~30-90 s by polling alone; the test times out long before
    expect(lock.isHeld()).toBe(true);
    await lock.release();
  }, 20_000);

  itIf(!notifies)('hands a released lock to a waiter of another DbMutex by jittered polling (no release notices here)', async () => {
    const poller = await ctx.mutex({ pollIntervalMs: 200 });
    const held = await mutex.acquire('poll-me');
    const refused = refusals(poller, 'poll-me');
    const waiting = poller.acquire('poll-me', { waitMs: 20_000 });
    await refused;
    await held.release();
    const lock = await waiting; // polls every 100-300 ms; the wait bound is far longer
    expect(lock.isHeld()).toBe(true);
    await lock.release();
  });

  it('gives up after waitMs with a DbMutexError whose code tells a wait timeout from a refusal', async () => {
    const held = await rival.acquire('timeout');
    const error = await mutex.acquire('timeout', { waitMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexError);
    expect((error as DbMutexError).code).toBe('DB_MUTEX_WAIT_TIMEOUT');
    expect((error as DbMutexError).message).toBe('Could not acquire lock: timeout');
    expect((error as DbMutexError).waitedMs).toBeGreaterThanOrEqual(300);
    await held.release();
  });

  it('does not hold a connection per waiter: ten waiters share a pool of two (counted by the database)', async () => {
    const before = await serverConnections(ctx, 'pooled-waiters');
    const small = await ctx.mutex({ pollIntervalMs: 100 }, { pool: { max: 2, acquire: 5000 }, ...connectionTag('pooled-waiters', dialect) });
    // Held without a heartbeat, so the holder's pool stays quiet while the waiters are counted.
    const held = await rival.acquire('pooled', { heartbeat: false });
    const allRefused = refusals(small, 'pooled', 10);
    let done = 0;
    const running = Promise.all(
      Array.from({ length: 10 }, () =>
        withDbMutex('pooled', async () => {
          await sleep(20);
          done++;
        }, { mutex: small, waitMs: 60_000 }),
      ),
    );
    await allRefused; // all ten are waiting now
    const samples: { total: number; listening: number; pool: number }[] = [];
    const pool = (small.sequelize.connectionManager as unknown as { pool: { size: number } }).pool;
    for (let i = 0; i < 5; i++) {
      const now = await serverConnections(ctx, 'pooled-waiters');
      samples.push({ total: now.total - before.total, listening: now.listening - before.listening, pool: pool.size });
      await sleep(100);
    }
    await held.release();
    await running;
    expect(done).toBe(10);
    // At most the pool's two connections, plus, where releases notify (PostgreSQL), exactly one
    // listening connection of this DbMutex while its waiters wait: never one per waiter.
    expect(samples.some((sample) => sample.total >= 1)).toBe(true); // the count does see this DbMutex
    for (const sample of samples) {
      expect(sample.pool).toBeLessThanOrEqual(2);
      // Behind a transaction pooler the server count is the pooler's: it may serve two client
      // connections from more server connections over time, and an idle one keeps the last client's
      // application_name. The app's own side is the pool size above; LISTEN goes direct and is exact.
      if (pooler !== 'transaction') expect(sample.total).toBeLessThanOrEqual(2 + (notifies ? 1 : 0));
      expect(sample.listening).toBe(notifies ? 1 : 0);
    }
  });

  it('stops waiting when the caller\'s signal aborts', async () => {
    const held = await rival.acquire('cancelled');
    const controller = new AbortController();
    const refused = refusals(mutex, 'cancelled');
    const waiting = mutex.acquire('cancelled', { waitMs: 30_000, signal: controller.signal });
    await refused;
    controller.abort(new Error('user gave up'));
    await expect(waiting).rejects.toThrow('user gave up');
    await held.release();
  });
});

describe('manual handle', () => {
  it('extends, reports isHeld, and treats a second release as a harmless no-op', async () => {
    const lock = await mutex.acquire('manual', { ttlSeconds: 5, heartbeat: false });
    const before = lock.expiresAt!.getTime();
    await sleep(20);
    await lock.extend(60);
    expect(lock.expiresAt!.getTime()).toBeGreaterThan(before);
    expect(lock.isHeld()).toBe(true);
    await lock.release();
    expect(lock.isHeld()).toBe(false);
    await expect(lock.release()).resolves.toBeUndefined();
  });

  it('gives DbMutexTimeoutError when releasing or extending a lock that was lost', async () => {
    const lock = await mutex.acquire('manual-lost', { heartbeat: false });
    await ctx.sql.deleteLock('manual-lost');
    await expect(lock.extend(10)).rejects.toBeInstanceOf(DbMutexTimeoutError);
    expect(lock.signal.aborted).toBe(true);
    await expect(lock.release()).rejects.toBeInstanceOf(DbMutexTimeoutError);
    await expect(lock.release()).resolves.toBeUndefined();
  });

  it('marks a lock stale in list() when its heartbeat is overdue', async () => {
    const lock = await mutex.acquire('overdue', { leaseSeconds: 30 });
    await ctx.sql.setHeartbeatAgo('overdue', 25);
    expect((await mutex.inspect('overdue'))!.stale).toBe(true);
    expect((await mutex.list({ staleOnly: true })).map((r) => r.lockId)).toContain('overdue');
    await lock.release();
  });
});

describe('events and shutdown', () => {
  it('emits acquired, contended, released and lost events', async () => {
    const seen: string[] = [];
    const m = await ctx.mutex();
    m.on('acquired', (e) => seen.push(`acquired:${e.lockId}`));
    m.on('contended', (e) => seen.push(`contended:${e.lockId}`));
    m.on('released', (e) => seen.push(`released:${e.lockId}`));
    m.on('lost', (e) => seen.push(`lost:${e.lockId}:${e.reason}`));
    const a = await m.acquire('ev');
    await m.acquire('ev').catch(() => undefined);
    await a.release();
    const b = await m.acquire('ev2', { heartbeat: false });
    await ctx.sql.deleteLock('ev2');
    await b.release().catch(() => undefined);
    expect(seen).toEqual(['acquired:ev', 'contended:ev', 'released:ev', 'acquired:ev2', 'lost:ev2:released-by-other']);
  });

  it('withDbMutex reports DbMutexTimeoutError with reason "closed" when close() ends its lock mid-section', async () => {
    const m = await ctx.mutex();
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const running = withDbMutex('closed-mid-section', async (lock) => {
      entered();
      await aborted(lock.signal, 30_000);
      return 'noticed';
    }, { mutex: m }).catch((e: unknown) => e);
    await inside;
    await m.close();
    const error = (await running) as DbMutexTimeoutError;
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect(error.reason).toBe('closed');
    expect(error.result).toBe('noticed');
  });

  it('close() also deletes the row of a lock that was already lost while its section still runs', async () => {
    const m = await ctx.mutex();
    const lock = await m.acquire('lost-then-closed', { ttlSeconds: 0.3, heartbeat: false });
    await aborted(lock.signal, 30_000); // expired by the TTL, nobody took it over: the row is still ours
    expect(await rival.inspect('lost-then-closed')).not.toBeNull();
    await m.close();
    expect(await rival.inspect('lost-then-closed')).toBeNull();
    await expect(lock.release()).rejects.toBeInstanceOf(DbMutexTimeoutError);
  });

  it('close() releases held locks, aborts their signals and fails waiters', async () => {
    const m = await ctx.mutex();
    const lock = await m.acquire('closing');
    const held = await rival.acquire('closing-wait');
    const refused = refusals(m, 'closing-wait');
    const waiting = m.acquire('closing-wait', { waitMs: 30_000 }).catch((e: unknown) => e);
    await refused;
    await m.close();
    expect(lock.signal.aborted).toBe(true);
    expect(((await waiting) as DbMutexError).code).toBe('DB_MUTEX_CLOSED');
    expect(await rival.inspect('closing')).toBeNull();
    await expect(m.acquire('after-close')).rejects.toMatchObject({ code: 'DB_MUTEX_CLOSED' });
    await held.release();
  });
});

describe('listen: false', () => {
  it('still hands the lock over, by polling', async () => {
    const quiet = await ctx.mutex({ listen: false, pollIntervalMs: 50 });
    const held = await rival.acquire('no-listen');
    const refused = refusals(quiet, 'no-listen');
    const waiting = quiet.acquire('no-listen', { waitMs: 30_000 });
    await refused;
    await held.release();
    const lock = await waiting;
    expect(lock.isHeld()).toBe(true);
    await lock.release();
  });

  // Only PostgreSQL listens at all; on the others there is no LISTEN connection to leave out.
  itIf(notifies)('opens no LISTEN connection while waiting or holding (counted by the server), where the default opens one', async () => {
    const quiet = await ctx.mutex({ listen: false, pollIntervalMs: 50 }, connectionTag('no-listen', dialect));
    const loud = await ctx.mutex({ pollIntervalMs: 50 }, connectionTag('listen', dialect));
    const held = await rival.acquire('no-listen-2');
    const refused = refusals(quiet, 'no-listen-2');
    const waiting = quiet.acquire('no-listen-2', { waitMs: 30_000 });
    await refused;
    const whileWaiting = await serverConnections(ctx, 'no-listen');
    // The same moment for a DbMutex with the default: holding a lock, it has its listener.
    const loudLock = await loud.acquire('listening');
    await until(async () => (await serverConnections(ctx, 'listen')).listening === 1, 20_000, 'the default DbMutex never listened');
    await held.release();
    const lock = await waiting;
    const whileHolding = await serverConnections(ctx, 'no-listen');
    expect(whileWaiting).toMatchObject({ listening: 0 });
    expect(whileHolding).toMatchObject({ listening: 0 });
    expect(whileWaiting.total).toBeGreaterThanOrEqual(1); // its pooled connection is seen: the count is real
    await lock.release();
    await loudLock.release();
  });
});
