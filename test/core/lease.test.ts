import { hostname } from 'node:os';
import type { DbMutex, DbMutexHeldLock } from '../../src';
import { DbMutexError, DbMutexLostError, DbMutexTimeoutError, withDbMutex } from '../../src';
import { itIf, notifies, TestContext } from '../helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'lease-test' });
  rival = await ctx.mutex({ holder: 'rival' });
});
afterAll(() => ctx.cleanup());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  it('keeps the lock through a job three leases long and completes without error', async () => {
    let rivalRefusals = 0;
    const result = await withDbMutex('long-job', async (lock) => {
      for (let i = 0; i < 6; i++) {
        await sleep(500);
        await rival.acquire('long-job').catch((e: unknown) => {
          if (e instanceof DbMutexError) rivalRefusals++;
        });
      }
      expect(lock.signal.aborted).toBe(false);
      return 'finished';
    }, { mutex, leaseSeconds: 1 });
    expect(result).toBe('finished');
    expect(rivalRefusals).toBe(6);
  });

  it('stores the last heartbeat and the holder identity on the row', async () => {
    const lock = await mutex.acquire('identity', { leaseSeconds: 0.6 });
    const first = (await mutex.inspect('identity'))!;
    await sleep(700);
    const later = (await mutex.inspect('identity'))!;
    expect(later.heartbeatAt.getTime()).toBeGreaterThan(first.heartbeatAt.getTime());
    expect(later).toMatchObject({ hostname: hostname(), pid: process.pid, holder: 'lease-test', leaseSeconds: 0.6, stale: false });
    await lock.release();
  });

  it('aborts the signal within one renewal period when an operator deletes the row, and withDbMutex reports the reason', async () => {
    const error = await withDbMutex('deleted', async (lock) => {
      await ctx.sql.deleteLock('deleted');
      const reason = await aborted(lock.signal, 1500);
      expect(reason).toBeInstanceOf(DbMutexLostError);
      return 'stopped early';
    }, { mutex, leaseSeconds: 1.5 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect((error as DbMutexTimeoutError).reason).toBe('released-by-other');
    expect((error as DbMutexTimeoutError).result).toBe('stopped early');
  });

  itIf(notifies)('aborts the holder at once when another process force-releases it (release notice, not the next renewal)', async () => {
    const lock = await mutex.acquire('forced', { leaseSeconds: 60 });
    await sleep(100); // the listener connects in the background after the first acquisition
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
    // Renewals run every 0.5 s; the first one after the release finds the row gone.
    const reason = (await aborted(lock.signal, 3000)) as DbMutexLostError;
    expect(reason.reason).toBe('released-by-other');
    await expect(lock.release()).rejects.toMatchObject({ reason: 'released-by-other' });
  });

  it('loses the lock at the TTL even while the heartbeat runs', async () => {
    const error = await withDbMutex('capped', async (lock) => {
      const reason = (await aborted(lock.signal, 4000)) as DbMutexLostError;
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

  it('renews 500 held locks with a constant number of statements per renewal period', async () => {
    const names: string[] = [];
    const many = await ctx.mutex({}, { logging: statementNames(names) });
    const locks: DbMutexHeldLock[] = [];
    // A 3 s lease (renewed every second) leaves the 500 releases at the end time to run even on a
    // busy machine; with a shorter one, the last rows may expire while they wait their turn.
    for (let i = 0; i < 500; i++) locks.push(await many.acquire(`batch-${i}`, { leaseSeconds: 3 }));
    names.length = 0;
    await sleep(3200); // about three renewal periods of 1 s
    expect(renewals(names).length).toBeGreaterThanOrEqual(2);
    expect(renewals(names).length).toBeLessThanOrEqual(4);
    // Nothing but renewals: no per-lock statements, no follow-up reads.
    expect(names).toEqual(renewals(names));
    expect(locks.every((l) => l.isHeld())).toBe(true);
    const rows = await many.list({ filter: 'batch-' });
    expect(rows).toHaveLength(500);
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
    const waiting = slowPoller.acquire('notify-me', { waitMs: 50_000 });
    await sleep(200);
    await held.release();
    const lock = await waiting; // would take ~30-90 s by polling alone; the test times out long before
    expect(lock.isHeld()).toBe(true);
    await lock.release();
  }, 20_000);

  itIf(!notifies)('hands a released lock to a waiter of another DbMutex by jittered polling (no release notices here)', async () => {
    const poller = await ctx.mutex({ pollIntervalMs: 200 });
    const held = await mutex.acquire('poll-me');
    const waiting = poller.acquire('poll-me', { waitMs: 20_000 });
    await sleep(300);
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

  it('does not hold a pooled connection per waiter: ten waiters share a pool of two', async () => {
    // Listening connections exist only where releases notify (PostgreSQL's LISTEN).
    const listening = async () =>
      notifies
        ? Number((await ctx.exec<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`))[0]!.n)
        : 0;
    const before = await listening();
    const small = await ctx.mutex({ pollIntervalMs: 100 }, { pool: { max: 2, acquire: 5000 } });
    let done = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        withDbMutex('pooled', async () => {
          await sleep(20);
          done++;
        }, { mutex: small, waitMs: 20_000 }),
      ),
    );
    expect(done).toBe(10);
    // One listening connection for the DbMutex (where there is one at all), not one per waiter.
    expect((await listening()) - before).toBe(notifies ? 1 : 0);
  });

  it('stops waiting when the caller\'s signal aborts', async () => {
    const held = await rival.acquire('cancelled');
    const controller = new AbortController();
    const waiting = mutex.acquire('cancelled', { waitMs: 30_000, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('user gave up')), 100);
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
    const running = withDbMutex('closed-mid-section', async (lock) => {
      await aborted(lock.signal, 5000);
      return 'noticed';
    }, { mutex: m }).catch((e: unknown) => e);
    await sleep(50);
    await m.close();
    const error = (await running) as DbMutexTimeoutError;
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect(error.reason).toBe('closed');
    expect(error.result).toBe('noticed');
  });

  it('close() also deletes the row of a lock that was already lost while its section still runs', async () => {
    const m = await ctx.mutex();
    const lock = await m.acquire('lost-then-closed', { ttlSeconds: 0.3, heartbeat: false });
    await aborted(lock.signal, 3000); // expired by the TTL, nobody took it over: the row is still ours
    expect(await rival.inspect('lost-then-closed')).not.toBeNull();
    await m.close();
    expect(await rival.inspect('lost-then-closed')).toBeNull();
    await expect(lock.release()).rejects.toBeInstanceOf(DbMutexTimeoutError);
  });

  it('close() releases held locks, aborts their signals and fails waiters', async () => {
    const m = await ctx.mutex();
    const lock = await m.acquire('closing');
    const held = await rival.acquire('closing-wait');
    const waiting = m.acquire('closing-wait', { waitMs: 10_000 }).catch((e: unknown) => e);
    await sleep(50);
    await m.close();
    expect(lock.signal.aborted).toBe(true);
    expect(((await waiting) as DbMutexError).code).toBe('DB_MUTEX_CLOSED');
    expect(await rival.inspect('closing')).toBeNull();
    await expect(m.acquire('after-close')).rejects.toMatchObject({ code: 'DB_MUTEX_CLOSED' });
    await held.release();
  });
});

describe('listen: false', () => {
  it('opens no LISTEN connection and still hands the lock over by polling', async () => {
    const quiet = await ctx.mutex({ listen: false, pollIntervalMs: 50 });
    const held = await rival.acquire('no-listen');
    const waiting = quiet.acquire('no-listen', { waitMs: 10_000 });
    await sleep(100);
    await held.release();
    const lock = await waiting;
    expect(lock.isHeld()).toBe(true);
    await lock.release();
    expect((quiet as unknown as { listener: unknown }).listener).toBeNull();
  });
});
