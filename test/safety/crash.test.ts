/**
 * Claim 2 (crashes): a holder that dies without releasing frees its lock within its lease, and a holder
 * whose event loop is blocked past its lease is told it lost the lock instead of carrying on silently.
 * Both run as real processes against the real database.
 */
import { DbMutexError, type DbMutex } from '../../src';
import { ensureBuilt } from '../helpers/built';
import { TestContext } from '../helpers/db';
import { ChildGroup } from '../helpers/children';
import { note } from '../helpers/report';

const LEASE_SECONDS = 2;

let ctx: TestContext;
let contender: DbMutex;
const children = new ChildGroup();

/** Polls `probe` until it returns something, or fails with `message` after `withinMs` (a hang guard, not a claim). */
async function until<T>(probe: () => Promise<T | null>, withinMs: number, message: string): Promise<T> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (performance.now() > deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('crashed and frozen holders', () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    // Polling fast, since a killed holder sends no release notice: the wait ends on expiry alone.
    contender = await ctx.mutex({ pollIntervalMs: 50, leaseSeconds: 10 });
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(() => ctx?.cleanup());

  it('frees the lock of a holder killed with SIGKILL when its lease runs out by the database clock, for another process to take', async () => {
    const holder = children.spawn('holder.js', { url: ctx.db.url, mode: 'hold', lockId: 'crash', leaseSeconds: LEASE_SECONDS });
    const acquired = await holder.waitForType('acquired', 20_000);
    // Wait for a heartbeat, so the lease being tested is a renewed one, not the first.
    const renewed = await until(async () => {
      const row = await contender.inspect('crash');
      return row && row.heartbeatAt.getTime() > (acquired.acquiredAtMs as number) ? row : null;
    }, 20_000, 'the holder never renewed its lease');
    expect(renewed.fencingToken).toBe(acquired.fencingToken);

    // Read just before the kill: a reading after it could come late on a loaded machine, and the bound
    // below only gets stricter this way.
    const killedAtMs = await ctx.sql.dbNowMs();
    holder.kill('SIGKILL');
    await holder.exited;

    // The dead holder's row stays, running out with the lease it had at the kill: nothing else frees it.
    // (The second is for a renewal that was in flight when the kill came.)
    const orphan = await contender.inspect('crash');
    expect(orphan?.fencingToken).toBe(acquired.fencingToken);
    expect(orphan!.expiresAt!.getTime()).toBeGreaterThan(killedAtMs);
    expect(orphan!.expiresAt!.getTime()).toBeLessThanOrEqual(killedAtMs + (LEASE_SECONDS + 1) * 1000);

    const lock = await contender.acquire('crash', { waitMs: (LEASE_SECONDS + 5) * 1000 });
    const freedAfterMs = lock.acquiredAt.getTime() - killedAtMs;
    await lock.release();
    note(
      `SIGKILLed holder (lease ${LEASE_SECONDS} s): its row expired ${Math.round(orphan!.expiresAt!.getTime() - killedAtMs)} ms after the kill, ` +
        `taken by another process ${Math.round(freedAfterMs)} ms after the kill (database clock)`,
    );
    expect(lock.fencingToken).toBeGreaterThan(acquired.fencingToken as number);
    // Taken over only once the database said the lease had run out, never before. (How soon after
    // that the contender's polling gets it depends on the machine's load: its wait allowance bounds it.)
    expect(lock.acquiredAt.getTime()).toBeGreaterThanOrEqual(orphan!.expiresAt!.getTime());
  });

  describe('a holder whose event loop is blocked for longer than its lease', () => {
    it('is told the lock was lost when another process took it over meanwhile', async () => {
      const holder = children.spawn('holder.js', {
        url: ctx.db.url,
        mode: 'block',
        lockId: 'blocked-taken',
        leaseSeconds: 1,
        blockMs: 4000,
      });
      const acquired = await holder.waitForType('acquired', 20_000);
      // Takes the lock as soon as the database says the blocked holder's lease ran out.
      const lock = await contender.acquire('blocked-taken', { waitMs: 10_000 });
      expect(lock.fencingToken).toBeGreaterThan(acquired.fencingToken as number);
      const unblocked = await holder.waitForType('unblocked', 20_000);
      const result = await holder.waitForType('result', 20_000);
      expect(result).toMatchObject({
        ok: false,
        completed: true,
        result: 'section result',
        error: { name: 'DbMutexTimeoutError', code: 'DB_MUTEX_LOST' },
      });
      expect(['expired', 'released-by-other']).toContain((result.error as { reason: string }).reason);
      // Right after the block the section has not been told yet (no timer could run while it was blocked);
      // withDbMutex tells it on the way out, and the 'lost' event fires.
      note(`blocked 4 s with a 1 s lease: signal aborted right after the block: ${String(unblocked.signalAborted)}; withDbMutex threw ${JSON.stringify(result.error)}`);
      expect(holder.messages.some((m) => m.type === 'lost')).toBe(true);
      // The late release of the blocked holder did not remove the new holder's row.
      expect((await contender.inspect('blocked-taken'))?.fencingToken).toBe(lock.fencingToken);
      await lock.release();
    });

    it('is told the lock expired when nobody took it over', async () => {
      const holder = children.spawn('holder.js', {
        url: ctx.db.url,
        mode: 'block',
        lockId: 'blocked-alone',
        leaseSeconds: 1,
        blockMs: 2500,
      });
      await holder.waitForType('acquired', 20_000);
      const result = await holder.waitForType('result', 20_000);
      expect(result).toMatchObject({ ok: false, completed: true, error: { name: 'DbMutexTimeoutError', reason: 'expired' } });
      expect(holder.messages.find((m) => m.type === 'lost')).toMatchObject({ reason: 'expired' });
      // Released on the way out, so nobody has to wait for anything.
      const lock = await contender.acquire('blocked-alone');
      await lock.release();
    });

    it('keeps a section that blocks for less than the lease', async () => {
      // The block spans more than one renewal period (lease / 3), so renewals are missed, but stays
      // within the lease. It is long enough for this process to try the lock while it lasts, even on a
      // loaded machine; a rival that got the lock would fail the test, not skip the check.
      const holder = children.spawn('holder.js', {
        url: ctx.db.url,
        mode: 'block',
        lockId: 'blocked-briefly',
        leaseSeconds: 10,
        blockMs: 6000,
      });
      const acquired = await holder.waitForType('acquired', 20_000);
      const attempt = await contender.acquire('blocked-briefly').catch((e: unknown) => e);
      expect(attempt).toBeInstanceOf(DbMutexError);
      expect(attempt).toMatchObject({ code: 'DB_MUTEX_HELD' });
      expect((await contender.inspect('blocked-briefly'))?.fencingToken).toBe(acquired.fencingToken);
      const result = await holder.waitForType('result', 20_000);
      expect(result).toMatchObject({ ok: true, result: 'section result' });
      expect(holder.messages.find((m) => m.type === 'unblocked')).toMatchObject({ signalAborted: false, isHeld: true });
      expect(holder.messages.filter((m) => m.type === 'lost')).toEqual([]);
    });
  });
});
