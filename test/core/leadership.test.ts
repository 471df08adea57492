/**
 * mutex.lead(): one leader at a time among candidates on separate DbMutexes (separate pools, so
 * separate connections), terms that end with their signal, and what onElected's return or throw means.
 */
import { DbMutexDemotedError, type DbMutex, type DbMutexDemotedReason, type DbMutexHeldLock, type Leadership } from '../../src';
import { TestContext } from '../helpers/db';
import { sleep } from '../helpers/wait';

let ctx: TestContext;
let a: DbMutex;
let b: DbMutex;
const LEASE_SECONDS = 2;
const running: Leadership[] = [];

function track(l: Leadership): Leadership {
  running.push(l);
  return l;
}

/** Resolves with the next event of that name, or fails after `ms` (a hang guard, not a claim). */
function next<T>(emitter: Leadership, event: 'elected' | 'demoted' | 'error', ms = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event within ${ms} ms`)), ms);
    emitter.once(event, (e: unknown) => {
      clearTimeout(timer);
      resolve(e as T);
    });
  });
}

beforeAll(async () => {
  ctx = await TestContext.create();
  a = await ctx.mutex({ pollIntervalMs: 100, holder: 'a' });
  b = await ctx.mutex({ pollIntervalMs: 100, holder: 'b' });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((l) => l.stop()));
});
afterAll(() => ctx?.cleanup());

describe('mutex.lead()', () => {
  it('returns a Leadership at once, elects one of two candidates, and hands over to the other when the leader stops', async () => {
    const electedBy: string[] = [];
    const onElected = (who: string) => (lock: DbMutexHeldLock) => {
      electedBy.push(`${who}:${lock.fencingToken}`);
    };
    const first = track(a.lead('hand-over', { onElected: onElected('a'), leaseSeconds: LEASE_SECONDS }));
    expect(first.isLeader()).toBe(false);
    const elected = await next<{ epoch: number; holder: string }>(first, 'elected');
    expect(elected.holder).toBe('a');
    const second = track(b.lead('hand-over', { onElected: onElected('b'), leaseSeconds: LEASE_SECONDS }));
    // The second candidate waits while the first leads (it renews several times meanwhile).
    await sleep(LEASE_SECONDS * 1000);
    expect(first.isLeader()).toBe(true);
    expect(second.isLeader()).toBe(false);
    expect(second.current()).toBeNull();
    const lock = first.current()!;
    expect(lock.fencingToken).toBe(elected.epoch);

    const demoted = next<{ reason: DbMutexDemotedReason; epoch: number }>(first, 'demoted');
    const takeover = next<{ epoch: number; holder: string }>(second, 'elected');
    await first.stop();
    expect(await demoted).toMatchObject({ reason: 'stopped', epoch: elected.epoch });
    expect(lock.signal.aborted).toBe(true);
    expect(lock.signal.reason).toBeInstanceOf(DbMutexDemotedError);
    expect(lock.signal.reason).toMatchObject({ code: 'DB_MUTEX_DEMOTED', reason: 'stopped', epoch: elected.epoch });
    expect(first.isLeader()).toBe(false);
    const next2 = await takeover;
    expect(next2.holder).toBe('b');
    // The epoch is the fencing token: strictly greater for the next leader.
    expect(next2.epoch).toBeGreaterThan(elected.epoch);
    expect(electedBy).toEqual([`a:${elected.epoch}`, `b:${next2.epoch}`]);
    expect((await ctx.sql.lockRows('hand-over')).map((r) => r.holder)).toEqual(['b']);
  });

  it('keeps leadership after onElected returns, until the lock is lost', async () => {
    const l = track(a.lead('returns', { onElected: () => 'done', leaseSeconds: LEASE_SECONDS }));
    await next(l, 'elected');
    // Past two leases: the heartbeat keeps the term alive although onElected is long over.
    await sleep(LEASE_SECONDS * 2000 + 500);
    expect(l.isLeader()).toBe(true);
    expect(await ctx.sql.lockRows('returns')).toHaveLength(1);
  });

  it('steps down when onElected throws, reports the error, and campaigns again after retryDelayMs', async () => {
    let calls = 0;
    const boom = new Error('boom');
    const l = track(
      a.lead('throws', {
        onElected: async () => {
          calls++;
          if (calls === 1) throw boom;
        },
        retryDelayMs: 300,
      }),
    );
    const errors: unknown[] = [];
    l.on('error', (e) => errors.push(e));
    const demoted = await next<{ reason: DbMutexDemotedReason; error: unknown; epoch: number }>(l, 'demoted');
    expect(demoted).toMatchObject({ reason: 'failed', error: boom });
    expect(errors).toEqual([boom]);
    const again = await next<{ epoch: number }>(l, 'elected');
    expect(again.epoch).toBeGreaterThan(demoted.epoch);
    expect(calls).toBe(2);
    expect(l.isLeader()).toBe(true);
  });

  it('lets a rival lead after onElected threw, since the failed leader waits retryDelayMs before it campaigns again', async () => {
    const failing = track(a.lead('throws-rival', { onElected: () => Promise.reject(new Error('no')), retryDelayMs: 5000 }));
    failing.on('error', () => undefined);
    await next(failing, 'elected');
    const rival = track(b.lead('throws-rival', { onElected: () => undefined }));
    const elected = await next<{ holder: string }>(rival, 'elected');
    expect(elected.holder).toBe('b');
    expect(failing.isLeader()).toBe(false);
  });

  it('aborts the leader signal when an operator force-releases the lock, and campaigns again', async () => {
    const locks: DbMutexHeldLock[] = [];
    const l = track(a.lead('forced', { onElected: (lock) => void locks.push(lock), leaseSeconds: LEASE_SECONDS }));
    const first = await next<{ epoch: number }>(l, 'elected');
    const demoted = next<{ reason: DbMutexDemotedReason }>(l, 'demoted');
    const again = next<{ epoch: number }>(l, 'elected');
    // From another DbMutex, as the dashboard or CLI would.
    await b.forceRelease({ lockId: 'forced', operator: 'test', reason: 'leader election test' });
    expect(await demoted).toMatchObject({ reason: 'released-by-other' });
    expect(locks[0]!.signal.aborted).toBe(true);
    expect((locks[0]!.signal.reason as DbMutexDemotedError).cause).toMatchObject({ name: 'DbMutexLostError', reason: 'released-by-other' });
    expect((await again).epoch).toBeGreaterThan(first.epoch);
    expect(locks).toHaveLength(2);
  });

  it('aborts the leader signal when the lease runs out and campaigns again', async () => {
    const locks: DbMutexHeldLock[] = [];
    const l = track(a.lead('expires', { onElected: (lock) => void locks.push(lock), leaseSeconds: LEASE_SECONDS }));
    await next(l, 'elected');
    const demoted = next<{ reason: DbMutexDemotedReason }>(l, 'demoted');
    // The row's lease ends by the database clock; the next renewal finds it expired (or gone).
    await ctx.sql.expireLock('expires');
    expect(['expired', 'released-by-other']).toContain((await demoted).reason);
    expect(locks[0]!.signal.aborted).toBe(true);
    await next(l, 'elected');
    expect(locks).toHaveLength(2);
  });

  it('resigns when onElected releases its lock, and campaigns again after retryDelayMs', async () => {
    let calls = 0;
    const l = track(
      a.lead('resigns', {
        onElected: async (lock) => {
          calls++;
          if (calls === 1) await lock.release();
        },
        retryDelayMs: 200,
      }),
    );
    expect(await next(l, 'demoted')).toMatchObject({ reason: 'resigned' });
    await next(l, 'elected');
    expect(calls).toBe(2);
  });

  it('ends the term with reason closed when the DbMutex closes, and stops campaigning', async () => {
    const own = await ctx.mutex({ pollIntervalMs: 100 });
    let signal: AbortSignal | null = null;
    const l = own.lead('closing', { onElected: (lock) => void (signal = lock.signal) });
    await next(l, 'elected');
    const demoted = next(l, 'demoted');
    await own.close();
    expect(await demoted).toMatchObject({ reason: 'closed' });
    expect(signal!.aborted).toBe(true);
    await l.stop();
    expect(l.isLeader()).toBe(false);
    expect(await ctx.sql.lockRows('closing')).toEqual([]);
    expect(() => own.lead('closing', { onElected: () => undefined })).toThrow(expect.objectContaining({ code: 'DB_MUTEX_CLOSED' }) as Error);
  });

  it('stops a candidate that is still campaigning, and stop() twice does no harm', async () => {
    const leader = track(a.lead('campaigning', { onElected: () => undefined }));
    await next(leader, 'elected');
    const elected = jest.fn();
    const candidate = b.lead('campaigning', { onElected: elected });
    await sleep(300);
    await candidate.stop();
    await candidate.stop();
    await leader.stop();
    await sleep(300);
    expect(elected).not.toHaveBeenCalled();
    expect(await ctx.sql.lockRows('campaigning')).toEqual([]);
  });

  it('steps down when the caller signal aborts', async () => {
    const controller = new AbortController();
    const l = track(a.lead('caller-signal', { onElected: () => undefined, signal: controller.signal }));
    await next(l, 'elected');
    const demoted = next(l, 'demoted');
    controller.abort();
    expect(await demoted).toMatchObject({ reason: 'stopped' });
    await l.stop();
    expect(await ctx.sql.lockRows('caller-signal')).toEqual([]);
  });

  it('does not start a new term before the previous onElected has settled', async () => {
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    const l = track(
      a.lead('one-term-at-a-time', {
        onElected: async (lock) => {
          calls++;
          active++;
          maxActive = Math.max(maxActive, active);
          // Ignores the abort for a while, as slow cleanup would.
          await new Promise<void>((resolve) => lock.signal.addEventListener('abort', () => setTimeout(resolve, 1000), { once: true }));
          active--;
        },
        // Elsewhere than on PostgreSQL a force-release is learnt at the next renewal.
        leaseSeconds: LEASE_SECONDS,
      }),
    );
    await next(l, 'elected');
    await b.forceRelease({ lockId: 'one-term-at-a-time', operator: 'test' });
    await next(l, 'elected');
    expect(calls).toBe(2);
    expect(maxActive).toBe(1);
  });

  it('refuses bad arguments with a TypeError or RangeError naming them, before any SQL', () => {
    const onElected = () => undefined;
    expect(() => a.lead('', { onElected })).toThrow(/electionId/);
    expect(() => a.lead('x', { onElected: 'no' as unknown as () => void })).toThrow(TypeError);
    expect(() => a.lead('x', { onElected, leaseSeconds: 0 })).toThrow(RangeError);
    expect(() => a.lead('x', { onElected, retryDelayMs: -1 })).toThrow(/retryDelayMs/);
    expect(() => a.lead('x', { onElected, leaseSecond: 5 } as never)).toThrow(/did you mean "leaseSeconds"/);
    expect(() => a.lead('x', null as never)).toThrow(TypeError);
  });
});
