/**
 * PostgreSQL: a release sends its NOTIFY only when some process waits for that lock id. A waiting
 * process marks the id (a shared advisory lock on its LISTEN connection) and the release notifies
 * only if it cannot take that key; a force-release always notifies (its holder must hear of it).
 *
 * The race this must survive: a waiter's attempt is refused, the holder releases, and only then
 * does the waiter's mark arrive. That release sent no notice, so the waiter must try again at once
 * after marking instead of sleeping until its next poll. The test forces exactly that order by
 * holding the waiter's LISTEN connection traffic in a proxy until the release has committed.
 * A semaphore's waiters wait for any of its permits, so they mark the semaphore id, and the release
 * of a permit's row (keyed `<id>/permit/<n>`) checks that id too.
 * (MariaDB and SQLite have no notices: their waiters poll, and nothing here applies.)
 */
import { once } from 'node:events';
import net from 'node:net';
import type { Client, Notification } from 'pg';
import type { DbMutex } from '../../src';
import { dialect, itIf, TestContext } from '../helpers/db';

const isPostgres = dialect === 'postgres';
/** Far beyond every test's timeout: a waiter that relies on polling here fails its test. */
const NEVER_POLL_MS = 600_000;

let ctx: TestContext | undefined;
let listener: Client;
const notices: Notification[] = [];

beforeAll(async () => {
  if (!isPostgres) return;
  ctx = await TestContext.create();
  listener = await ctx.client();
  listener.on('notification', (n) => notices.push(n));
  await listener.query('LISTEN "db_mutex_db_mutex_locks"');
});
afterAll(async () => {
  await ctx?.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves to 'not woken' after `ms`, unless `promise` settles first (then to its value). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'not woken'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'not woken'>((resolve) => {
    timer = setTimeout(() => resolve('not woken'), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Notices of `lockId` seen by the raw listener once the server had time to deliver them. */
async function noticesOf(lockId: string): Promise<number> {
  // A round trip on the listening connection: notices committed before it arrive before its answer.
  await listener.query('SELECT 1');
  return notices.filter((n) => n.payload?.endsWith(lockId)).length;
}

/** Resolves on the first refusal `m` reports for `lockId`, running `then` synchronously first. */
function onFirstRefusal(m: DbMutex, lockId: string, then: () => void = () => undefined): Promise<void> {
  return new Promise((resolve) => {
    const handler = (e: { lockId: string }) => {
      if (e.lockId !== lockId) return;
      m.off('contended', handler);
      then();
      resolve();
    };
    m.on('contended', handler);
  });
}

/**
 * A TCP proxy to the database whose client-to-server direction can be held: bytes sent while held
 * are delivered, in order, once it is let go.
 */
async function holdableProxy(targetUrl: string): Promise<{ url: string; hold(): void; letGo(): void; close(): Promise<void> }> {
  const target = new URL(targetUrl);
  let held = false;
  const queued: (() => void)[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (held) queued.push(() => upstream.write(chunk));
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    hold: () => {
      held = true;
    },
    letGo: () => {
      held = false;
      for (const write of queued.splice(0)) write();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('release notices only when someone waits (PostgreSQL)', () => {
  itIf(isPostgres)('sends no notice for a release nobody waits for', async () => {
    const m = await ctx!.mutex({ holder: 'alone' });
    for (let i = 0; i < 3; i++) await (await m.acquire('nobody-waits')).release();
    expect(await noticesOf('nobody-waits')).toBe(0);
  });

  itIf(isPostgres)('notifies the release of a lock another process waits for, and the waiter gets it long before its poll', async () => {
    const holder = await ctx!.mutex({ holder: 'holder' });
    // listenIdleMs: how long a mark outlives the last wait for its lock id.
    const waiter = await ctx!.mutex({ holder: 'waiter', pollIntervalMs: NEVER_POLL_MS, listenIdleMs: 300 });
    const held = await holder.acquire('awaited');
    const refused = onFirstRefusal(waiter, 'awaited');
    const waiting = waiter.acquire('awaited', { waitMs: 60_000 });
    await refused;
    // The waiter marks the id right after its refusal; give the mark time to land, then release.
    await sleep(300);
    await held.release();
    const lock = await waiting;
    expect(await noticesOf('awaited')).toBe(1);
    // Its own release right after the wait still notifies: the mark outlives the wait by listenIdleMs.
    await lock.release();
    expect(await noticesOf('awaited')).toBe(2);
    // Nobody has waited for it for longer than listenIdleMs: the next release is quiet again.
    await sleep(1500);
    await (await holder.acquire('awaited')).release();
    expect(await noticesOf('awaited')).toBe(2);
  }, 30_000);

  itIf(isPostgres)('keeps the mark of a lock id only for listenIdleMs after its last waiter, then gives it back', async () => {
    const holder = await ctx!.mutex({ holder: 'holder' });
    const waiter = await ctx!.mutex({ holder: 'sticky', pollIntervalMs: NEVER_POLL_MS, listenIdleMs: 1000 });
    // Held all along, so the waiter's LISTEN connection stays open: only the mark may go.
    const keepsListening = await waiter.acquire('keeps-listening');
    const marks = async () =>
      Number(
        // Only this id's marks in this database: test files running alongside mark their own ids.
        (
          await listener.query(
            `SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND objsubid = 2 AND objid::bigint = (hashtext($1)::bigint & 4294967295)`,
            ['sticky'],
          )
        ).rows[0].n,
      );
    const held = await holder.acquire('sticky');
    const refused = onFirstRefusal(waiter, 'sticky');
    const waiting = waiter.acquire('sticky', { waitMs: 60_000 });
    await refused;
    await sleep(300);
    expect(await marks()).toBe(1);
    await held.release();
    await (await waiting).release();
    // Right after the wait the mark stays (the next wait for this id needs no new mark)...
    expect(await marks()).toBe(1);
    await (await holder.acquire('sticky')).release();
    // (the holder's release, the waiter's own, and this one)
    expect(await noticesOf('sticky')).toBe(3);
    // ...and is given back once nobody waited for it for listenIdleMs, although the connection stays.
    const deadline = performance.now() + 10_000;
    while ((await marks()) > 0 && performance.now() < deadline) await sleep(100);
    expect(await marks()).toBe(0);
    await (await holder.acquire('sticky')).release();
    expect(await noticesOf('sticky')).toBe(3);
    expect(keepsListening.isHeld()).toBe(true);
    await keepsListening.release();
  }, 30_000);

  itIf(isPostgres)('sends no notice for the release of a permit nobody waits for', async () => {
    const m = await ctx!.mutex({ holder: 'alone' });
    for (let i = 0; i < 3; i++) await (await m.acquireSemaphore('quiet-sem', { limit: 2 })).release();
    expect(await noticesOf('quiet-sem/permit/0')).toBe(0);
  });

  itIf(isPostgres)('wakes a process waiting on a full semaphore by the notice of a permit released in another process', async () => {
    const holder = await ctx!.mutex({ holder: 'permit-holder' });
    const waiter = await ctx!.mutex({ holder: 'permit-waiter', pollIntervalMs: NEVER_POLL_MS });
    const first = await holder.acquireSemaphore('full-sem', { limit: 2 });
    const second = await holder.acquireSemaphore('full-sem', { limit: 2 });
    const refused = onFirstRefusal(waiter, 'full-sem');
    const waiting = waiter.acquireSemaphore('full-sem', { limit: 2, waitMs: 60_000 });
    // Closed by the cleanup if the test fails while it still waits.
    waiting.catch(() => undefined);
    await refused;
    // The waiter marks the semaphore id right after its refusal; give the mark time to land.
    await sleep(300);
    await second.release();
    // Only a notice can wake it this soon: its next poll is NEVER_POLL_MS away.
    const permit = await within(waiting, 10_000);
    expect(permit).not.toBe('not woken');
    expect(await noticesOf('full-sem/permit/1')).toBe(1);
    if (permit !== 'not woken') {
      expect(permit.lockId).toBe('full-sem/permit/1');
      await permit.release();
    }
    await first.release();
  }, 30_000);

  itIf(isPostgres)("wakes a lock waiting for a held permit's own row key by a notice when that permit is released", async () => {
    const holder = await ctx!.mutex({ holder: 'permit-holder' });
    const waiter = await ctx!.mutex({ holder: 'key-waiter', pollIntervalMs: NEVER_POLL_MS });
    const permit = await holder.acquireSemaphore('keyed-sem', { limit: 1 });
    const refused = onFirstRefusal(waiter, 'keyed-sem/permit/0');
    const waiting = waiter.acquire('keyed-sem/permit/0', { waitMs: 60_000 });
    waiting.catch(() => undefined);
    await refused;
    await sleep(300);
    await permit.release();
    const lock = await within(waiting, 10_000);
    expect(lock).not.toBe('not woken');
    if (lock !== 'not woken') await lock.release();
  }, 30_000);

  itIf(isPostgres)('keeps the mark of an id while a semaphore of that id is still awaited, after the lock of that id was won', async () => {
    const holder = await ctx!.mutex({ holder: 'both-holder' });
    const waiter = await ctx!.mutex({ holder: 'both-waiter', pollIntervalMs: NEVER_POLL_MS, listenIdleMs: 300 });
    const lockHeld = await holder.acquire('both');
    const permitHeld = await holder.acquireSemaphore('both', { limit: 1 });
    const lockRefused = onFirstRefusal(waiter, 'both');
    const lockWaiting = waiter.acquire('both', { waitMs: 60_000 });
    await lockRefused;
    const semaphoreWaiting = waiter.acquireSemaphore('both', { limit: 1, waitMs: 60_000 });
    semaphoreWaiting.catch(() => undefined);
    await sleep(300);
    await lockHeld.release();
    await (await lockWaiting).release();
    // Longer than listenIdleMs: a mark given back with the lock's last waiter would be gone by now.
    await sleep(1000);
    await permitHeld.release();
    const permit = await within(semaphoreWaiting, 10_000);
    expect(permit).not.toBe('not woken');
    if (permit !== 'not woken') await permit.release();
  }, 30_000);

  itIf(isPostgres)('always notifies a force-release, so its holder learns of it at once', async () => {
    const holder = await ctx!.mutex({ holder: 'forced' });
    const operator = await ctx!.mutex({ holder: 'operator' });
    // With waitMs, acquire returns only once its LISTEN connection is up (a free lock is still taken at once).
    const held = await holder.acquire('forced', { waitMs: 1000 });
    const aborted = new Promise<number>((resolve) => held.signal.addEventListener('abort', () => resolve(performance.now())));
    const started = performance.now();
    const result = await operator.forceRelease({ lockId: 'forced', operator: 'ops', reason: 'test' });
    expect(result.status).toBe('released');
    expect(await noticesOf('forced')).toBe(1);
    // By the notice, long before its next renewal (a third of the 60 s lease).
    expect((await aborted) - started).toBeLessThan(10_000);
  }, 30_000);

  itIf(isPostgres)('hands the lock at once to a waiter whose mark arrives only after the release (no notice was sent)', async () => {
    const proxy = await holdableProxy(ctx!.db.directUrl);
    try {
      const holder = await ctx!.mutex({ holder: 'holder' });
      // Only the waiter's LISTEN connection (and so its marks) goes through the proxy.
      const waiter = await ctx!.mutex({ holder: 'late-marker', pollIntervalMs: NEVER_POLL_MS, listenUrl: proxy.url });
      const held = await holder.acquire('late-mark');
      let released: Promise<void> = Promise.resolve();
      // Synchronously on the refusal, before the waiter can send its mark: hold the mark back until
      // the holder's release (on its own connection) has committed.
      const refused = onFirstRefusal(waiter, 'late-mark', () => {
        proxy.hold();
        released = held.release().finally(() => proxy.letGo());
      });
      const started = performance.now();
      const waiting = waiter.acquire('late-mark', { waitMs: 60_000 });
      await refused;
      await released;
      const lock = await waiting; // sleeping until the next poll would take NEVER_POLL_MS
      expect(lock.isHeld()).toBe(true);
      expect(performance.now() - started).toBeLessThan(NEVER_POLL_MS / 10);
      // The release found no mark, so it sent no notice: the hand-over came from trying again.
      expect(await noticesOf('late-mark')).toBe(0);
      await lock.release();
    } finally {
      await proxy.close();
    }
  }, 30_000);

  itIf(isPostgres)('gives every process waiting on one lock its turn by notices alone (separate connections, no polling)', async () => {
    const waiters = await Promise.all([1, 2, 3].map((i) => ctx!.mutex({ holder: `w${i}`, pollIntervalMs: NEVER_POLL_MS })));
    const holder = await ctx!.mutex({ holder: 'first' });
    const held = await holder.acquire('turns');
    const order: string[] = [];
    const all = waiters.map((w, i) =>
      w.acquire('turns', { waitMs: 60_000 }).then(async (lock) => {
        order.push(`w${i + 1}`);
        await sleep(20);
        await lock.release();
      }),
    );
    await sleep(500);
    await held.release();
    await Promise.all(all);
    expect(order.sort()).toEqual(['w1', 'w2', 'w3']);
  }, 30_000);
});
