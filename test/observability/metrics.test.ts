/**
 * createDbMutexMetrics against a real database: the value of every metric after a scripted run
 * (acquire, refuse, wait-timeout, lose, force-release, renewal failure, listener reconnect), bounded
 * label cardinality, and what a second call on the same registry does.
 */
import { Counter, Registry } from 'prom-client';
import { createDbMutexMetrics, DbMutexError, DbMutexTimeoutError, withDbMutex, type DbMutex } from '../../src';
import { notifies, itIf, TestContext } from '../helpers/db';
import { waitUntil } from '../helpers/wait';

let ctx: TestContext;
let mutex: DbMutex;
let operator: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'worker' });
  operator = await ctx.mutex({ holder: 'operator' });
});
afterAll(() => ctx.cleanup());

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

async function samples(registry: Registry, name: string): Promise<Sample[]> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name} in the registry`);
  return (await metric.get()).values as Sample[];
}

/** The value of the sample with exactly these labels (histograms: `metricName` picks _count/_sum/_bucket). */
async function value(registry: Registry, name: string, labels: Record<string, string> = {}, metricName?: string): Promise<number | undefined> {
  const found = (await samples(registry, name)).filter(
    (s) =>
      (metricName === undefined || s.metricName === metricName) &&
      Object.keys(s.labels).filter((k) => k !== 'le').length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

describe('createDbMutexMetrics', () => {
  it('counts every kind of acquisition result, wait and hold times, losses and force-releases after a scripted run', async () => {
    const registry = new Registry();
    const operatorRegistry = new Registry();
    const metrics = createDbMutexMetrics(mutex, { registry });
    const operatorMetrics = createDbMutexMetrics(operator, { registry: operatorRegistry });
    try {
      // 1. acquired (twice), with hold times
      await withDbMutex('run:ok', () => new Promise((r) => setTimeout(r, 30)), { mutex });
      await withDbMutex('run:ok', () => 'quick', { mutex });
      // 2. refused at once
      const rivalLock = await operator.acquire('run:busy');
      await expect(mutex.acquire('run:busy')).rejects.toMatchObject({ code: 'DB_MUTEX_HELD' });
      // 3. waited and timed out
      await expect(mutex.acquire('run:busy', { waitMs: 150 })).rejects.toMatchObject({ code: 'DB_MUTEX_WAIT_TIMEOUT' });
      await rivalLock.release();
      // 4. cancelled: the wait's signal aborts
      const rivalAgain = await operator.acquire('run:busy');
      const controller = new AbortController();
      const waiting = mutex.acquire('run:busy', { waitMs: 10_000, signal: controller.signal });
      setTimeout(() => controller.abort(new Error('shutting down')), 50);
      await expect(waiting).rejects.toThrow('shutting down');
      await rivalAgain.release();
      // 5. held now, then force-released by the operator's DbMutex: lost while held
      const held = await mutex.acquire('run:forced');
      expect(await value(registry, 'db_mutex_held_locks')).toBe(1);
      const forced = await operator.forceRelease({ lockId: 'run:forced', operator: 'ops' });
      expect(forced.status).toBe('released');
      await expect(held.release()).rejects.toBeInstanceOf(DbMutexTimeoutError);
      // 6. lease expiry noticed at release
      const expiring = await mutex.acquire('run:expiring', { heartbeat: false, ttlSeconds: 60 });
      await ctx.sql.expireLock('run:expiring');
      await expect(expiring.release()).rejects.toMatchObject({ reason: 'expired' });

      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBe(4);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'held' })).toBe(1);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'wait_timeout' })).toBe(1);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'cancelled' })).toBe(1);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'error' })).toBeUndefined();
      expect(await value(registry, 'db_mutex_wait_seconds', { result: 'acquired' }, 'db_mutex_wait_seconds_count')).toBe(4);
      expect(await value(registry, 'db_mutex_wait_seconds', { result: 'wait_timeout' }, 'db_mutex_wait_seconds_count')).toBe(1);
      expect(await value(registry, 'db_mutex_wait_seconds', { result: 'wait_timeout' }, 'db_mutex_wait_seconds_sum')).toBeGreaterThanOrEqual(0.15);
      // Only clean releases have a hold time: the two withDbMutex runs.
      expect(await value(registry, 'db_mutex_hold_seconds', {}, 'db_mutex_hold_seconds_count')).toBe(2);
      expect(await value(registry, 'db_mutex_hold_seconds', {}, 'db_mutex_hold_seconds_sum')).toBeGreaterThanOrEqual(0.03);
      expect(await value(registry, 'db_mutex_lost_total', { reason: 'released-by-other' })).toBe(1);
      expect(await value(registry, 'db_mutex_lost_total', { reason: 'expired' })).toBe(1);
      expect(await value(registry, 'db_mutex_held_locks')).toBe(0);
      expect(await value(registry, 'db_mutex_renewal_failures_total')).toBe(0);
      expect(await value(registry, 'db_mutex_listener_reconnects_total')).toBe(0);
      expect(await value(registry, 'db_mutex_listener_errors_total')).toBe(0);
      // The force-release is counted where it was done, and nothing else of the operator's shows as the worker's.
      expect(await value(registry, 'db_mutex_force_releases_total', { action: 'force-release' })).toBeUndefined();
      expect(await value(operatorRegistry, 'db_mutex_force_releases_total', { action: 'force-release' })).toBe(1);
      expect(await value(operatorRegistry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBe(2);
    } finally {
      metrics.close();
      operatorMetrics.close();
    }
  });

  it('counts release-stale and purge-expired as force-releases with their action', async () => {
    const registry = new Registry();
    const metrics = createDbMutexMetrics(operator, { registry });
    try {
      const a = await mutex.acquire('stale:a', { heartbeat: false });
      const b = await mutex.acquire('stale:b', { heartbeat: false });
      await ctx.sql.expireLock('stale:a');
      await ctx.sql.expireLock('stale:b');
      const released = await operator.releaseStale({ operator: 'ops' });
      expect(released.map((e) => e.lockId).sort()).toEqual(['stale:a', 'stale:b']);
      expect(await value(registry, 'db_mutex_force_releases_total', { action: 'release-stale' })).toBe(2);
      await a.release().catch(() => undefined);
      await b.release().catch(() => undefined);
      const c = await mutex.acquire('stale:c', { heartbeat: false });
      await ctx.sql.expireLock('stale:c');
      expect((await operator.purgeExpired({ operator: 'ops' })).map((e) => e.lockId)).toEqual(['stale:c']);
      expect(await value(registry, 'db_mutex_force_releases_total', { action: 'purge-expired' })).toBe(1);
      await c.release().catch(() => undefined);
    } finally {
      metrics.close();
    }
  });

  it('counts failed renewals and the loss that follows when the lock table is gone', async () => {
    const registry = new Registry();
    const doomed = await ctx.mutex({ holder: 'doomed', tableName: 'doomed_locks', eventsTableName: 'doomed_events' });
    const metrics = createDbMutexMetrics(doomed, { registry });
    try {
      const lock = await doomed.acquire('renew:x', { leaseSeconds: 1, ttlSeconds: null });
      await ctx.sql.dropTable('doomed_locks');
      await waitUntil(async () => ((await value(registry, 'db_mutex_renewal_failures_total')) ?? 0) >= 1, 15_000, 'a failed renewal', 25);
      await waitUntil(() => !lock.isHeld(), 15_000, 'the lease to run out', 25);
      expect(await value(registry, 'db_mutex_lost_total', { reason: 'unreachable' })).toBe(1);
      await lock.release().catch(() => undefined);
    } finally {
      metrics.close();
    }
  });

  it('counts attempts whose statement failed as result "error"', async () => {
    const registry = new Registry();
    const broken = await ctx.mutex({ holder: 'broken', tableName: 'broken_locks', eventsTableName: 'broken_events' });
    const metrics = createDbMutexMetrics(broken, { registry });
    try {
      await ctx.sql.dropTable('broken_locks');
      const error = await broken.acquire('error:x').catch((e: unknown) => e);
      expect(error).not.toBeInstanceOf(DbMutexError);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'error' })).toBe(1);
      expect(await value(registry, 'db_mutex_wait_seconds', { result: 'error' }, 'db_mutex_wait_seconds_count')).toBe(1);
    } finally {
      metrics.close();
    }
  });

  it('counts a semaphore with no free permit as result "full", and a permit held and released like a lock', async () => {
    const registry = new Registry();
    const metrics = createDbMutexMetrics(mutex, { registry });
    try {
      const permit = await operator.acquireSemaphore('sem:metrics', { limit: 1 });
      await expect(mutex.acquireSemaphore('sem:metrics', { limit: 1 })).rejects.toMatchObject({ code: 'DB_MUTEX_SEMAPHORE_FULL' });
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'full' })).toBe(1);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'error' })).toBeUndefined();
      await permit.release();
      const mine = await mutex.acquireSemaphore('sem:metrics', { limit: 1 });
      expect(await value(registry, 'db_mutex_held_locks')).toBe(1);
      await mine.release();
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBe(1);
      expect(await value(registry, 'db_mutex_held_locks')).toBe(0);
    } finally {
      metrics.close();
    }
  });

  itIf(notifies)('counts a reconnect of the release-notice connection after the server dropped it (PostgreSQL)', async () => {
    const registry = new Registry();
    const listening = await ctx.directMutex({ holder: 'listening' }, { dialectOptions: { application_name: 'metrics-listen' } });
    const metrics = createDbMutexMetrics(listening, { registry });
    try {
      const lock = await listening.acquire('listen:x');
      const client = await ctx.client();
      await waitUntil(async () => {
        const r = await client.query(
          "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'metrics-listen' AND query LIKE 'LISTEN%'",
        );
        return (r.rows[0] as { n: number }).n > 0;
      }, 15_000, 'the LISTEN backend to be terminated', 25);
      await waitUntil(async () => ((await value(registry, 'db_mutex_listener_reconnects_total')) ?? 0) >= 1, 15_000, 'the listener to reconnect', 25);
      expect(await value(registry, 'db_mutex_listener_reconnects_total')).toBe(1);
      expect(await value(registry, 'db_mutex_listener_errors_total')).toBeGreaterThanOrEqual(1);
      await lock.release();
    } finally {
      metrics.close();
    }
  });
});

describe('label cardinality', () => {
  it('has no lock label by default: a hundred lock ids are one series per result', async () => {
    const registry = new Registry();
    const metrics = createDbMutexMetrics(mutex, { registry });
    try {
      for (let i = 0; i < 100; i++) await withDbMutex(`invoices:${i}`, () => undefined, { mutex });
      const acquired = await samples(registry, 'db_mutex_acquisitions_total');
      expect(acquired).toEqual([expect.objectContaining({ labels: { result: 'acquired' }, value: 100 })]);
      const text = await registry.metrics();
      expect(text).not.toMatch(/invoices/);
      expect(text).not.toMatch(/lock="/);
    } finally {
      metrics.close();
    }
  });

  it('with lockLabel, labels each metric with the mapped family only', async () => {
    const registry = new Registry();
    const metrics = createDbMutexMetrics(mutex, { registry, lockLabel: (id) => id.split(':')[0]! });
    try {
      for (let i = 0; i < 30; i++) await withDbMutex(`invoices:${i}`, () => undefined, { mutex });
      await withDbMutex('reports:daily', () => undefined, { mutex });
      const held = await operator.acquire('reports:weekly');
      await expect(mutex.acquire('reports:weekly')).rejects.toBeInstanceOf(DbMutexError);
      await held.release();
      const acquired = await samples(registry, 'db_mutex_acquisitions_total');
      expect(acquired.map((s) => s.labels).sort((a, b) => `${String(a.lock)}${String(a.result)}`.localeCompare(`${String(b.lock)}${String(b.result)}`))).toEqual([
        { result: 'acquired', lock: 'invoices' },
        { result: 'acquired', lock: 'reports' },
        { result: 'held', lock: 'reports' },
      ]);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired', lock: 'invoices' })).toBe(30);
      expect(await value(registry, 'db_mutex_hold_seconds', { lock: 'invoices' }, 'db_mutex_hold_seconds_count')).toBe(30);
      const lock = await mutex.acquire('invoices:77');
      expect(await value(registry, 'db_mutex_held_locks', { lock: 'invoices' })).toBe(1);
      await lock.release();
      expect(await samples(registry, 'db_mutex_held_locks')).toEqual([]);
    } finally {
      metrics.close();
    }
  });

  it('caps the lock label at maxLockLabels distinct values and counts the rest as "other"', async () => {
    const registry = new Registry();
    // A careless mapping that returns the id itself: the cap still bounds the series.
    const metrics = createDbMutexMetrics(mutex, { registry, lockLabel: (id) => id, maxLockLabels: 3 });
    try {
      for (let i = 0; i < 10; i++) await withDbMutex(`unbounded:${i}`, () => undefined, { mutex });
      const locks = (await samples(registry, 'db_mutex_acquisitions_total')).map((s) => s.labels.lock).sort();
      expect(locks).toEqual(['other', 'unbounded:0', 'unbounded:1', 'unbounded:2']);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired', lock: 'other' })).toBe(7);
    } finally {
      metrics.close();
    }
  });

  it('labels a lock "other" when lockLabel throws or returns no text, and the lock works regardless', async () => {
    const registry = new Registry();
    const metrics = createDbMutexMetrics(mutex, {
      registry,
      lockLabel: (id) => {
        if (id === 'throws') throw new Error('bad mapping');
        return id === 'empty' ? '' : (42 as unknown as string);
      },
    });
    try {
      expect(await withDbMutex('throws', () => 'ran', { mutex })).toBe('ran');
      expect(await withDbMutex('empty', () => 'ran', { mutex })).toBe('ran');
      expect(await withDbMutex('number', () => 'ran', { mutex })).toBe('ran');
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired', lock: 'other' })).toBe(3);
    } finally {
      metrics.close();
    }
  });
});

describe('registration', () => {
  it('returns the same handle when called twice for one DbMutex and registry, and counts once', async () => {
    const registry = new Registry();
    const first = createDbMutexMetrics(mutex, { registry });
    const second = createDbMutexMetrics(mutex, { registry });
    try {
      expect(second).toBe(first);
      await withDbMutex('twice', () => undefined, { mutex });
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBe(1);
    } finally {
      first.close();
    }
  });

  it('lets two DbMutex instances share one registry, adding up their counts', async () => {
    const registry = new Registry();
    const a = createDbMutexMetrics(mutex, { registry });
    const b = createDbMutexMetrics(operator, { registry });
    try {
      await withDbMutex('shared:a', () => undefined, { mutex });
      await withDbMutex('shared:b', () => undefined, { mutex: operator });
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBe(2);
      a.close();
      // The other DbMutex still feeds them.
      await withDbMutex('shared:c', () => undefined, { mutex: operator });
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBe(3);
    } finally {
      a.close();
      b.close();
    }
    expect(registry.getSingleMetric('db_mutex_acquisitions_total')).toBeUndefined();
  });

  it('keeps two sets apart in one registry with another prefix', async () => {
    const registry = new Registry();
    const a = createDbMutexMetrics(mutex, { registry });
    const b = createDbMutexMetrics(operator, { registry, prefix: 'reports_db_mutex_' });
    try {
      await withDbMutex('prefixed', () => undefined, { mutex: operator });
      expect(await value(registry, 'reports_db_mutex_acquisitions_total', { result: 'acquired' })).toBe(1);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBeUndefined();
      expect(b.names).toContain('reports_db_mutex_hold_seconds');
    } finally {
      a.close();
      b.close();
    }
  });

  it('refuses, with a clear message, options that contradict the metrics already in the registry', () => {
    const registry = new Registry();
    const plain = createDbMutexMetrics(mutex, { registry });
    try {
      expect(() => createDbMutexMetrics(operator, { registry, lockLabel: (id) => id })).toThrow(/created without a lockLabel/);
      expect(() => createDbMutexMetrics(mutex, { registry, maxLockLabels: 5 })).toThrow(/other options; close\(\) them first/);
    } finally {
      plain.close();
    }
  });

  it('refuses a registry that already has a metric of that name made elsewhere, and registers nothing', () => {
    const registry = new Registry();
    new Counter({ name: 'db_mutex_lost_total', help: 'someone else', registers: [registry] });
    expect(() => createDbMutexMetrics(mutex, { registry })).toThrow(/already has a metric named "db_mutex_lost_total"/);
    expect(registry.getSingleMetric('db_mutex_acquisitions_total')).toBeUndefined();
  });

  it('removes its metrics on close, twice does no harm, and can be created again afterwards', async () => {
    const registry = new Registry();
    const metrics = createDbMutexMetrics(mutex, { registry });
    metrics.close();
    metrics.close();
    expect(await registry.metrics()).toBe('\n');
    await withDbMutex('after-close', () => undefined, { mutex });
    const again = createDbMutexMetrics(mutex, { registry });
    try {
      expect(again).not.toBe(metrics);
      expect(await value(registry, 'db_mutex_acquisitions_total', { result: 'acquired' })).toBeUndefined();
    } finally {
      again.close();
    }
  });

  it('uses prom-client\'s global registry by default', async () => {
    const { register } = await import('prom-client');
    const metrics = createDbMutexMetrics(mutex);
    try {
      expect(metrics.registry).toBe(register);
      expect(register.getSingleMetric('db_mutex_held_locks')).toBeDefined();
    } finally {
      metrics.close();
    }
    expect(register.getSingleMetric('db_mutex_held_locks')).toBeUndefined();
  });

  it('rejects bad arguments with a TypeError or RangeError naming the parameter', () => {
    expect(() => createDbMutexMetrics({} as DbMutex)).toThrow(/mutex must be a DbMutex/);
    expect(() => createDbMutexMetrics(mutex, { prefix: 'has space' })).toThrow(/prefix must be/);
    expect(() => createDbMutexMetrics(mutex, { lockLabel: 'x' as unknown as (id: string) => string })).toThrow(/lockLabel must be a function/);
    expect(() => createDbMutexMetrics(mutex, { maxLockLabels: 0 })).toThrow(RangeError);
    expect(() => createDbMutexMetrics(mutex, { registry: {} as Registry })).toThrow(/registry must be a prom-client Registry/);
    expect(() => createDbMutexMetrics(mutex, { lockLable: () => 'x' } as never)).toThrow(/did you mean "lockLabel"/);
  });
});
