/**
 * Claim 7: the suite fails when the lock is broken. The same contention run and detector as
 * mutual-exclusion.test.ts, pointed at a check-then-insert lock written with raw SQL (no unique key,
 * no single atomic statement), must find overlapping sections and lost counter updates. If this test
 * ever passes a broken lock, the green result of the real one means nothing.
 */
import { ensureBuilt } from '../helpers/built';
import { TestContext } from '../helpers/db';
import { ChildGroup } from './helpers/children';
import { analyse, findOverlaps, findTokenOrderViolations, runContention, type Section } from './helpers/contention';
import { describeSafety, safetyDialect } from './helpers/dialect';
import { note } from './helpers/report';
import { CONTENTION_WORKERS, scaled, timeoutMs } from './helpers/soak';

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

describeSafety('against a deliberately broken lock', () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(() => ctx?.cleanup());

  it(
    'catches a check-then-insert lock letting two processes into the critical section',
    async () => {
      const iterations = scaled(20);
      const result = await runContention(safetyDialect(ctx), children, {
        url: ctx.db.url,
        workers: CONTENTION_WORKERS,
        iterations,
        lockIds: ['contended'],
        waitMs: 0,
        impl: 'broken',
        timeoutMs: timeoutMs(60_000),
      });
      note(
        `broken lock: ${result.findings.sections} sections, ${result.findings.overlaps.length} overlaps, ` +
          `${result.findings.lostUpdates.length} lock ids with lost updates, ` +
          `${result.findings.tokenOrderViolations.length} token order violations`,
      );
      expect(result.findings.sections).toBe(CONTENTION_WORKERS * iterations);
      expect(result.findings.overlaps.length).toBeGreaterThan(0);
      expect(result.findings.lostUpdates.length).toBeGreaterThan(0);
    },
    timeoutMs(90_000),
  );
});
