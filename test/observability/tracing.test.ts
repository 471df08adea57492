/**
 * OpenTelemetry spans with a real SDK (BasicTracerProvider + InMemorySpanExporter) against a real
 * database: names, parent/child structure, attributes and status, for withDbMutex, dbMutex and a
 * manual acquire; the library's statements run inside the acquire and release spans (where database
 * instrumentations, which read the active context, would put their spans).
 */
import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { dbMutex, DbMutexError, DbMutexTimeoutError, withDbMutex, type DbMutex } from '../../src';
import { registerTestSdk, type TestSdk } from '../fixtures/observability/otel-sdk';
import { TestContext } from '../helpers/db';
import { sleep } from '../helpers/wait';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;
let sdk: TestSdk;
/** Every lock statement of `mutex`, with the span that was active when it ran. */
const statements: { sql: string; spanName: string | null; spanId: string | null }[] = [];

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex(
    { holder: 'traced' },
    {
      logging: (sql: string) => {
        if (!sql.startsWith('Executing (db-mutex)')) return;
        const span = trace.getActiveSpan();
        statements.push({ sql, spanName: nameOf(span), spanId: span?.spanContext().spanId ?? null });
      },
    },
  );
  rival = await ctx.mutex({ holder: 'rival' });
});
afterAll(() => ctx.cleanup());

beforeEach(() => {
  sdk = registerTestSdk();
  statements.length = 0;
});
afterEach(() => sdk.shutdown());

const tracer = () => trace.getTracer('app');
/** The API's Span has no name; the SDK's spans do. */
const nameOf = (span: unknown): string | null => {
  const name = (span as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? name : null;
};
const spans = () => sdk.exporter.getFinishedSpans();
/** The rival's own lock: taken before the spans of interest (they are cleared), released after reading them. */
async function rivalHolds(lockId: string): Promise<{ release(): Promise<void> }> {
  const lock = await rival.acquire(lockId);
  sdk.exporter.reset();
  return lock;
}
const named = (name: string) => spans().filter((s) => s.name === name);
const one = (name: string): ReadableSpan => {
  const found = named(name);
  if (found.length !== 1) throw new Error(`expected one "${name}" span, got ${found.length}: ${spans().map((s) => s.name).join(', ')}`);
  return found[0]!;
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const idOf = (span: ReadableSpan) => span.spanContext().spanId;

describe('spans of withDbMutex', () => {
  it('gives acquire and section spans under the caller\'s span, with the app\'s own spans and the release inside the section', async () => {
    await tracer().startActiveSpan('job', async (job) => {
      await withDbMutex(
        'invoices:7',
        async () => {
          await tracer().startActiveSpan('app work', async (work) => {
            await sleep(5);
            work.end();
          });
        },
        { mutex },
      );
      job.end();
    });
    const job = one('job');
    const acquire = one('db-mutex acquire');
    const section = one('db-mutex section');
    const release = one('db-mutex release');
    const work = one('app work');
    expect([parentOf(acquire), parentOf(section), parentOf(release)]).toEqual([idOf(job), idOf(job), idOf(section)]);
    expect(parentOf(work)).toBe(idOf(section));
    for (const s of [acquire, section, release]) expect(s.spanContext().traceId).toBe(job.spanContext().traceId);
    const token = acquire.attributes['db_mutex.fencing_token'];
    expect(typeof token).toBe('number');
    expect(acquire.attributes).toMatchObject({ 'db_mutex.lock_id': 'invoices:7', 'db_mutex.outcome': 'acquired' });
    expect(acquire.attributes['db_mutex.waited_ms']).toEqual(expect.any(Number));
    expect(section.attributes).toMatchObject({ 'db_mutex.lock_id': 'invoices:7', 'db_mutex.fencing_token': token, 'db_mutex.outcome': 'completed' });
    expect(release.attributes).toMatchObject({ 'db_mutex.lock_id': 'invoices:7', 'db_mutex.fencing_token': token, 'db_mutex.outcome': 'released' });
    for (const s of [acquire, section, release]) expect(s.status.code).toBe(SpanStatusCode.UNSET);
    // In order: the section starts after the acquire ends; the release is its last part. The SDK
    // anchors each span's clock to Date.now() (whole milliseconds) when it starts, so times of two
    // spans compare only to within a millisecond.
    const ns = (t: [number, number]) => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);
    const ms = 1_000_000n;
    expect(ns(section.startTime) + ms).toBeGreaterThanOrEqual(ns(acquire.endTime));
    expect(ns(release.startTime) + ms).toBeGreaterThanOrEqual(ns(work.endTime));
    expect(ns(section.endTime) + ms).toBeGreaterThanOrEqual(ns(release.endTime));
  });

  it('runs the library\'s own statements inside the acquire and release spans', async () => {
    await withDbMutex('statements', () => undefined, { mutex, heartbeat: false });
    const acquire = one('db-mutex acquire');
    const release = one('db-mutex release');
    expect(statements.length).toBeGreaterThanOrEqual(2);
    const acquireSql = statements.filter((s) => s.spanId === idOf(acquire));
    const releaseSql = statements.filter((s) => s.spanId === idOf(release));
    expect(acquireSql.length).toBeGreaterThanOrEqual(1);
    expect(releaseSql.length).toBeGreaterThanOrEqual(1);
    // (The history prune that a DbMutex's first release starts runs in the background, in no span.)
    expect(statements.filter((s) => s.spanId === null && !/DELETE FROM \S*db_mutex_locks_history/.test(s.sql))).toEqual([]);
  });

  it('marks the acquire span as an error with outcome "held" when the lock is taken, and opens no section', async () => {
    const held = await rivalHolds('taken');
    try {
      const error = await withDbMutex('taken', () => 'never', { mutex }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DbMutexError);
      const acquire = one('db-mutex acquire');
      expect(acquire.status.code).toBe(SpanStatusCode.ERROR);
      expect(acquire.attributes).toMatchObject({ 'db_mutex.lock_id': 'taken', 'db_mutex.outcome': 'held', 'db_mutex.waited_ms': expect.any(Number) });
      expect(acquire.events.map((e) => e.name)).toContain('exception');
      expect(spans().map((s) => s.name)).toEqual(['db-mutex acquire']);
    } finally {
      await held.release();
    }
  });

  it('records the wait on the acquire span when waitMs runs out', async () => {
    const held = await rivalHolds('waited');
    try {
      await expect(withDbMutex('waited', () => 'never', { mutex, waitMs: 120 })).rejects.toMatchObject({ code: 'DB_MUTEX_WAIT_TIMEOUT' });
      const acquire = one('db-mutex acquire');
      expect(acquire.attributes['db_mutex.outcome']).toBe('wait_timeout');
      expect(acquire.attributes['db_mutex.waited_ms']).toBeGreaterThanOrEqual(120);
      expect(acquire.status.code).toBe(SpanStatusCode.ERROR);
    } finally {
      await held.release();
    }
  });

  it('gives outcome "cancelled" when the wait\'s signal aborts', async () => {
    const held = await rivalHolds('cancelled');
    try {
      const controller = new AbortController();
      const waiting = withDbMutex('cancelled', () => 'never', { mutex, waitMs: 10_000, signal: controller.signal });
      setTimeout(() => controller.abort(new Error('shutting down')), 50);
      await expect(waiting).rejects.toThrow('shutting down');
      const acquire = one('db-mutex acquire');
      expect(acquire.attributes['db_mutex.outcome']).toBe('cancelled');
      expect(acquire.status).toEqual({ code: SpanStatusCode.ERROR, message: 'shutting down' });
    } finally {
      await held.release();
    }
  });

  it('marks the section as failed with the exception when the function throws, and the release as clean', async () => {
    const boom = new Error('boom');
    await expect(withDbMutex('throws', () => { throw boom; }, { mutex })).rejects.toBe(boom);
    const section = one('db-mutex section');
    expect(section.status).toEqual({ code: SpanStatusCode.ERROR, message: 'boom' });
    expect(section.attributes['db_mutex.outcome']).toBe('failed');
    expect(section.events.find((e) => e.name === 'exception')?.attributes?.['exception.message']).toBe('boom');
    expect(one('db-mutex release').attributes['db_mutex.outcome']).toBe('released');
  });

  it('carries the loss reason on the section and release spans when the lock is force-released while held', async () => {
    const error = await withDbMutex(
      'forced',
      async (lock) => {
        await rival.forceRelease({ lockId: 'forced', operator: 'ops' });
        // PostgreSQL tells the holder at once; the others learn it at release.
        await sleep(50);
        return lock.fencingToken;
      },
      { mutex },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    const section = one('db-mutex section');
    const release = one('db-mutex release');
    expect(section.attributes).toMatchObject({ 'db_mutex.outcome': 'lost', 'db_mutex.lost_reason': 'released-by-other' });
    expect(section.status.code).toBe(SpanStatusCode.ERROR);
    expect(release.attributes).toMatchObject({ 'db_mutex.outcome': 'lost', 'db_mutex.lost_reason': 'released-by-other' });
    expect(release.status.code).toBe(SpanStatusCode.ERROR);
  });
});

describe('spans of dbMutex and a manual acquire', () => {
  it('gives the same three spans for a dbMutex-wrapped function', async () => {
    const run = dbMutex((id: number) => `report:${id}`, { mutex })(async (id: number) => {
      return `${id} in ${nameOf(trace.getActiveSpan()) ?? 'no span'}`;
    });
    expect(await run(3)).toBe('3 in db-mutex section');
    expect(spans().map((s) => s.name).sort()).toEqual(['db-mutex acquire', 'db-mutex release', 'db-mutex section']);
    expect(one('db-mutex section').attributes['db_mutex.lock_id']).toBe('report:3');
    expect(parentOf(one('db-mutex release'))).toBe(idOf(one('db-mutex section')));
  });

  it('gives acquire, section (until release) and release spans for mutex.acquire() and lock.release()', async () => {
    const lock = await mutex.acquire('manual');
    expect(named('db-mutex acquire')).toHaveLength(1);
    expect(named('db-mutex section')).toEqual([]);
    await lock.release();
    const section = one('db-mutex section');
    expect(section.attributes).toMatchObject({ 'db_mutex.outcome': 'completed', 'db_mutex.fencing_token': lock.fencingToken });
    expect(one('db-mutex release').attributes['db_mutex.outcome']).toBe('released');
    // Twice is a no-op: no second release span.
    await lock.release();
    expect(named('db-mutex release')).toHaveLength(1);
  });

  it('marks the moment of a loss with a lock lost event on the section span', async () => {
    const lock = await mutex.acquire('manual-lost');
    await rival.forceRelease({ lockId: 'manual-lost', operator: 'ops' });
    // The extend finds the row gone on every database (PostgreSQL's notice may have told it first).
    await expect(lock.extend()).rejects.toMatchObject({ reason: 'released-by-other' });
    await expect(lock.release()).rejects.toMatchObject({ reason: 'released-by-other' });
    const events = one('db-mutex section').events.filter((e) => e.name === 'lock lost');
    expect(events).toHaveLength(1);
    expect(events[0]!.attributes?.['db_mutex.lost_reason']).toBe('released-by-other');
  });

  it('leaves lock.signal unmade by a traced acquisition (it is made on first use)', async () => {
    const lock = await mutex.acquire('manual-unread-signal');
    // Private: the AbortController behind lock.signal. Tracing must not make one per acquisition.
    expect((lock as unknown as { controller: AbortController | null }).controller).toBeNull();
    await lock.release();
    expect(one('db-mutex section').attributes['db_mutex.outcome']).toBe('completed');
  });

  it('reports an expired manual lock as lost at release', async () => {
    const lock = await mutex.acquire('manual-expired', { heartbeat: false });
    await ctx.sql.expireLock('manual-expired');
    await expect(lock.release()).rejects.toMatchObject({ reason: 'expired' });
    expect(one('db-mutex release').attributes).toMatchObject({ 'db_mutex.outcome': 'lost', 'db_mutex.lost_reason': 'expired' });
    expect(one('db-mutex section').attributes['db_mutex.lost_reason']).toBe('expired');
  });
});

describe('spans of leader election', () => {
  it('runs onElected inside the term\'s section span and ends it with the term', async () => {
    let inside: string | null = null;
    let elected!: () => void;
    const electedNow = new Promise<void>((resolve) => (elected = resolve));
    const leadership = mutex.lead('traced-election', {
      onElected: () => {
        inside = nameOf(trace.getActiveSpan());
        elected();
      },
    });
    await electedNow;
    await leadership.stop();
    expect(inside).toBe('db-mutex section');
    const section = one('db-mutex section');
    expect(section.attributes).toMatchObject({ 'db_mutex.lock_id': 'traced-election', 'db_mutex.outcome': 'completed' });
    expect(parentOf(one('db-mutex release'))).toBe(idOf(section));
  });
});

describe('without an SDK', () => {
  it('makes no spans and runs statements outside any span once the provider is gone', async () => {
    await sdk.shutdown();
    const before = spans().length;
    expect(await withDbMutex('untraced', () => 'ok', { mutex })).toBe('ok');
    expect(spans()).toHaveLength(before);
    expect(statements.length).toBeGreaterThanOrEqual(2);
    expect(statements.every((s) => s.spanId === null)).toBe(true);
  });
});
