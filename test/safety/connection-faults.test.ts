/**
 * Claim 2 (connection faults): when the database kills the heartbeat's connections the lease is renewed
 * on fresh ones, or the loss is reported; when the database turns slow, lock statements fail after
 * statementTimeoutMs instead of hanging, and a lease that cannot be renewed is reported lost.
 */
import type { DbMutex, DbMutexLostReason } from '../../src';
import { TestContext } from '../helpers/db';
import { describeSafety, safetyDialect, type SafetyDialect } from './helpers/dialect';
import { note } from './helpers/report';
import { pause, watchHeld } from './helpers/watch';

let ctx: TestContext;
let db: SafetyDialect;
let observer: DbMutex;

describeSafety('connection faults', () => {
  beforeAll(async () => {
    ctx = await TestContext.create();
    observer = await ctx.mutex();
    db = safetyDialect(ctx);
  });
  afterAll(() => ctx?.cleanup());

  function recordEvents(mutex: DbMutex) {
    const events = { lost: [] as DbMutexLostReason[], renewalFailed: [] as unknown[] };
    mutex.on('lost', (e) => events.lost.push(e.reason));
    mutex.on('renewalFailed', (e) => events.renewalFailed.push(e.error));
    return events;
  }

  describe('the heartbeat backend terminated by the server (pg_terminate_backend)', () => {
    it('renews on a fresh connection and keeps the lock, listener included', async () => {
      const label = 'safety-terminate-once';
      const victim = await ctx.directMutex({ leaseSeconds: 2 }, db.labelledConnection(label));
      const events = recordEvents(victim);
      const lock = await victim.acquire('terminated-once');
      const watch = watchHeld(lock, observer);
      await pause(300);
      expect(await db.countBackends(label)).toBeGreaterThan(0);
      const killed = await db.terminateBackends(label);
      const killedAtMs = await ctx.sql.dbNowMs();
      // Two renewal periods (lease / 3 each): the first may fail on a dead connection, the next must not.
      await pause(1500);
      await watch.stop();
      note(`terminated ${killed} backends of a holder once: held afterwards ${String(lock.isHeld())}, renewal failures ${events.renewalFailed.length}`);
      expect(watch.silentLosses).toEqual([]);
      expect(events.lost).toEqual([]);
      expect(lock.isHeld()).toBe(true);
      const row = await observer.inspect('terminated-once');
      expect(row?.fencingToken).toBe(lock.fencingToken);
      expect(row!.heartbeatAt.getTime()).toBeGreaterThan(killedAtMs);
      // The release notice channel came back too: an operator's force-release reaches the holder at once.
      await waitUntil(async () => (await db.countListenerBackends(label)) === 1, 8000);
      await observer.forceRelease({ lockId: 'terminated-once', operator: 'safety test' });
      await waitUntil(async () => lock.signal.aborted, 3000);
      expect(lock.signal.reason).toMatchObject({ name: 'DbMutexLostError', reason: 'released-by-other' });
      await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError', reason: 'released-by-other' });
    });

    it('recovers within the lease or reports the loss when its backends keep being terminated', async () => {
      const label = 'safety-terminate-often';
      const victim = await ctx.directMutex({ leaseSeconds: 2 }, db.labelledConnection(label));
      const events = recordEvents(victim);
      const lock = await victim.acquire('terminated-often');
      const watch = watchHeld(lock, observer, 50);
      let killed = 0;
      // For longer than the lease, every connection the holder has is killed every 250 ms.
      for (let i = 0; i < 12; i++) {
        killed += await db.terminateBackends(label);
        await pause(250);
      }
      const stoppedAtMs = await ctx.sql.dbNowMs();
      await pause(1500);
      await watch.stop();
      note(
        `terminated ${killed} backends over 3 s (lease 2 s): held afterwards ${String(lock.isHeld())}, ` +
          `renewal failures ${events.renewalFailed.length}, lost ${JSON.stringify(events.lost)}, samples ${watch.samples}`,
      );
      expect(killed).toBeGreaterThan(0);
      expect(watch.silentLosses).toEqual([]);
      if (lock.isHeld()) {
        const row = await observer.inspect('terminated-often');
        expect(row?.fencingToken).toBe(lock.fencingToken);
        expect(row!.heartbeatAt.getTime()).toBeGreaterThan(stoppedAtMs);
        expect(events.lost).toEqual([]);
        await lock.release();
      } else {
        expect(lock.signal.aborted).toBe(true);
        expect(events.lost).toHaveLength(1);
        await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError' });
      }
    });
  });

  describe('a slow database (a trigger that sleeps in every INSERT/UPDATE of the lock table)', () => {
    const DELAY_MS = 3000;
    let slow: DbMutex;

    beforeAll(async () => {
      slow = await ctx.mutex({ statementTimeoutMs: 300, leaseSeconds: 1.5 });
      await db.installSlowTrigger(slow.options.tableName);
    });
    afterEach(async () => {
      await db.setSlowness(0);
    });

    it('fails an acquisition after statementTimeoutMs instead of hanging', async () => {
      await db.setSlowness(DELAY_MS);
      const started = performance.now();
      const error = await slow.acquire('slow-acquire').catch((e: unknown) => e);
      const elapsedMs = performance.now() - started;
      note(`acquire against a ${DELAY_MS} ms statement, statementTimeoutMs 300: failed after ${Math.round(elapsedMs)} ms with "${String((error as Error).message)}"`);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(/timeout/i);
      expect(elapsedMs).toBeLessThan(DELAY_MS);
    });

    // Found by this suite (the clean-up used to run once, at once, before the server committed the
    // statement the client had given up on, so the lock stayed taken by nobody for its whole TTL).
    it('removes the row a timed-out acquisition leaves behind once the server commits it', async () => {
      const ghostly = await ctx.mutex({ statementTimeoutMs: 300, heartbeat: false, ttlSeconds: 600, holder: 'ghost-check' });
      await db.setSlowness(DELAY_MS);
      await expect(ghostly.acquire('slow-ghost')).rejects.toThrow(/timeout/i);
      await db.setSlowness(0);
      // The server finishes the statement the client gave up on DELAY_MS after it began, and commits
      // a row nobody holds; the library keeps trying to remove it until it is gone.
      await pause(DELAY_MS);
      const committedAt = performance.now();
      await waitUntil(async () => (await observer.inspect('slow-ghost')) === null, 5000);
      note(`timed-out acquire (heartbeat off, ttl 600 s): no row left ${Math.round(performance.now() - committedAt)} ms after the server committed it`);
      await (await observer.acquire('slow-ghost')).release();
    });

    it('fails a waiting acquisition after statementTimeoutMs too, not after waitMs', async () => {
      await db.setSlowness(DELAY_MS);
      const started = performance.now();
      await expect(slow.acquire('slow-wait', { waitMs: 60_000 })).rejects.toThrow(/timeout/i);
      expect(performance.now() - started).toBeLessThan(DELAY_MS);
    });

    it('fails extend() after statementTimeoutMs', async () => {
      const lock = await slow.acquire('slow-extend', { heartbeat: false, ttlSeconds: 30 });
      await db.setSlowness(DELAY_MS);
      const started = performance.now();
      await expect(lock.extend(60)).rejects.toThrow(/timeout/i);
      expect(performance.now() - started).toBeLessThan(DELAY_MS);
      await db.setSlowness(0);
      await pause(DELAY_MS);
      await lock.release();
    });

    it('reports a lease it cannot renew as lost (unreachable) within the lease', async () => {
      const events = recordEvents(slow);
      const lock = await slow.acquire('slow-renew');
      const watch = watchHeld(lock, observer, 50);
      await db.setSlowness(DELAY_MS);
      const slowSinceMs = performance.now();
      await waitUntil(async () => lock.signal.aborted, 5000);
      const toldAfterMs = performance.now() - slowSinceMs;
      await watch.stop();
      note(`renewals slowed to ${DELAY_MS} ms (lease 1.5 s, statementTimeoutMs 300): told after ${Math.round(toldAfterMs)} ms, ${events.renewalFailed.length} renewal failures before`);
      expect(watch.silentLosses).toEqual([]);
      expect(events.renewalFailed.length).toBeGreaterThan(0);
      expect(events.lost).toEqual(['unreachable']);
      expect(lock.signal.reason).toMatchObject({ name: 'DbMutexLostError', reason: 'unreachable' });
      // The lease runs from the last renewal sent, which was before the slowdown began; the margin is
      // only for timer latency on a loaded machine.
      expect(toldAfterMs).toBeLessThanOrEqual(1500 + 250);
      await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError', reason: 'unreachable' });
    });
  });
});

async function waitUntil(condition: () => Promise<boolean> | boolean, timeout: number): Promise<void> {
  const deadline = performance.now() + timeout;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeout} ms`);
    await pause(25);
  }
}
