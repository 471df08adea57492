/**
 * Claim 1: mutual exclusion under contention. Several processes hammer one lock id (and, in a
 * variant, 20 lock ids), with and without waiting; their critical sections must never overlap, no
 * counter update may be lost, and fencing tokens must increase in the order the sections ran.
 */
import { ensureBuilt } from '../helpers/built';
import { poolerMutexOptions, TestContext } from '../helpers/db';
import { ChildGroup } from './helpers/children';
import { checkTokenOrder, runContention, summarise, type ContentionResult } from './helpers/contention';
import { describeSafety, safetyDialect } from './helpers/dialect';
import { note } from './helpers/report';
import { CONTENTION_ITERATIONS, CONTENTION_WORKERS, timeoutMs } from './helpers/soak';

const TWENTY_IDS = Array.from({ length: 20 }, (_, i) => `contended/${i}`);

let ctx: TestContext;
const children = new ChildGroup();

function expectMutualExclusion(result: ContentionResult, expectedSections: number): void {
  const { findings } = result;
  expect(result.lost).toEqual([]);
  expect(findings.sections).toBe(expectedSections);
  expect(result.sectionsReported).toBe(expectedSections);
  expect({ overlaps: findings.overlaps.length, summary: summarise(findings) }).toEqual({ overlaps: 0, summary: expect.any(String) });
  expect(findings.lostUpdates).toEqual([]);
  note(checkTokenOrder(findings.tokenOrderViolations));
}

const cases: { name: string; lockIds: string[]; waitMs: number }[] = [
  { name: 'one lock id, waiting (waitMs)', lockIds: ['contended'], waitMs: 30_000 },
  { name: 'one lock id, refused and retried (no waitMs)', lockIds: ['contended'], waitMs: 0 },
  { name: '20 lock ids, waiting (waitMs)', lockIds: TWENTY_IDS, waitMs: 30_000 },
  { name: '20 lock ids, refused and retried (no waitMs)', lockIds: TWENTY_IDS, waitMs: 0 },
];

describeSafety(`${CONTENTION_WORKERS} processes x ${CONTENTION_ITERATIONS} acquisitions`, () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    await ctx.mutex(); // creates the lock tables
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(() => ctx?.cleanup());

  for (const c of cases) {
    it(
      `never lets two critical sections of the same lock overlap: ${c.name}`,
      async () => {
        const result = await runContention(safetyDialect(ctx), children, {
          url: ctx.db.url,
          // Behind a transaction-mode pooler: unnamed statements, LISTEN straight to the server.
          mutexOptions: poolerMutexOptions(ctx.db),
          workers: CONTENTION_WORKERS,
          iterations: CONTENTION_ITERATIONS,
          lockIds: c.lockIds,
          waitMs: c.waitMs,
          timeoutMs: timeoutMs(110_000),
        });
        note(`${c.name}: ${summarise(result.findings)} in ${Math.round(result.elapsedMs)} ms`);
        expectMutualExclusion(result, CONTENTION_WORKERS * CONTENTION_ITERATIONS);
      },
      timeoutMs(120_000),
    );
  }
});
