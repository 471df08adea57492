/**
 * Claim 7: the suite fails when the lock is broken. The same contention run and the same checks as
 * mutual-exclusion.test.ts (`contentionViolations`), pointed at deliberately broken runs, must fail,
 * each check on the mistake it exists for:
 * - a check-then-insert lock written with raw SQL (no unique key, no single atomic statement):
 *   overlapping sections and lost counter updates;
 * - the library's lock with the fencing token drawn before the lock is won: token order;
 * - sections that outlive the lock's TTL (no heartbeat): lost locks;
 * - a worker that reports fewer sections than it ran: sections reported.
 * If this file ever passes a broken run, the green result of the real one means nothing. It runs on
 * every database, like the real one.
 */
import { ensureBuilt } from '../helpers/built';
import { dialect, TestContext } from '../helpers/db';
import { ChildGroup } from '../helpers/children';
import {
  analyse,
  contentionViolations,
  findOverlaps,
  findTokenOrderViolations,
  runContention,
  runLine,
  type ContentionImpl,
  type Section,
} from '../helpers/contention';
import { safetyDialect } from '../helpers/safety-dialect';
import { note } from '../helpers/report';
import { CONTENTION_WORKERS, scaled, timeoutMs } from '../helpers/soak';

let ctx: TestContext;
const children = new ChildGroup();

const s = (lockId: string, fencingToken: number, startUs: number, endUs: number): Section => ({
  lockId,
  fencingToken,
  worker: 0,
  startUs,
  endUs,
});

describe('the detector', () => {
  it('finds an overlap hidden behind a shorter section in between', () => {
    const overlaps = findOverlaps([s('a', 1, 0, 100), s('a', 2, 10, 20), s('a', 3, 50, 60)]);
    expect(overlaps.map((o) => [o.first.fencingToken, o.second.fencingToken])).toEqual([
      [1, 2],
      [1, 3],
    ]);
  });

  it('accepts sections that touch end to start and sections of different lock ids that overlap', () => {
    expect(findOverlaps([s('a', 1, 0, 10), s('a', 2, 10, 20), s('b', 3, 5, 15)])).toEqual([]);
  });

  it('flags fencing tokens that do not increase in the order the sections ran', () => {
    expect(findTokenOrderViolations([s('a', 5, 0, 10), s('a', 4, 20, 30)])).toHaveLength(1);
    expect(findTokenOrderViolations([s('a', 4, 0, 10), s('a', 5, 20, 30), s('b', 1, 40, 50)])).toEqual([]);
  });

  it('counts a counter that disagrees with the sections that ran as lost updates', () => {
    const findings = analyse([s('a', 1, 0, 10), s('a', 2, 20, 30)], new Map([['a', 1]]));
    expect(findings.lostUpdates).toEqual([{ lockId: 'a', counter: 1, sections: 2 }]);
  });
});

/** A run of a deliberately broken worker variant, with the checks that the real runs must pass. */
async function brokenRun(impl: ContentionImpl, workers: number, iterations: number, waitMs: number) {
  const result = await runContention(safetyDialect(ctx), children, {
    url: ctx.db.url,
    workers,
    iterations,
    lockIds: ['contended'],
    waitMs,
    impl,
    timeoutMs: timeoutMs(60_000),
  });
  note(runLine(`${dialect}, ${impl}`, result));
  return { result, violations: contentionViolations(result, workers * iterations) };
}

describe(`the same checks against deliberately broken runs on ${dialect}`, () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    await ctx.mutex(); // creates the lock tables (the broken variants that still use the library need them)
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(() => ctx?.cleanup());

  it(
    'catches a check-then-insert lock letting two processes into the critical section (overlaps, lost updates)',
    async () => {
      const { result, violations } = await brokenRun('broken', CONTENTION_WORKERS, scaled(20), 0);
      expect(result.findings.sections).toBe(CONTENTION_WORKERS * scaled(20));
      expect(violations).toEqual(
        expect.objectContaining({ overlaps: expect.objectContaining({ count: expect.any(Number) }), lostUpdates: expect.any(Array) }),
      );
      expect(result.findings.overlaps.length).toBeGreaterThan(0);
      expect(result.findings.lostUpdates.length).toBeGreaterThan(0);
    },
    timeoutMs(90_000),
  );

  it(
    'catches fencing tokens drawn before the lock was won (token order), though the sections never overlap',
    async () => {
      const { violations } = await brokenRun('early-token', CONTENTION_WORKERS, scaled(10), 30_000);
      expect(Object.keys(violations)).toEqual(['tokenOrder']);
    },
    timeoutMs(90_000),
  );

  it(
    'catches sections that run past the lock\'s TTL with no heartbeat (lost)',
    async () => {
      const { result, violations } = await brokenRun('outlives-ttl', 2, 2, 30_000);
      expect(violations.lost).toBeDefined();
      // Every section outlived its one-second TTL, and withDbMutex said so for each.
      expect(result.lost).toHaveLength(4);
      // Expired under it, or already taken over by the other worker when it released.
      for (const l of result.lost) expect(['expired', 'released-by-other']).toContain(l.reason);
    },
    timeoutMs(60_000),
  );

  it(
    'catches a worker that reports fewer sections than it ran (sections reported)',
    async () => {
      const { result, violations } = await brokenRun('under-reports', 2, 5, 30_000);
      expect(Object.keys(violations)).toEqual(['sectionsReported']);
      expect(result.sectionsReported).toBe(2 * 5 - 2);
    },
    timeoutMs(60_000),
  );
});
