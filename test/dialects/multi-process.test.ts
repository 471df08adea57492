/**
 * Several real processes, one lock, on this run's database (DATABASE_URL): the lock must order them
 * on every dialect — PostgreSQL (woken by release notices), MariaDB and SQLite (jittered polling; for
 * SQLite, several processes sharing one database file).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureBuilt } from '../helpers/built';
import { dialect, poolerMutexOptions, TestContext } from '../helpers/db';
import { ChildGroup, FIXTURES_ROOT, type Child } from '../helpers/children';

const CONTENDER = path.join(FIXTURES_ROOT, 'dialects', 'contender.js');

let ctx: TestContext;
let scratch: string;
const group = new ChildGroup();

beforeAll(async () => {
  await ensureBuilt();
  ctx = await TestContext.create();
  // The schema exists before the contenders start, as after a deployment's migration.
  await ctx.mutex();
  scratch = mkdtempSync(path.join(tmpdir(), 'dbm-contenders-'));
}, 180_000);
afterAll(async () => {
  await group.dispose();
  await ctx.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

/** Starts `count` contenders, waits until all are ready, then releases them at once. */
async function race(count: number, config: Record<string, unknown>): Promise<Child[]> {
  const children = Array.from({ length: count }, (_, i) =>
    group.spawn(CONTENDER, { url: ctx.db.url, mutexOptions: poolerMutexOptions(ctx.db), ...config }, { name: `contender-${i}` }),
  );
  await Promise.all(children.map((c) => c.waitForType('ready', 30_000)));
  for (const c of children) c.tell('go');
  return children;
}

async function records<T>(children: Child[], timeoutMs: number): Promise<T[][]> {
  return Promise.all(children.map(async (c) => (await c.waitForType('done', timeoutMs)).records as T[]));
}

interface Section {
  fencingToken: number;
  startNs: string;
  endNs: string;
}

interface Acquisition {
  fencingToken: number;
  acquiredMs: number;
  expiresMs: number;
}

describe(`several processes on ${dialect}`, () => {
  it('never run two critical sections at once: a non-atomic shared counter loses no update, and tokens follow the order', async () => {
    const counterFile = path.join(scratch, 'counter');
    writeFileSync(counterFile, '0');
    const processes = 4;
    const iterations = 12;
    const children = await race(processes, { mode: 'sections', lockId: 'shared-counter', iterations, counterFile, sectionMs: 5 });
    const sections = (await records<Section>(children, 90_000)).flat();

    expect(sections).toHaveLength(processes * iterations);
    // Read -> pause -> write without the lock would lose increments as soon as two sections overlap.
    expect(Number(readFileSync(counterFile, 'utf8'))).toBe(processes * iterations);
    const ordered = sections
      .map((s) => ({ token: s.fencingToken, start: BigInt(s.startNs), end: BigInt(s.endNs) }))
      .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    for (let i = 1; i < ordered.length; i++) {
      // Each section starts after the previous one ended (one monotonic clock for all processes) ...
      expect(ordered[i]!.start).toBeGreaterThanOrEqual(ordered[i - 1]!.end);
      // ... and holds a larger fencing token.
      expect(ordered[i]!.token).toBeGreaterThan(ordered[i - 1]!.token);
    }
  }, 120_000);

  it('take an expired lock over only after its expiry by the database clock, each time with a larger fencing token', async () => {
    const children = await race(3, { mode: 'takeovers', lockId: 'taken-over', durationMs: 2500, ttlSeconds: 0.15 });
    const acquisitions = (await records<Acquisition>(children, 60_000)).flat().sort((a, b) => a.fencingToken - b.fencingToken);

    // Every acquisition after the first was a takeover of an expired lock (nobody releases here).
    expect(acquisitions.length).toBeGreaterThanOrEqual(5);
    expect(new Set(acquisitions.map((a) => a.fencingToken)).size).toBe(acquisitions.length);
    for (let i = 1; i < acquisitions.length; i++) {
      // In token order, each acquisition happened (database clock) no earlier than the previous one expired.
      expect(acquisitions[i]!.acquiredMs).toBeGreaterThanOrEqual(acquisitions[i - 1]!.expiresMs);
    }
  }, 90_000);
});
