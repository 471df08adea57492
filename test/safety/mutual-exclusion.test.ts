/**
 * Claim 1: mutual exclusion under contention. Several processes hammer one lock id (and, in a
 * variant, 20 lock ids), with and without waiting; their critical sections must never overlap, no
 * counter update may be lost, and fencing tokens must increase in the order the sections ran.
 */
import { ensureBuilt } from '../helpers/built';
import { dialect, poolerMutexOptions, TestContext } from '../helpers/db';
import { ChildGroup } from '../helpers/children';
import { contentionViolations, runContention, runLine } from '../helpers/contention';
import { safetyDialect } from '../helpers/safety-dialect';
import { note } from '../helpers/report';
import { CONTENTION_ITERATIONS, CONTENTION_WORKERS, timeoutMs } from '../helpers/soak';

const TWENTY_IDS = Array.from({ length: 20 }, (_, i) => `contended/${i}`);

let ctx: TestContext;
const children = new ChildGroup();

const cases: { name: string; lockIds: string[]; waitMs: number }[] = [
  { name: 'one lock id, waiting (waitMs)', lockIds: ['contended'], waitMs: 30_000 },
  { name: 'one lock id, refused and retried (no waitMs)', lockIds: ['contended'], waitMs: 0 },
  { name: '20 lock ids, waiting (waitMs)', lockIds: TWENTY_IDS, waitMs: 30_000 },
  { name: '20 lock ids, refused and retried (no waitMs)', lockIds: TWENTY_IDS, waitMs: 0 },
];

describe(`${CONTENTION_WORKERS} processes x ${CONTENTION_ITERATIONS} acquisitions on ${dialect}`, () => {
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
          // Generous: MariaDB's waiters poll, and a loaded 2-core machine slows every statement. Only a
          // safety net against a hang; nothing here asserts how long the run took.
          timeoutMs: timeoutMs(220_000),
        });
        note(runLine(`${dialect}, ${c.name}`, result));
        // Every check of the run at once (each is shown to fail on a broken run in broken-lock.test.ts).
        expect(contentionViolations(result, CONTENTION_WORKERS * CONTENTION_ITERATIONS)).toEqual({});
      },
      timeoutMs(240_000),
    );
  }
});
