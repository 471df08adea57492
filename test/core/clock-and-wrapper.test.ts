import type { DbMutex } from '../../src';
import { dbMutex, DbMutexError, initDbMutex } from '../../src';
import { ttlFromEnv } from '../../src/options';
import { TestContext } from '../helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
  rival = await ctx.mutex();
});
afterAll(() => ctx.cleanup());
afterEach(() => jest.restoreAllMocks());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('time comes from the database', () => {
  it('decides expiry with the database clock even when the process clock is hours off', async () => {
    const realNow = Date.now.bind(Date);
    const hours = 5 * 3600 * 1000;
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() + hours);
    const lock = await mutex.acquire('skewed', { ttlSeconds: 2, heartbeat: false });
    const dbNow = await ctx.sql.dbNowMs();
    // acquiredAt is the database's instant, nowhere near the faked process clock.
    expect(Math.abs(lock.acquiredAt.getTime() - dbNow)).toBeLessThan(5000);
    // TTL counts from acquisition, by the database.
    expect(lock.expiresAt!.getTime() - lock.acquiredAt.getTime()).toBe(2000);
    // A rival whose clock is 5 hours behind still sees the lock held.
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() - hours);
    await expect(rival.acquire('skewed')).rejects.toBeInstanceOf(DbMutexError);
    // Once the database says it expired, the rival takes it over. (The wait is measured on the
    // database clock: the row's expiry minus the database's now, both read in one statement.)
    const row = (await rival.inspect('skewed'))!;
    await sleep(Math.max(0, row.expiresAt!.getTime() - row.dbNow.getTime()) + 50);
    const taken = await rival.acquire('skewed');
    expect(taken.fencingToken).toBeGreaterThan(lock.fencingToken);
    await taken.release();
    await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError' });
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

  it('works as a standard method decorator and keeps `this`', async () => {
    class Job {
      constructor(readonly name: string) {}
      @dbMutex('decorated', { mutex })
      async run(suffix: string): Promise<string> {
        return `${this.name}-${suffix}`;
      }
    }
    await expect(new Job('nightly').run('ok')).resolves.toBe('nightly-ok');
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
