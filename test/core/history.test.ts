/**
 * Each lock's history: every acquisition that ends leaves one entry saying how (released, lost,
 * force-released, expired), with holder, host, pid, fencing token and hold time; retention is
 * bounded; history can be turned off, and a missing history table never breaks a lock.
 */
import { hostname } from 'node:os';
import type { DbMutex, DbMutexDegradedEvent, DbMutexHistoryEntry } from '../../src';
import { summarizeHistory } from '../../src';
import { dialect, TestContext } from '../helpers/db';
import { sleep, waitUntil } from '../helpers/wait';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'worker-1' });
  rival = await ctx.mutex({ holder: 'worker-2' });
});
afterAll(() => ctx.cleanup());

const historyOf = (lockId: string) => mutex.history({ lockId });
const only = async (lockId: string): Promise<DbMutexHistoryEntry> => {
  const entries = await historyOf(lockId);
  expect(entries).toHaveLength(1);
  return entries[0]!;
};

/** An instant `days` ago by the database clock, in the form this database stores. */
function daysAgoSql(days: number): string {
  if (dialect === 'postgres') return `now() - interval '${days} days'`;
  if (dialect === 'sqlite') return `strftime('%Y-%m-%d %H:%M:%f +00:00', julianday('now') - ${days})`;
  return `UTC_TIMESTAMP(6) - INTERVAL ${days} DAY`;
}

describe('lock history', () => {
  it('records a release by its holder with who held it, where, which token and for how long', async () => {
    const lock = await mutex.acquire('nightly-report');
    await sleep(60);
    await lock.release();
    const entry = await only('nightly-report');
    expect(entry).toMatchObject({
      lockId: 'nightly-report',
      holder: 'worker-1',
      hostname: hostname(),
      pid: process.pid,
      fencingToken: lock.fencingToken,
      outcome: 'released',
      detail: null,
      operator: null,
    });
    expect(entry.acquiredAt.getTime()).toBe(lock.acquiredAt.getTime());
    expect(entry.heldMs).toBeGreaterThanOrEqual(50);
    expect(entry.heldMs).toBe(entry.endedAt.getTime() - entry.acquiredAt.getTime());
  });

  it('lists the newest acquisition first and keeps one entry per acquisition', async () => {
    const tokens: number[] = [];
    for (let i = 0; i < 3; i++) {
      const lock = await (i % 2 ? rival : mutex).acquire('hourly-sync');
      tokens.push(lock.fencingToken);
      await lock.release();
    }
    const entries = await historyOf('hourly-sync');
    expect(entries.map((e) => e.fencingToken)).toEqual([...tokens].reverse());
    expect(entries.map((e) => e.holder)).toEqual(['worker-1', 'worker-2', 'worker-1']);
    expect(await mutex.history({ lockId: 'hourly-sync', limit: 2 })).toHaveLength(2);
  });

  it('records a force-release with the operator and reason, and the holder that then finds its lock gone adds nothing', async () => {
    const lock = await rival.acquire('stuck-import');
    await mutex.forceRelease({ lockId: 'stuck-import', operator: 'alice', reason: 'stuck since Monday' });
    await expect(lock.release()).rejects.toMatchObject({ reason: 'released-by-other' });
    await sleep(100);
    expect(await only('stuck-import')).toMatchObject({
      holder: 'worker-2',
      fencingToken: lock.fencingToken,
      outcome: 'force-released',
      operator: 'alice',
      detail: 'stuck since Monday',
    });
  });

  it('records an expired lock taken over by another holder (PostgreSQL: by the takeover itself; elsewhere: when the old holder learns it)', async () => {
    // The first holder sends nothing by itself (no heartbeat), as if it had died.
    const silent = await mutex.acquire('taken-over', { heartbeat: false, ttlSeconds: 3600 });
    await ctx.sql.expireLock('taken-over');
    const next = await rival.acquire('taken-over');
    if (dialect === 'postgres') {
      expect(await only('taken-over')).toMatchObject({ holder: 'worker-1', fencingToken: silent.fencingToken, outcome: 'expired', detail: 'taken over' });
    } else {
      expect(await historyOf('taken-over')).toEqual([]);
    }
    await expect(silent.release()).rejects.toMatchObject({ reason: 'released-by-other' });
    await waitUntil(async () => (await historyOf('taken-over')).length === 1, 10_000, 'one entry');
    const entry = await only('taken-over');
    expect(entry.fencingToken).toBe(silent.fencingToken);
    // Whoever recorded it first stays: the takeover on PostgreSQL, the old holder's loss elsewhere.
    expect([entry.outcome, entry.detail]).toEqual(dialect === 'postgres' ? ['expired', 'taken over'] : ['lost', 'released by another']);
    // The expired row's end is its expiry, before the next holder's acquisition.
    if (dialect === 'postgres') expect(entry.endedAt.getTime()).toBeLessThanOrEqual(next.acquiredAt.getTime());
    await next.release();
  });

  it('records a lock whose row was removed behind its holder as lost when the holder learns it', async () => {
    const lock = await mutex.acquire('deleted-by-hand');
    await ctx.sql.deleteLock('deleted-by-hand');
    await expect(lock.release()).rejects.toMatchObject({ reason: 'released-by-other' });
    await waitUntil(async () => (await historyOf('deleted-by-hand')).length === 1, 10_000, 'the loss recorded');
    expect(await only('deleted-by-hand')).toMatchObject({ outcome: 'lost', detail: 'released by another', fencingToken: lock.fencingToken });
  });

  it('records a release that came after the lease had run out as lost (expired), ended at the expiry', async () => {
    const lock = await mutex.acquire('ran-out', { heartbeat: false, ttlSeconds: 3600 });
    await ctx.sql.expireLock('ran-out');
    await expect(lock.release()).rejects.toMatchObject({ reason: 'expired' });
    await waitUntil(async () => (await historyOf('ran-out')).length === 1, 10_000, 'the loss recorded');
    const entry = await only('ran-out');
    expect([entry.outcome, entry.detail]).toEqual(['lost', 'expired']);
  });

  it('records the locks a release-stale or purge removes as expired, with the operator and the action', async () => {
    const stale = await rival.acquire('stale-one', { heartbeat: false, ttlSeconds: 3600 });
    await ctx.sql.expireLock('stale-one');
    await mutex.purgeExpired({ operator: 'cron' });
    const entry = await only('stale-one');
    expect(entry).toMatchObject({ outcome: 'expired', operator: 'cron', detail: 'purge-expired', fencingToken: stale.fencingToken });
    await stale.release().catch(() => undefined);
  });

  it('deletes entries past the retention on request and tells how many', async () => {
    for (let i = 0; i < 3; i++) await (await mutex.acquire('old-runs')).release();
    const h = ctx.quote(mutex.options.historyTableName);
    await ctx.exec(`UPDATE ${h} SET acquired_at = ${daysAgoSql(9)}, ended_at = ${daysAgoSql(9)} WHERE lock_id = 'old-runs'`);
    await (await mutex.acquire('old-runs')).release();
    expect(await mutex.history({ lockId: 'old-runs' })).toHaveLength(4);
    expect(await mutex.purgeHistory({ olderThanDays: 10 })).toBe(0);
    expect(await mutex.purgeHistory()).toBe(3);
    expect(await mutex.history({ lockId: 'old-runs' })).toHaveLength(1);
  });

  it('prunes entries past historyRetentionDays by itself after a release', async () => {
    await (await mutex.acquire('pruned-by-itself')).release();
    const h = ctx.quote(mutex.options.historyTableName);
    await ctx.exec(`UPDATE ${h} SET acquired_at = ${daysAgoSql(3)}, ended_at = ${daysAgoSql(3)} WHERE lock_id = 'pruned-by-itself'`);
    const shortMemory = await ctx.mutex({ holder: 'short-memory', historyRetentionDays: 2 });
    await (await shortMemory.acquire('something-else')).release();
    await waitUntil(async () => (await mutex.history({ lockId: 'pruned-by-itself' })).length === 0, 10_000, 'the old entry pruned');
    expect(await mutex.history({ lockId: 'something-else' })).toHaveLength(1);
  });

  it('writes no history with history: false', async () => {
    const quiet = await ctx.mutex({ holder: 'quiet', history: false });
    await (await quiet.acquire('unrecorded')).release();
    const lost = await quiet.acquire('unrecorded-loss');
    await ctx.sql.deleteLock('unrecorded-loss');
    await expect(lost.release()).rejects.toMatchObject({ reason: 'released-by-other' });
    await quiet.close();
    expect(await historyOf('unrecorded')).toEqual([]);
    expect(await historyOf('unrecorded-loss')).toEqual([]);
  });

  it('keeps every lock working when the history table is missing, and says so once', async () => {
    const names = { tableName: 'unmigrated_locks', eventsTableName: 'unmigrated_events' };
    const m = await ctx.mutex({ holder: 'unmigrated', ...names });
    await ctx.sql.dropTable('unmigrated_locks_history');
    const said: DbMutexDegradedEvent[] = [];
    m.on('degraded', (event) => said.push(event));
    for (let i = 0; i < 3; i++) {
      const lock = await m.acquire('still-works');
      await lock.release();
    }
    const lost = await m.acquire('lost-without-history');
    await ctx.sql.deleteLock('lost-without-history', 'unmigrated_locks');
    await expect(lost.release()).rejects.toMatchObject({ reason: 'released-by-other' });
    expect(said.map((e) => e.code)).toEqual(['DB_MUTEX_NO_HISTORY']);
    expect(await ctx.sql.lockRows(null, 'unmigrated_locks')).toEqual([]);
    await expect(m.history({ lockId: 'still-works' })).rejects.toThrow(/unmigrated_locks_history/);
  });

  it('refuses a bad lock id, limit or age before any SQL', async () => {
    await expect(mutex.history({ lockId: '' })).rejects.toThrow(TypeError);
    await expect(mutex.history({ lockId: 'x', limit: 0 })).rejects.toThrow(RangeError);
    await expect(mutex.history({ lockId: 'x', limit: 10_001 })).rejects.toThrow(RangeError);
    await expect(mutex.history({ lockId: 'x', lmit: 5 } as never)).rejects.toThrow(/lmit/);
    await expect(mutex.purgeHistory({ olderThanDays: 0 })).rejects.toThrow(RangeError);
    await expect(mutex.purgeHistory({ olderThanDays: '7' as never })).rejects.toThrow(TypeError);
  });
});

describe('summarizeHistory', () => {
  const entry = (heldMs: number, outcome: DbMutexHistoryEntry['outcome']): DbMutexHistoryEntry => ({
    lockId: 'x',
    holder: 'h',
    hostname: 'host',
    pid: 1,
    fencingToken: heldMs,
    acquiredAt: new Date(0),
    endedAt: new Date(heldMs),
    heldMs,
    outcome,
    detail: null,
    operator: null,
  });

  it('gives nearest-rank p50 and p95, the maximum and the count of each outcome', () => {
    const entries = [...Array.from({ length: 19 }, (_, i) => entry((i + 1) * 10, 'released')), entry(5000, 'lost')];
    const summary = summarizeHistory(entries);
    expect(summary.count).toBe(20);
    expect(summary.heldMs).toEqual({ p50: 100, p95: 190, max: 5000 });
    expect(summary.byOutcome).toEqual({ released: 19, lost: 1, 'force-released': 0, expired: 0 });
  });

  it('has no hold times without entries', () => {
    expect(summarizeHistory([]).heldMs).toBeNull();
  });
});
