/**
 * What the model-based safety tests share (test/safety/model.test.ts for locks, semaphore-model.test.ts
 * for counting semaphores): the real side of a run (holders, an operator, the handles they got), the
 * outcome of one real call, the check of a reported loss, and the run itself: random command sequences,
 * each on an empty table and a fresh model, with every leftover handle of the previous sequence settled.
 */
import fc from 'fast-check';
import { DbMutexTimeoutError, type DbMutex, type DbMutexLostReason } from '../../src';
import { TestContext } from './db';
import { note } from './report';
import { scaled, timeoutMs } from './soak';

/** The database side of a model run: `handles[i]` is what the model calls handle i. */
export interface ModelWorld<H> {
  holders: DbMutex[];
  operator: DbMutex;
  ctx: TestContext;
  handles: H[];
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** A real call's result or its error, for the command to compare with the model. */
export async function outcome<T>(p: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The call failed with a DbMutexTimeoutError whose reason is one of `reasons`; returns that reason. */
export function expectLost(result: Outcome<unknown>, ...reasons: DbMutexLostReason[]): DbMutexLostReason {
  expect(result.ok).toBe(false);
  const error = (result as { error: unknown }).error;
  expect(error).toBeInstanceOf(DbMutexTimeoutError);
  expect(reasons).toContain((error as DbMutexTimeoutError).reason);
  return (error as DbMutexTimeoutError).reason;
}

export interface ModelRun<M extends object, H extends { release(): Promise<void> }> {
  /** The describe block's and the test's names. */
  describe: string;
  it: string;
  /** How many DbMutex instances hold (each with its own pool and holder label). */
  holders: number;
  makeModel(): M;
  commands: fc.Arbitrary<fc.AsyncCommand<M, ModelWorld<H>>>[];
  /** Handles a failing step got unexpectedly: released with the next sequence's leftovers. */
  strays: H[];
  /** Sequences at the default soak scale. */
  runs: number;
  /** What the report line calls one sequence ("random sequences"). */
  what: string;
}

/** Declares the describe block that checks the model against the database after every step. */
export function describeModelRun<M extends object, H extends { release(): Promise<void> }>(run: ModelRun<M, H>): void {
  let ctx: TestContext;
  let real: Omit<ModelWorld<H>, 'handles'>;
  let previous: H[] = [];

  async function freshRun(): Promise<{ model: M; real: ModelWorld<H> }> {
    // Leftovers of the previous sequence: settle them (errors expected) and empty the table.
    await Promise.all([...previous, ...run.strays.splice(0)].map((h) => h.release().catch(() => undefined)));
    await ctx.exec(`DELETE FROM ${ctx.quote(real.operator.options.tableName)}`);
    const r: ModelWorld<H> = { ...real, handles: [] };
    previous = r.handles;
    return { model: run.makeModel(), real: r };
  }

  describe(run.describe, () => {
    beforeAll(async () => {
      ctx = await TestContext.create();
      const holders: DbMutex[] = [];
      for (let h = 0; h < run.holders; h++) holders.push(await ctx.mutex({ holder: `model-holder-${h}` }));
      const operator = await ctx.mutex({ holder: 'model-operator' });
      real = { holders, operator, ctx };
    });
    afterAll(() => ctx?.cleanup());

    it(
      run.it,
      async () => {
        const numRuns = scaled(run.runs);
        let steps = 0;
        await fc.assert(
          fc.asyncProperty(fc.commands(run.commands, { maxCommands: 40, size: 'large' }), async (cmds) => {
            await fc.asyncModelRun(freshRun, cmds);
            steps += [...cmds].length;
          }),
          { numRuns },
        );
        note(`${numRuns} ${run.what}, ${steps} commands, model and database agreed after every step`);
      },
      timeoutMs(120_000),
    );
  });
}
