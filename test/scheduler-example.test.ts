import { DbMutexError, DbMutexTimeoutError, type DbMutex } from '../src';
import { lockedJob, type JobOutcome } from '../examples/scheduler/locked-job';
import { startScheduler } from '../examples/scheduler/scheduler';
import { TestContext } from './helpers/db';
import { gate } from './helpers/wait';

describe('examples/scheduler: non-overlapping periodic jobs', () => {
  let ctx: TestContext;
  let workerA: DbMutex;
  let workerB: DbMutex;

  beforeAll(async () => {
    ctx = await TestContext.create();
    // Two DbMutex instances with their own pools stand for two worker processes.
    workerA = await ctx.mutex({ holder: 'worker-a' });
    workerB = await ctx.mutex({ holder: 'worker-b' });
  });
  afterAll(() => ctx.cleanup());

  it('runs the job in one worker and skips it quietly in the other when both fire at once', async () => {
    const release = gate();
    const started = gate();
    const runs: string[] = [];
    const onLost = jest.fn();
    const onError = jest.fn();
    const onSkipped = jest.fn();
    const makeJob = (mutex: DbMutex, name: string) =>
      lockedJob({
        lockId: 'billing:sync',
        mutex,
        onLost,
        onError,
        onSkipped,
        run: async (lock) => {
          runs.push(name);
          started.open();
          await release.promise;
          return lock.fencingToken;
        },
      });
    const jobA = makeJob(workerA, 'a');
    const jobB = makeJob(workerB, 'b');

    const first = jobA();
    await started.promise;
    const second = await jobB();
    release.open();
    const outcomes = [await first, second];

    expect(outcomes.map((o) => o.status)).toEqual(['ran', 'skipped']);
    expect(runs).toEqual(['a']);
    expect((outcomes[0] as { result: number }).result).toEqual(expect.any(Number));
    expect((outcomes[1] as { error: unknown }).error).toBeInstanceOf(DbMutexError);
    expect(onSkipped).toHaveBeenCalledTimes(1);
    expect(onLost).not.toHaveBeenCalled();
    expect(onError).not.toHaveBeenCalled();
    // The lock is free again: the next tick runs.
    expect((await jobB()).status).toBe('ran');
  });

  it('lets exactly one of two simultaneous runs through, whichever wins the race', async () => {
    const release = gate();
    let runs = 0;
    const report = { onLost: jest.fn(), onError: jest.fn() };
    const run = async () => {
      runs++;
      await release.promise;
    };
    const a = lockedJob({ lockId: 'nightly-report', mutex: workerA, run, ...report })();
    const b = lockedJob({ lockId: 'nightly-report', mutex: workerB, run, ...report })();
    // The loser settles at once; the winner waits on the gate.
    const loser = await Promise.race([a, b]);
    expect(loser.status).toBe('skipped');
    release.open();
    expect([(await a).status, (await b).status].sort()).toEqual(['ran', 'skipped']);
    expect(runs).toBe(1);
  });

  it('reports a run that outlived its lock through onLost, with the lost reason', async () => {
    const lost: DbMutexTimeoutError[] = [];
    const job = lockedJob({
      lockId: 'slow-export',
      mutex: workerA,
      // A tiny TTL (the heartbeat never renews past it): the lock runs out while the job still works.
      ttlSeconds: 0.2,
      run: async (lock) => {
        await new Promise((resolve) => lock.signal.addEventListener('abort', resolve, { once: true }));
        return 'partial export';
      },
      onLost: (error) => lost.push(error),
      onError: jest.fn(),
    });
    const outcome = await job();
    expect(outcome.status).toBe('lost');
    expect(lost).toHaveLength(1);
    expect(lost[0]).toBeInstanceOf(DbMutexTimeoutError);
    expect(lost[0]!.lockId).toBe('slow-export');
    expect(lost[0]!.result).toBe('partial export');
    expect(lost[0]!.reason).toBe('expired');
  });

  it('reports a lock force-released by an operator through onLost too', async () => {
    const started = gate();
    const finish = gate();
    const onLost = jest.fn();
    const job = lockedJob({
      lockId: 'search:reindex',
      mutex: workerA,
      run: async () => {
        started.open();
        await finish.promise;
      },
      onLost,
      onError: jest.fn(),
    });
    const running = job();
    await started.promise;
    await workerB.forceRelease({ lockId: 'search:reindex', operator: 'alice', reason: 'stuck' });
    finish.open();
    expect((await running).status).toBe('lost');
    expect(onLost).toHaveBeenCalledWith(expect.objectContaining({ name: 'DbMutexTimeoutError', reason: 'released-by-other' }));
  });

  it('reports a failing job through onError and never rejects, even when a reporter throws', async () => {
    const failure = new Error('upstream API down');
    const job = lockedJob({
      lockId: 'flaky',
      mutex: workerA,
      run: async () => {
        throw failure;
      },
      onLost: jest.fn(),
      onError: () => {
        throw new Error('the error tracker is down too');
      },
    });
    const spy = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      await expect(job()).resolves.toEqual({ status: 'failed', error: failure });
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
    expect(await workerA.inspect('flaky')).toBeNull();
  });

  it('runs jobs on a node-cron schedule and stops cleanly, releasing its locks', async () => {
    const outcomes: [string, JobOutcome][] = [];
    const ticked = gate();
    const scheduler = startScheduler(
      [
        {
          name: 'every-second',
          cron: '* * * * * *',
          job: lockedJob({ lockId: 'cron-job', mutex: workerA, run: async () => 'done', onLost: jest.fn(), onError: jest.fn() }),
        },
      ],
      (name, outcome) => {
        outcomes.push([name, outcome]);
        ticked.open();
      },
    );
    try {
      await ticked.promise;
    } finally {
      await scheduler.stop();
    }
    expect(outcomes[0]).toEqual(['every-second', { status: 'ran', result: 'done' }]);
    const count = outcomes.length;
    expect(await workerA.inspect('cron-job')).toBeNull();
    // Stopped means stopped: no tick after stop() resolved.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(outcomes).toHaveLength(count);
  });
});
