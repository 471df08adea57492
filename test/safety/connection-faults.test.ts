/**
 * Claim 2 (connection faults), each database with its own faults:
 * - the lock's connections killed by the server (PostgreSQL `pg_terminate_backend`, MariaDB `KILL
 *   CONNECTION`): the lease is renewed on fresh connections, or the loss is reported;
 * - a slow database (PostgreSQL and MariaDB: a trigger that sleeps in every INSERT/UPDATE of the lock
 *   table; SQLite: another process holding the file's write lock): lock statements fail after
 *   statementTimeoutMs instead of hanging, and a lease that cannot be renewed is reported lost before
 *   anyone else can take the lock;
 * - SQLite's own: a process SIGKILLed in the middle of a write, the database file turned read-only,
 *   its disk full, and WAL checkpoints running under contention.
 * Throughout, a watcher compares the holder's belief with the database ("never silently held").
 */
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { initDbMutex, type DbMutex, type DbMutexLostReason } from '../../src';
import { ensureBuilt } from '../helpers/built';
import { dialect, itIf, makeSequelize, notifies, TestContext } from '../helpers/db';
import { ChildGroup, type Child } from '../helpers/children';
import { checkTokenOrder, findOverlaps, findTokenOrderViolations, type Section } from '../helpers/contention';
import { connectionKiller, slowdown, SLOW_STATEMENT_MS, type ConnectionKiller, type Slowdown } from '../helpers/connection-faults';
import { note } from '../helpers/report';
import { fillUp, mountTinyFilesystem, rootFaultsUnavailable, setImmutable, sqliteFiles, SqliteWriter } from '../helpers/sqlite-faults';
import { watchHeld, type HeldWatch } from '../helpers/held-watch';
import { sleep, waitUntil } from '../helpers/wait';

let ctx: TestContext;
let observer: DbMutex;
const children = new ChildGroup();
const isSqlite = dialect === 'sqlite';

function recordEvents(mutex: DbMutex) {
  const events = { lost: [] as DbMutexLostReason[], lostAtMs: [] as number[], renewalFailed: [] as unknown[] };
  mutex.on('lost', (e) => {
    events.lost.push(e.reason);
    events.lostAtMs.push(performance.now());
  });
  mutex.on('renewalFailed', (e) => events.renewalFailed.push(e.error));
  return events;
}

/** An Error (the driver's may come from another realm than the test's, so not `instanceof`). */
function expectError(value: unknown): void {
  expect(Object.prototype.toString.call(value)).toBe('[object Error]');
}

/** The watcher took samples and none of them found the lock expired or taken while it was believed held. */
function expectNeverSilentlyHeld(watch: HeldWatch): void {
  expect(watch.samples).toBeGreaterThan(0);
  expect(watch.silentLosses).toEqual([]);
}

describe(`connection faults on ${dialect}`, () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    observer = await ctx.mutex();
  }, 180_000);
  afterAll(async () => {
    await children.dispose();
    await ctx?.cleanup();
  });

  describe('the lock\u2019s connections killed by the server', () => {
    // SQLite has no server and no connections to kill; its nearest faults are the SQLite ones below.
    let killing: ConnectionKiller | null = null;
    const killer = (): ConnectionKiller => (killing ??= connectionKiller(ctx)!);
    const serverDb = !isSqlite;

    itIf(serverDb)('renews on a fresh connection and keeps the lock (and, on PostgreSQL, its release notices)', async () => {
      const label = 'safety-terminate-once';
      const victim = await ctx.directMutex({ leaseSeconds: 2 }, killer().labelledConnection(label));
      const events = recordEvents(victim);
      const lock = await victim.acquire('terminated-once');
      const watch = watchHeld(lock, observer);
      await sleep(300);
      expect(await killer().count(label)).toBeGreaterThan(0);
      const killed = await killer().terminate(label);
      const killedAtMs = await ctx.sql.dbNowMs();
      // Two renewal periods (lease / 3 each): the first may fail on a dead connection, the next must not.
      await sleep(1500);
      await watch.stop();
      note(`${killer().how} on ${killed} connections of a holder once: held afterwards ${String(lock.isHeld())}, renewal failures ${events.renewalFailed.length}, ${watch.samples} samples`);
      expect(killed).toBeGreaterThan(0);
      expectNeverSilentlyHeld(watch);
      expect(events.lost).toEqual([]);
      expect(lock.isHeld()).toBe(true);
      const row = await observer.inspect('terminated-once');
      expect(row?.fencingToken).toBe(lock.fencingToken);
      expect(row!.heartbeatAt.getTime()).toBeGreaterThan(killedAtMs);
      // An operator's force-release still reaches the holder: at once through the release notice
      // (PostgreSQL: the LISTEN connection came back too), elsewhere at the next renewal.
      const listeners = killer().countListeners(label);
      if (listeners) await waitUntil(async () => (await killer().countListeners(label)) === 1, 8000, 'the LISTEN connection to come back', 25);
      await observer.forceRelease({ lockId: 'terminated-once', operator: 'safety test' });
      await waitUntil(async () => lock.signal.aborted, notifies ? 3000 : 2000 + 3000, 'the holder to be told', 25);
      expect(lock.signal.reason).toMatchObject({ name: 'DbMutexLostError', reason: 'released-by-other' });
      await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError', reason: 'released-by-other' });
    });

    itIf(serverDb)('recovers within the lease or reports the loss when its connections keep being killed', async () => {
      const label = 'safety-terminate-often';
      const victim = await ctx.directMutex({ leaseSeconds: 2 }, killer().labelledConnection(label));
      const events = recordEvents(victim);
      const lock = await victim.acquire('terminated-often');
      const watch = watchHeld(lock, observer, 50);
      let killed = 0;
      // For longer than the lease, every connection the holder has is killed every 250 ms.
      for (let i = 0; i < 12; i++) {
        killed += await killer().terminate(label);
        await sleep(250);
      }
      const stoppedAtMs = await ctx.sql.dbNowMs();
      await sleep(1500);
      await watch.stop();
      note(
        `${killer().how} on ${killed} connections over 3 s (lease 2 s): held afterwards ${String(lock.isHeld())}, ` +
          `renewal failures ${events.renewalFailed.length}, lost ${JSON.stringify(events.lost)}, samples ${watch.samples}`,
      );
      expect(killed).toBeGreaterThan(0);
      expectNeverSilentlyHeld(watch);
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

  describe('a slow database', () => {
    const STATEMENT_TIMEOUT_MS = 300;
    let slow: DbMutex;
    let slowness: Slowdown;

    beforeAll(async () => {
      slow = await ctx.mutex({ statementTimeoutMs: STATEMENT_TIMEOUT_MS, leaseSeconds: 1.5, holder: 'slowed' });
      slowness = slowdown(ctx, children);
      await slowness.install(slow.options.tableName);
    });
    afterEach(() => slowness.end());

    it('fails an acquisition after statementTimeoutMs instead of hanging', async () => {
      await slowness.begin();
      const started = performance.now();
      const error = await slow.acquire('slow-acquire').catch((e: unknown) => e);
      const elapsedMs = performance.now() - started;
      note(`${slowness.how}: acquire with statementTimeoutMs ${STATEMENT_TIMEOUT_MS} failed after ${Math.round(elapsedMs)} ms with "${String((error as Error).message)}"`);
      expectError(error);
      expect((error as Error).message).toMatch(slowness.timeoutMessage);
      // The slowed statement would take SLOW_STATEMENT_MS (SQLite: forever): it was given up on, not waited for.
      expect(elapsedMs).toBeLessThan(SLOW_STATEMENT_MS);
    });

    // Found by this suite on PostgreSQL (the clean-up used to run once, at once, before the server
    // committed the statement the client had given up on, so the lock stayed taken by nobody for its
    // whole TTL). MariaDB's max_statement_time and SQLite's busy timeout end the statement on the
    // server's side (rolled back, or never begun): there the check is that nothing is left either.
    it('leaves no row behind from a timed-out acquisition, even one the server completes after the client gave up', async () => {
      const ghostly = await ctx.mutex({ statementTimeoutMs: STATEMENT_TIMEOUT_MS, heartbeat: false, ttlSeconds: 600, holder: 'ghost-check' });
      await slowness.begin();
      await expect(ghostly.acquire('slow-ghost')).rejects.toThrow(slowness.timeoutMessage);
      await slowness.end();
      // Where the server finishes the statement the client gave up on (PostgreSQL), it does so
      // SLOW_STATEMENT_MS after it began and commits a row nobody holds; the library keeps trying to
      // remove it until it is gone.
      await sleep(SLOW_STATEMENT_MS);
      const committedAt = performance.now();
      await waitUntil(async () => (await observer.inspect('slow-ghost')) === null, 5000, 'the ghost row to be removed', 25);
      note(`timed-out acquire (heartbeat off, ttl 600 s): no row left ${Math.round(performance.now() - committedAt)} ms after the slowed statement would have finished`);
      await (await observer.acquire('slow-ghost')).release();
    });

    it('leaves no semaphore permit behind from a timed-out acquisition, whichever permit the server took after the client gave up', async () => {
      const ghostly = await ctx.mutex({ statementTimeoutMs: STATEMENT_TIMEOUT_MS, heartbeat: false, ttlSeconds: 600, holder: 'ghost-permit' });
      await slowness.begin();
      await expect(ghostly.acquireSemaphore('slow-sem', { limit: 2 })).rejects.toThrow(slowness.timeoutMessage);
      await slowness.end();
      await sleep(SLOW_STATEMENT_MS);
      const committedAt = performance.now();
      await waitUntil(async () => (await observer.semaphores({ filter: 'slow-sem' })).length === 0, 5000, 'the ghost permit to be removed', 25);
      note(`timed-out semaphore acquire (heartbeat off, ttl 600 s): no permit left ${Math.round(performance.now() - committedAt)} ms after the slowed statement would have finished`);
      await (await observer.acquireSemaphore('slow-sem', { limit: 2 })).release();
    });

    it('fails a waiting acquisition after statementTimeoutMs too, not after waitMs', async () => {
      await slowness.begin();
      const started = performance.now();
      await expect(slow.acquire('slow-wait', { waitMs: 60_000 })).rejects.toThrow(slowness.timeoutMessage);
      expect(performance.now() - started).toBeLessThan(SLOW_STATEMENT_MS);
    });

    it('fails extend() after statementTimeoutMs', async () => {
      const lock = await slow.acquire('slow-extend', { heartbeat: false, ttlSeconds: 30 });
      await slowness.begin();
      const started = performance.now();
      await expect(lock.extend(60)).rejects.toThrow(slowness.timeoutMessage);
      expect(performance.now() - started).toBeLessThan(SLOW_STATEMENT_MS);
      await slowness.end();
      await sleep(SLOW_STATEMENT_MS);
      await lock.release();
    });

    it('reports a lease it cannot renew as lost (unreachable) before another process can take the lock', async () => {
      const events = recordEvents(slow);
      const lock = await slow.acquire('slow-renew');
      const watch = watchHeld(lock, observer, 50);
      // A rival in another DbMutex (its own pool), waiting all along: it gets the lock the moment the
      // database lets it, i.e. when the holder's row has expired by the database clock.
      const rival = await ctx.mutex({ holder: 'rival', pollIntervalMs: 25 });
      let rivalAtMs = Infinity;
      const rivalGot = rival.acquire('slow-renew', { waitMs: 30_000, heartbeat: false }).then((l) => {
        rivalAtMs = performance.now();
        return l;
      });
      // Only the holder's statements are slowed where the database can single them out; SQLite's write
      // lock stops the rival too, until the slowdown ends.
      await slowness.begin('slowed');
      const slowSinceMs = performance.now();
      await waitUntil(async () => lock.signal.aborted, 10_000, 'the holder to be told', 25);
      if (!slowness.perHolder) await slowness.end();
      const rivalLock = await rivalGot;
      await watch.stop();
      const toldAfterMs = events.lostAtMs[0]! - slowSinceMs;
      note(
        `${slowness.how} (lease 1.5 s, statementTimeoutMs ${STATEMENT_TIMEOUT_MS}): holder told after ${Math.round(toldAfterMs)} ms, ` +
          `${events.renewalFailed.length} renewal failures before; the waiting rival got the lock ${Math.round(rivalAtMs - events.lostAtMs[0]!)} ms after that`,
      );
      expectNeverSilentlyHeld(watch);
      expect(events.renewalFailed.length).toBeGreaterThan(0);
      expect(events.lost).toEqual(['unreachable']);
      expect(lock.signal.reason).toMatchObject({ name: 'DbMutexLostError', reason: 'unreachable' });
      // The claim "within the lease", measured against the database's own decision rather than a
      // wall-clock bound: the holder was told before the rival's acquisition (decided by the database
      // clock) came back, both seen by this one process.
      expect(events.lostAtMs[0]!).toBeLessThan(rivalAtMs);
      expect(rivalLock.fencingToken).toBeGreaterThan(lock.fencingToken);
      await rivalLock.release();
      await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError', reason: 'unreachable' });
    });
  });

  describe('SQLite\u2019s own faults', () => {
    const onSqlite = itIf(isSqlite);
    const rootReason = isSqlite ? rootFaultsUnavailable() : null;
    const withRoot = itIf(isSqlite && rootReason === null);
    const file = () => ctx.db.url.slice('sqlite:'.length);

    onSqlite('keeps every lock as it was when a process is SIGKILLed in the middle of a write to the lock table', async () => {
      const holderMutex = await ctx.mutex({ leaseSeconds: 2 });
      const lock = await holderMutex.acquire('killed-writer');
      const tokenBefore = lock.fencingToken;
      const watch = watchHeld(lock, observer, 50);
      const writer = SqliteWriter.spawn(children, file(), 'SQLite writer killed mid-write');
      await writer.hold();
      // An unfinished write that would free every lock and rewind the fencing counter.
      expect(await writer.exec(`DELETE FROM ${ctx.quote(holderMutex.options.tableName)}`)).toBeGreaterThan(0);
      expect(await writer.exec(`UPDATE ${ctx.quote(`${holderMutex.options.tableName}_fencing`)} SET value = 0`)).toBe(1);
      await writer.kill();
      const killedAtMs = await ctx.sql.dbNowMs();
      // A renewal or two after the kill.
      await sleep(1500);
      await watch.stop();
      const row = await observer.inspect('killed-writer');
      note(`SIGKILL of a process inside a write transaction: lock still held ${String(lock.isHeld())}, renewed after the kill ${String(row!.heartbeatAt.getTime() > killedAtMs)}`);
      expectNeverSilentlyHeld(watch);
      expect(lock.isHeld()).toBe(true);
      expect(row?.fencingToken).toBe(tokenBefore);
      expect(row!.heartbeatAt.getTime()).toBeGreaterThan(killedAtMs);
      // The rewound counter was never committed: the next token is still larger than every earlier one.
      const next = await observer.acquire('after-killed-writer');
      expect(next.fencingToken).toBeGreaterThan(tokenBefore);
      await next.release();
      await lock.release();
    });

    onSqlite('keeps sections apart and loses no lock while another process checkpoints the WAL (TRUNCATE) under contention', async () => {
      const writer = SqliteWriter.spawn(children, file(), 'SQLite checkpointer');
      const workers = Array.from({ length: 4 }, (_, i) =>
        children.spawn('restart-worker.js', { url: ctx.db.url, lockId: `checkpointed/${i % 2}`, holdMs: 20, leaseSeconds: 2, startShort: true }, { name: `worker ${i}` }),
      );
      await Promise.all(workers.map((w) => w.waitForType('ready', 30_000)));
      await writer.startCheckpoints(10);
      await sleep(4000);
      const checkpoints = await writer.stopCheckpoints();
      for (const w of workers) w.tell('stop');
      await Promise.all(workers.map((w) => w.waitForExit(20_000)));
      await writer.close();
      const sections = sectionsOf(workers);
      const walBytes = statSync(`${file()}-wal`, { throwIfNoEntry: false })?.size ?? 0;
      note(
        `WAL checkpoints (TRUNCATE) every 10 ms under contention: ${checkpoints.completed} completed, ${checkpoints.busy} found the WAL busy; ` +
          `${sections.length} sections, outcomes ${JSON.stringify(countBy(sections, (s) => s.outcome))}; WAL now ${walBytes} bytes`,
      );
      expect(checkpoints.completed).toBeGreaterThan(0);
      expect(sections.length).toBeGreaterThan(20);
      expect(sections.filter((s) => s.outcome !== 'ok')).toEqual([]);
      expect(findOverlaps(sections)).toEqual([]);
      note(checkTokenOrder(findTokenOrderViolations(sections)));
    }, 60_000);

    withRoot(`tells the holder, refuses new locks with a clear error, and recovers when the database file turns read-only (chattr +i)${rootReason ? ` [skipped: ${rootReason}]` : ''}`, async () => {
      await unwritableFileProbe('read-only', async (dbFile) => {
        const files = sqliteFiles(dbFile);
        setImmutable(files, true);
        return () => setImmutable(files, false);
      });
    });

    withRoot(`tells the holder, refuses new locks with a clear error, and recovers when the disk is full (a small tmpfs)${rootReason ? ` [skipped: ${rootReason}]` : ''}`, async () => {
      const fs = mountTinyFilesystem(4096);
      try {
        await unwritableFileProbe('disk-full', async () => {
          const filler = fillUp(fs.dir);
          return () => rmSync(filler);
        }, join(fs.dir, 'locks.sqlite'));
      } finally {
        fs.unmount();
      }
    });
  });
});

/**
 * A holder on its own database file; `fault` makes the file unwritable and returns how to undo it.
 * The holder must be told within its lease (never silently held), an acquisition must fail with the
 * driver's error, and after the undo everything works again.
 */
async function unwritableFileProbe(
  what: string,
  fault: (dbFile: string) => Promise<() => void>,
  dbFile = join(ctx.db.url.slice('sqlite:'.length, ctx.db.url.lastIndexOf('/')), `${what}.sqlite`),
): Promise<void> {
  const url = `sqlite:${dbFile}`;
  const sequelizes = [makeSequelize(url), makeSequelize(url)];
  const holderMutex = initDbMutex(sequelizes[0]!, { setDefault: false, leaseSeconds: 1.5, statementTimeoutMs: 300 });
  const watcher = initDbMutex(sequelizes[1]!, { setDefault: false });
  let undo: (() => void) | null = null;
  try {
    await holderMutex.sync();
    const events = recordEvents(holderMutex);
    const lock = await holderMutex.acquire(`${what}-held`);
    const other = await holderMutex.acquire(`${what}-other`, { heartbeat: false });
    // WAL copied back and truncated, so that any write now needs new space in the file system.
    await sequelizes[1]!.query('PRAGMA wal_checkpoint(TRUNCATE)');
    const watch = watchHeld(lock, watcher, 50);
    undo = await fault(dbFile);
    const faultAtMs = performance.now();
    const refused = await holderMutex.acquire(`${what}-new`).catch((e: unknown) => e);
    const releaseRefused = await other.release().catch((e: unknown) => e);
    await waitUntil(() => lock.signal.aborted, 10_000, 'the holder to be told', 25);
    const toldAfterMs = events.lostAtMs[0]! - faultAtMs;
    await watch.stop();
    undo();
    undo = null;
    note(
      `${what}: holder (lease 1.5 s) told after ${Math.round(toldAfterMs)} ms with ${JSON.stringify(events.lost)}; ` +
        `acquire refused with "${String((refused as Error).message)}", release with "${String((releaseRefused as Error).message)}"`,
    );
    expectNeverSilentlyHeld(watch);
    expect(events.lost).toEqual(['unreachable']);
    expectError(refused);
    expect((refused as { code?: unknown }).code).toMatch(/^SQLITE_/);
    expectError(releaseRefused);
    await expect(lock.release()).rejects.toMatchObject({ name: 'DbMutexTimeoutError', reason: 'unreachable' });
    // Writable again: locks work, and the lost holder's row runs out by itself (its release failed).
    const again = await holderMutex.acquire(`${what}-new`);
    expect(again.fencingToken).toBeGreaterThan(lock.fencingToken);
    await again.release();
    const retaken = await watcher.acquire(`${what}-held`, { waitMs: 5000 });
    expect(retaken.fencingToken).toBeGreaterThan(lock.fencingToken);
    await retaken.release();
  } finally {
    undo?.();
    await holderMutex.close();
    await watcher.close();
    for (const s of sequelizes) await s.close();
  }
}

type ReportedSection = Section & { outcome: string };

function sectionsOf(workers: readonly Child[]): ReportedSection[] {
  return workers.flatMap((w, worker) =>
    w.messages.filter((m) => m.type === 'section').map((m) => ({ ...m, worker }) as unknown as ReportedSection),
  );
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

