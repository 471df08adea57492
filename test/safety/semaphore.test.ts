/**
 * Counting semaphores under contention: 8 processes take permits of one semaphore (limit 3) again
 * and again, with and without waiting. By the database clock, never more than 3 sections run at once,
 * 3 is reached, no permit has two holders at once (no lost counter update), and fencing tokens never
 * go back. The checks are shown to catch a semaphore that admits one too many.
 */
import { ensureBuilt } from '../helpers/built';
import { dialect, poolerMutexOptions, TestContext } from '../helpers/db';
import { ChildGroup } from '../helpers/children';
import { safetyDialect } from '../helpers/safety-dialect';
import { note } from '../helpers/report';
import { runSemaphoreContention, semaphoreRunLine, semaphoreViolations } from '../helpers/semaphore';
import { CONTENTION_WORKERS, scaled, timeoutMs } from '../helpers/soak';

const LIMIT = 3;
const ITERATIONS = scaled(200);

let ctx: TestContext;
const children = new ChildGroup();

describe(`${CONTENTION_WORKERS} processes x ${ITERATIONS} sections on a semaphore with limit ${LIMIT} on ${dialect}`, () => {
  beforeAll(async () => {
    await ensureBuilt();
    ctx = await TestContext.create();
    await ctx.mutex(); // creates the lock tables
  }, 180_000);
  afterEach(() => children.dispose());
  afterAll(() => ctx?.cleanup());

  for (const c of [
    { name: 'waiting (waitMs)', waitMs: 30_000 },
    { name: 'refused and retried (no waitMs)', waitMs: 0 },
  ]) {
    it(
      `never runs more than ${LIMIT} sections at once, reaches ${LIMIT}, and keeps tokens in order: ${c.name}`,
      async () => {
        const result = await runSemaphoreContention(safetyDialect(ctx), children, {
          url: ctx.db.url,
          mutexOptions: poolerMutexOptions(ctx.db),
          workers: CONTENTION_WORKERS,
          iterations: ITERATIONS,
          semaphoreId: `sem-${c.waitMs}`,
          limit: LIMIT,
          waitMs: c.waitMs,
          timeoutMs: timeoutMs(220_000),
        });
        note(semaphoreRunLine(`${dialect}, semaphore, ${c.name}`, result, LIMIT));
        expect(semaphoreViolations(result, LIMIT, CONTENTION_WORKERS * ITERATIONS)).toEqual({});
      },
      timeoutMs(240_000),
    );
  }

  it(
    'catches a semaphore that admits one holder too many',
    async () => {
      const workers = 6;
      const iterations = 40;
      const result = await runSemaphoreContention(safetyDialect(ctx), children, {
        url: ctx.db.url,
        mutexOptions: poolerMutexOptions(ctx.db),
        workers,
        iterations,
        semaphoreId: 'sem-broken',
        limit: LIMIT,
        waitMs: 30_000,
        impl: 'over-admits',
        timeoutMs: timeoutMs(120_000),
      });
      note(semaphoreRunLine(`${dialect}, semaphore admitting ${LIMIT + 1} (must be caught)`, result, LIMIT));
      expect(Object.keys(semaphoreViolations(result, LIMIT, workers * iterations))).toEqual(['overLimit']);
    },
    timeoutMs(150_000),
  );
});
