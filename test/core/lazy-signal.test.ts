/**
 * `lock.signal` is made on first use (most critical sections never read it, and an AbortController
 * per acquisition is a measurable part of the cycle's own cost). Whenever it is first read, it must
 * say the same as an eager one would: aborted, with the DbMutexLostError, once the lock was lost.
 * The loss comes from another DbMutex (its own pool and connections) force-releasing the lock.
 */
import { DbMutexLostError, type DbMutex, type DbMutexHeldLock } from '../../src';
import { TestContext } from '../helpers/db';

let ctx: TestContext;
let holder: DbMutex;
let operator: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  // A short lease: where no notice tells the holder (MariaDB, SQLite), its next renewal does.
  holder = await ctx.mutex({ holder: 'holder', leaseSeconds: 1 });
  operator = await ctx.mutex({ holder: 'operator' });
});
afterAll(async () => {
  await ctx.cleanup();
});

async function lost(lock: DbMutexHeldLock): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (lock.isHeld() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(lock.isHeld()).toBe(false);
}

it('gives a signal first read after the loss already aborted, with the DbMutexLostError as its reason', async () => {
  const lock = await holder.acquire('lazy-after');
  await operator.forceRelease({ lockId: 'lazy-after', operator: 'ops' });
  await lost(lock);
  expect(lock.signal.aborted).toBe(true);
  expect(lock.signal.reason).toBeInstanceOf(DbMutexLostError);
  expect((lock.signal.reason as DbMutexLostError).reason).toBe('released-by-other');
  // The same signal every time it is read.
  expect(lock.signal).toBe(lock.signal);
  await lock.release().catch(() => undefined);
});

it('aborts a signal read while the lock was held at the moment the lock is lost', async () => {
  const lock = await holder.acquire('lazy-before');
  const signal = lock.signal;
  expect(signal.aborted).toBe(false);
  const aborted = new Promise<unknown>((resolve) => signal.addEventListener('abort', () => resolve(signal.reason)));
  await operator.forceRelease({ lockId: 'lazy-before', operator: 'ops' });
  const reason = await aborted;
  expect(reason).toBeInstanceOf(DbMutexLostError);
  expect(lock.signal).toBe(signal);
  await lock.release().catch(() => undefined);
});

it('leaves the signal of a lock released normally unaborted', async () => {
  const lock = await holder.acquire('lazy-released');
  await lock.release();
  expect(lock.signal.aborted).toBe(false);
});
