import type { DbMutex } from '../../src';
import { dbMutex, DbMutexError, initDbMutex } from '../../src';
import { ttlFromEnv } from '../../src/options';
import { TestContext } from '../helpers/db';
import { sleep } from '../helpers/wait';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
  rival = await ctx.mutex();
});
afterAll(() => ctx.cleanup());
afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});


/** This machine's real time: performance.* is never faked below, Date is. */
const realNowMs = () => performance.timeOrigin + performance.now();

/**
 * Sets this process's whole wall clock `offsetMs` off: `Date.now()` and `new Date()` alike (jest's fake
 * Date, ticking along with real time). Timers, the monotonic clock and I/O stay real, so the database
 * drivers work as usual; a lease's durations are measured on the monotonic clock by design.
 */
function skewProcessClock(offsetMs: number): void {
  jest.useFakeTimers({
    doNotFake: [
      'hrtime',
      'nextTick',
      'performance',
      'queueMicrotask',
      'requestAnimationFrame',
      'cancelAnimationFrame',
      'requestIdleCallback',
      'cancelIdleCallback',
      'setImmediate',
      'clearImmediate',
      'setInterval',
      'clearInterval',
      'setTimeout',
      'clearTimeout',
    ],
    advanceTimers: true,
    now: realNowMs() + offsetMs,
  });
}

describe('time comes from the database', () => {
  it('decides expiry with the database clock even when the process clock (Date.now and new Date) is hours off', async () => {
    const hours = 5 * 3600 * 1000;
    skewProcessClock(hours);
    const dbNowBefore = await ctx.sql.dbNowMs();
    // The fake is in force for both ways of reading the clock (else this test would prove nothing).
    expect(Math.abs(Date.now() - dbNowBefore - hours)).toBeLessThan(60_000);
    expect(Math.abs(new Date().getTime() - dbNowBefore - hours)).toBeLessThan(60_000);
    const lock = await mutex.acquire('skewed', { ttlSeconds: 2, heartbeat: false });
    const dbNowAfter = await ctx.sql.dbNowMs();
    // acquiredAt is the database's instant, nowhere near the faked process clock.
    expect(lock.acquiredAt.getTime()).toBeGreaterThanOrEqual(dbNowBefore);
    expect(lock.acquiredAt.getTime()).toBeLessThanOrEqual(dbNowAfter);
    // TTL counts from acquisition, by the database.
    expect(lock.expiresAt!.getTime() - lock.acquiredAt.getTime()).toBe(2000);
    // A rival whose clock is 5 hours behind still sees the lock held.
    jest.setSystemTime(realNowMs() - hours);
    expect(Math.abs(new Date().getTime() - (await ctx.sql.dbNowMs()) + hours)).toBeLessThan(60_000);
    await expect(rival.acquire('skewed')).rejects.toMatchObject({ code: 'DB_MUTEX_HELD' });
    // Once the database says it expired, the rival takes it over. (The wait is measured on the
    // database clock: the row's expiry minus the database's now, both read in one statement.)
    const row = (await rival.inspect('skewed'))!;
    expect(row.expiresAt!.getTime()).toBe(lock.expiresAt!.getTime());
    await sleep(Math.max(0, row.expiresAt!.getTime() - row.dbNow.getTime()) + 50);
    const taken = await rival.acquire('skewed');
    expect(taken.fencingToken).toBeGreaterThan(lock.fencingToken);
    expect(taken.acquiredAt.getTime()).toBeGreaterThanOrEqual(lock.expiresAt!.getTime());
    await taken.release();
    await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError', reason: 'expired' });
  });

  it('reads DB_MUTEX_TTL_SECONDS like the original setting: seconds, or "none" for never', () => {
    expect(ttlFromEnv({ DB_MUTEX_TTL_SECONDS: '90' })).toBe(90);
    expect(ttlFromEnv({ DB_MUTEX_TTL_SECONDS: 'none' })).toBeNull();
    expect(ttlFromEnv({ DB_MUTEX_TTL_SECONDS: 'None' })).toBeNull();
    expect(ttlFromEnv({})).toBeUndefined();
    expect(() => ttlFromEnv({ DB_MUTEX_TTL_SECONDS: 'soon' })).toThrow(/DB_MUTEX_TTL_SECONDS/);
    expect(() => ttlFromEnv({ DB_MUTEX_TTL_SECONDS: '-3' })).toThrow(RangeError);
  });

  it('uses DB_MUTEX_TTL_SECONDS as the default TTL, and 1800 seconds without it', () => {
    const saved = process.env.DB_MUTEX_TTL_SECONDS;
    try {
      delete process.env.DB_MUTEX_TTL_SECONDS;
      expect(initDbMutex(ctx.sequelize(), { setDefault: false }).options.ttlSeconds).toBe(1800);
      process.env.DB_MUTEX_TTL_SECONDS = 'none';
      expect(initDbMutex(ctx.sequelize(), { setDefault: false }).options.ttlSeconds).toBeNull();
      process.env.DB_MUTEX_TTL_SECONDS = '120';
      expect(initDbMutex(ctx.sequelize(), { setDefault: false }).options.ttlSeconds).toBe(120);
    } finally {
      if (saved === undefined) delete process.env.DB_MUTEX_TTL_SECONDS;
      else process.env.DB_MUTEX_TTL_SECONDS = saved;
    }
  });

  it('stores a never-expiring lock when ttlSeconds is null and the heartbeat is off', async () => {
    const lock = await mutex.acquire('forever', { ttlSeconds: null, heartbeat: false });
    expect(lock.expiresAt).toBeNull();
    await expect(rival.acquire('forever')).rejects.toBeInstanceOf(DbMutexError);
    await lock.release();
  });
});

describe('the wrapper form', () => {
  it('returns a function with the same parameters that runs under the lock', async () => {
    const add = dbMutex('adder', { mutex })(async (a: number, b: number) => {
      expect((await mutex.list()).map((r) => r.lockId)).toEqual(['adder']);
      return a + b;
    });
    await expect(add(2, 3)).resolves.toBe(5);
  });

  it('derives the lock id from the call arguments', async () => {
    const seen: string[] = [];
    const report = dbMutex((userId: number) => `report:${userId}`, { mutex })(async (userId: number) => {
      seen.push(...(await mutex.list()).map((r) => r.lockId));
      return userId;
    });
    await report(7);
    await report(8);
    expect(seen).toEqual(['report:7', 'report:8']);
  });

  it('works as a standard method decorator: the method runs holding the lock in the database, and keeps `this`', async () => {
    const inside: { rows: { lock_id: string; holder: string }[]; rival: unknown; concurrent: unknown }[] = [];
    class Job {
      constructor(readonly name: string) {}
      @dbMutex('decorated', { mutex })
      async run(suffix: string): Promise<string> {
        if (this.name === 'second') return 'the second call ran'; // must not happen: it is refused before
        // While the method runs, the database has the lock as this DbMutex's, and nobody else gets it:
        // neither another DbMutex nor a second call of the same decorated method.
        inside.push({
          rows: (await ctx.sql.lockRows('decorated')).map(({ lock_id, holder }) => ({ lock_id, holder })),
          rival: await rival.acquire('decorated').catch((e: unknown) => e),
          concurrent: await new Job('second').run('call').catch((e: unknown) => e),
        });
        return `${this.name}-${suffix}`;
      }
    }
    await expect(new Job('nightly').run('ok')).resolves.toBe('nightly-ok');
    expect(inside).toHaveLength(1);
    expect(inside[0]!.rows).toEqual([{ lock_id: 'decorated', holder: mutex.options.holder }]);
    expect(inside[0]!.rival).toBeInstanceOf(DbMutexError);
    expect(inside[0]!.rival).toMatchObject({ code: 'DB_MUTEX_HELD', lockId: 'decorated' });
    expect(inside[0]!.concurrent).toBeInstanceOf(DbMutexError);
    expect(inside[0]!.concurrent).toMatchObject({ code: 'DB_MUTEX_HELD', lockId: 'decorated' });
    // And released afterwards.
    expect(await ctx.sql.lockRows('decorated')).toEqual([]);
  });

  it('suppresses acquisition errors when asked, without running, and reports them', async () => {
    const held = await rival.acquire('suppressed');
    const body = jest.fn();
    const suppressed: string[] = [];
    const wrapped = dbMutex('suppressed', {
      mutex,
      suppressAcquisitionErrors: true,
      onSuppressed: (error) => suppressed.push(error.code),
    })(body);
    await expect(wrapped()).resolves.toBeUndefined();
    expect(body).not.toHaveBeenCalled();
    expect(suppressed).toEqual(['DB_MUTEX_HELD']);
    await held.release();
  });

  it('rejects a lock id that is neither a string nor a function', () => {
    expect(() => dbMutex(5 as unknown as string)).toThrow(TypeError);
  });
});
