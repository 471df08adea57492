/**
 * Counting semaphores: the API, the refusals, and the lock machinery a permit shares (release,
 * expiry, force-release, renewal), on every database. Each DbMutex has its own pool, so "another
 * holder" is another connection. Concurrency under load is proved in test/safety/semaphore.test.ts.
 */
import {
  DbMutexError,
  DbMutexTimeoutError,
  dbSemaphore,
  withDbMutex,
  withDbSemaphore,
  type DbMutex,
  type DbMutexSemaphorePermit,
} from '../../src';
import { TestContext } from '../helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;
let third: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'primary' });
  rival = await ctx.mutex({ holder: 'rival' });
  third = await ctx.mutex({ holder: 'third' });
});
afterAll(() => ctx.cleanup());

const rows = () => ctx.sql.lockRows(null);
const refusal = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as DbMutexError);

describe('counting semaphores', () => {
  it('admits up to limit holders, each with its own permit, then refuses with DB_MUTEX_SEMAPHORE_FULL', async () => {
    const a = await mutex.acquireSemaphore('pool', { limit: 2 });
    const b = await rival.acquireSemaphore('pool', { limit: 2 });
    expect([a.permit, b.permit]).toEqual([0, 1]);
    expect([a.semaphoreId, a.limit, a.lockId]).toEqual(['pool', 2, 'pool/permit/0']);
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    const error = await refusal(third.acquireSemaphore('pool', { limit: 2 }));
    expect(error).toBeInstanceOf(DbMutexError);
    expect(error).toMatchObject({ code: 'DB_MUTEX_SEMAPHORE_FULL', lockId: 'pool', limit: 2, used: 2, waitedMs: 0 });
    expect(['primary', 'rival']).toContain(error!.holder);
    expect(error!.message).toBe('Could not acquire semaphore: pool (2 of 2 permits held)');
    await a.release();
    const c = await third.acquireSemaphore('pool', { limit: 2 });
    // The lowest free permit is taken, and tokens keep increasing across all permits.
    expect(c.permit).toBe(0);
    expect(c.fencingToken).toBeGreaterThan(b.fencingToken);
    await b.release();
    await c.release();
    expect(await rows()).toEqual([]);
  });

  it('runs the function with the permit and returns its result (withDbSemaphore), releasing afterwards', async () => {
    const result = await withDbSemaphore(
      'reports',
      async (permit) => {
        expect(permit).toMatchObject({ semaphoreId: 'reports', permit: 0, limit: 3, lockId: 'reports/permit/0', holder: 'primary' });
        expect(permit.signal).toBeInstanceOf(AbortSignal);
        expect(permit.isHeld()).toBe(true);
        return 'done';
      },
      { mutex, limit: 3 },
    );
    expect(result).toBe('done');
    expect(await rows()).toEqual([]);
  });

  it('refuses a limit that differs from the current holders\' with DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH, even when waiting', async () => {
    const held = await mutex.acquireSemaphore('limits', { limit: 3 });
    const smaller = await refusal(rival.acquireSemaphore('limits', { limit: 2, waitMs: 5_000 }));
    expect(smaller).toMatchObject({ code: 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH', lockId: 'limits', limit: 3, used: 1 });
    expect(smaller!.waitedMs).toBeLessThan(5_000);
    expect(smaller!.message).toBe('Could not acquire semaphore: limits (its holders use limit 3, a different one)');
    const larger = await refusal(rival.acquireSemaphore('limits', { limit: 4 }));
    expect(larger).toMatchObject({ code: 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH', limit: 3 });
    await held.release();
    // Once nobody holds a permit, another limit is fine.
    const other = await rival.acquireSemaphore('limits', { limit: 2 });
    expect(other.limit).toBe(2);
    await other.release();
  });

  it('waits for a permit with waitMs and gets it when a holder releases', async () => {
    const held = await mutex.acquireSemaphore('waiting', { limit: 1 });
    const waiting = rival.acquireSemaphore('waiting', { limit: 1, waitMs: 20_000 });
    setTimeout(() => void held.release(), 200);
    const got = await waiting;
    expect(got.permit).toBe(0);
    expect(got.fencingToken).toBeGreaterThan(held.fencingToken);
    await got.release();
  });

  it('gives up after waitMs with DB_MUTEX_WAIT_TIMEOUT and the semaphore\'s numbers', async () => {
    const held = await mutex.acquireSemaphore('timeout', { limit: 1 });
    const error = await refusal(rival.acquireSemaphore('timeout', { limit: 1, waitMs: 300 }));
    expect(error).toMatchObject({ code: 'DB_MUTEX_WAIT_TIMEOUT', lockId: 'timeout', limit: 1, used: 1, holder: 'primary' });
    expect(error!.waitedMs).toBeGreaterThanOrEqual(300);
    await held.release();
  });

  it('takes over the permit of a holder whose lease ran out by the database clock, and that holder learns it lost it', async () => {
    const stale = await mutex.acquireSemaphore('expiry', { limit: 1, heartbeat: false });
    await ctx.sql.expireLock(stale.lockId);
    const fresh = await rival.acquireSemaphore('expiry', { limit: 1 });
    expect(fresh.permit).toBe(0);
    expect(fresh.fencingToken).toBeGreaterThan(stale.fencingToken);
    await expect(stale.release()).rejects.toBeInstanceOf(DbMutexTimeoutError);
    await fresh.release();
  });

  it('force-releases one holder\'s permit, token-exact and audited, and aborts that holder\'s signal', async () => {
    const a = await mutex.acquireSemaphore('force', { limit: 2 });
    const b = await rival.acquireSemaphore('force', { limit: 2 });
    const wrongToken = await third.forceRelease({ lockId: b.lockId, fencingToken: a.fencingToken, operator: 'ops' });
    expect(wrongToken).toEqual({ status: 'token-mismatch', currentFencingToken: b.fencingToken });
    const released = await third.forceRelease({ lockId: b.lockId, fencingToken: b.fencingToken, operator: 'ops', reason: 'stuck' });
    expect(released).toMatchObject({ status: 'released', event: { lockId: 'force/permit/1', fencingToken: b.fencingToken, holder: 'rival' } });
    await expect(b.extend()).rejects.toBeInstanceOf(DbMutexTimeoutError);
    expect(b.signal.aborted).toBe(true);
    expect(a.isHeld()).toBe(true);
    await a.release();
  });

  it('keeps semaphore ids and lock ids apart: a lock of the same id is independent, a lock on a permit\'s key is refused', async () => {
    const permit = await mutex.acquireSemaphore('shared-name', { limit: 1 });
    // The semaphore id itself names no row.
    await withDbMutex('shared-name', () => undefined, { mutex: rival });
    // A lock whose id is a held permit's row key is refused like any held lock.
    const refused = await refusal(rival.acquire('shared-name/permit/0'));
    expect(refused).toMatchObject({ code: 'DB_MUTEX_HELD', holder: 'primary' });
    await permit.release();
    // A permit's key held as a lock is never counted as free: the semaphore skips it.
    const squatter = await rival.acquire('shared-name/permit/0');
    const next = await mutex.acquireSemaphore('shared-name', { limit: 2 });
    expect(next.permit).toBe(1);
    const full = await refusal(third.acquireSemaphore('shared-name', { limit: 2 }));
    expect(full).toMatchObject({ code: 'DB_MUTEX_SEMAPHORE_FULL' });
    await next.release();
    await squatter.release();
  });

  it('renews permits with the heartbeat like locks', async () => {
    const permit = await mutex.acquireSemaphore('renewed', { limit: 2, leaseSeconds: 1.5 });
    const first = permit.expiresAt!.getTime();
    await new Promise((r) => setTimeout(r, 2_000));
    expect(permit.isHeld()).toBe(true);
    const [row] = await mutex.list({ filter: 'renewed/permit/0' });
    expect(row!.expiresAt!.getTime()).toBeGreaterThan(first);
    await permit.release();
  });

  it('wraps a function with dbSemaphore, the id computed from the arguments', async () => {
    const seen: DbMutexSemaphorePermit[] = [];
    const limited = dbSemaphore((tenant: string) => `tenant/${tenant}`, { mutex, limit: 2 })(async (tenant: string) => {
      const [row] = await mutex.list({ filter: `tenant/${tenant}/permit/` });
      seen.push(row as never);
      return tenant.toUpperCase();
    });
    expect(await limited('acme')).toBe('ACME');
    expect(seen).toHaveLength(1);
    const held = [await rival.acquireSemaphore('tenant/busy', { limit: 1 })];
    const suppressed = dbSemaphore('tenant/busy', { mutex, limit: 1, suppressAcquisitionErrors: true })(() => 'ran');
    expect(await suppressed()).toBeUndefined();
    // A limit mismatch is a programming error: never suppressed.
    const mismatched = dbSemaphore('tenant/busy', { mutex, limit: 2, suppressAcquisitionErrors: true })(() => 'ran');
    await expect(mismatched()).rejects.toMatchObject({ code: 'DB_MUTEX_SEMAPHORE_LIMIT_MISMATCH' });
    for (const h of held) await h.release();
  });

  it('rejects a missing or bad limit, a bad id and unknown options before any SQL', async () => {
    await expect(mutex.acquireSemaphore('x', {} as never)).rejects.toThrow(new TypeError('limit must be a number, got undefined'));
    await expect(mutex.acquireSemaphore('x', { limit: 0 })).rejects.toThrow(RangeError);
    await expect(mutex.acquireSemaphore('x', { limit: 1.5 })).rejects.toThrow(/limit must be an integer between 1 and 1000/);
    await expect(mutex.acquireSemaphore('x', { limit: 1001 })).rejects.toThrow(RangeError);
    await expect(mutex.acquireSemaphore('', { limit: 1 })).rejects.toThrow(/semaphoreId must not be empty/);
    await expect(mutex.acquireSemaphore('s'.repeat(241), { limit: 1 })).rejects.toThrow(/semaphoreId must be at most 240 characters/);
    await expect(mutex.acquireSemaphore('x', { limit: 1, limt: 2 } as never)).rejects.toThrow(/Unknown option "limt" for mutex.acquireSemaphore \(did you mean "limit"\?\)/);
    await expect(withDbSemaphore('x', () => 1, { mutex, limit: 1, wait: 5 } as never)).rejects.toThrow(/Unknown option "wait" for withDbSemaphore/);
    expect(() => dbSemaphore('x', { limit: 1, mutex, supress: true } as never)).toThrow(/Unknown option "supress" for dbSemaphore/);
    expect(await rows()).toEqual([]);
  });

  it('releases every permit on close(), aborting their signals with reason closed', async () => {
    const own = await ctx.mutex({ holder: 'closing' });
    const a = await own.acquireSemaphore('closing', { limit: 3 });
    const b = await own.acquireSemaphore('closing', { limit: 3 });
    await own.close();
    expect([a.signal.aborted, b.signal.aborted]).toEqual([true, true]);
    expect(await rows()).toEqual([]);
  });
});
