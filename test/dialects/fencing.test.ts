/**
 * Fencing tokens on this run's database: strictly increasing per lock id across every way a lock
 * can end — release, expiry (by the database clock) and takeover, manual DELETE, force-release,
 * purge, close() — and across separate DbMutex instances (separate connections and pools).
 */
import type { DbMutex, DbMutexHeldLock } from '../../src';
import { dialect, TestContext } from '../helpers/db';

let ctx: TestContext;
let a: DbMutex;
let b: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  a = await ctx.mutex({ holder: 'a' });
  b = await ctx.mutex({ holder: 'b' });
});
afterAll(() => ctx.cleanup());

describe(`fencing tokens on ${dialect}`, () => {
  it('strictly increase per lock id across release, expiry, takeover, delete, force-release, purge and close', async () => {
    const tokens: number[] = [];
    const take = async (mutex: DbMutex, options = {}) => {
      const lock = await mutex.acquire('fenced', options);
      tokens.push(lock.fencingToken);
      return lock;
    };
    const expireAndLose = async (lock: DbMutexHeldLock) => {
      await ctx.sql.expireLock('fenced');
      return lock;
    };

    for (let round = 0; round < 3; round++) {
      await (await take(a)).release(); // released
      const expired = await expireAndLose(await take(b, { heartbeat: false })); // expired ...
      const takeover = await take(a); // ... and taken over by another DbMutex
      await expect(expired.release()).rejects.toMatchObject({ reason: 'released-by-other' });
      await ctx.sql.deleteLock('fenced'); // deleted behind the library's back
      await expect(takeover.release()).rejects.toMatchObject({ reason: 'released-by-other' });
      const forced = await take(b);
      expect((await a.forceRelease({ lockId: 'fenced', fencingToken: forced.fencingToken, operator: 'test' })).status).toBe('released');
      await expect(forced.release()).rejects.toMatchObject({ reason: 'released-by-other' });
      const purged = await expireAndLose(await take(a, { heartbeat: false }));
      expect((await b.purgeExpired({ operator: 'test' })).map((e) => e.fencingToken)).toEqual([purged.fencingToken]);
      await expect(purged.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError' });
    }
    const closing = await ctx.mutex({ holder: 'closing' });
    await take(closing);
    await closing.close(); // releases what it holds
    await (await take(b)).release();

    expect(tokens).toHaveLength(3 * 5 + 2);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
  });

  it('record the fencing token of each released acquisition in the audit trail', async () => {
    const lock = await a.acquire('audited');
    const result = await b.forceRelease({ lockId: 'audited', operator: 'ops', reason: 'stuck job' });
    expect(result).toMatchObject({ status: 'released', event: { lockId: 'audited', fencingToken: lock.fencingToken, holder: 'a', operator: 'ops', reason: 'stuck job' } });
    const [event] = await a.events({ lockId: 'audited', limit: 1 });
    expect(event).toEqual(result.status === 'released' ? result.event : undefined);
    await expect(lock.release()).rejects.toMatchObject({ reason: 'released-by-other' });
  });

  it('leave a re-acquired lock alone when a force-release names the previous acquisition', async () => {
    const first = await a.acquire('reacquired');
    await first.release();
    const second = await b.acquire('reacquired');
    expect(await a.forceRelease({ lockId: 'reacquired', fencingToken: first.fencingToken, operator: 'ops' })).toEqual({
      status: 'token-mismatch',
      currentFencingToken: second.fencingToken,
    });
    expect(second.isHeld()).toBe(true);
    await second.release();
  });
});
