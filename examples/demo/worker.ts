/**
 * A job worker process (main.ts forks two). It runs the jobs of jobs.ts on timers; the database lock of
 * each job is what keeps the two workers from running the same job at the same time.
 *
 * It stops cleanly (timers cleared, `mutex.close()` releasing every lock it holds) when the supervisor
 * asks, on SIGINT/SIGTERM/SIGHUP (Ctrl-C reaches every process of the terminal), and when the supervisor
 * is gone: the IPC channel closes even if the supervisor was SIGKILLed, and its pid changes if the channel
 * was somehow kept, so a worker never outlives the demo.
 */
import { openSequelize } from './database';
import { createJobs, type DemoJob, type JobContext } from './jobs';
import { errorMessage, logger } from './log';
import { initDbMutex } from './package';

export type WorkerMessage = { type: 'ready' };
export type ToWorkerMessage = { type: 'shutdown' };

const SHUTDOWN_TIMEOUT_MS = 10_000;

interface Schedule {
  /** No more ticks. */
  stop(): void;
  /** Resolves when the run in progress, if any, has settled. */
  idle(): Promise<void>;
}

/**
 * Ticks on wall-clock multiples of `everyMs` (all workers tick together) and never overlaps a run of the
 * same job in this process: a tick that finds the previous run still going is skipped.
 */
function schedule(job: DemoJob, context: JobContext): Schedule {
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let stopped = false;
  const arm = () => {
    if (!stopped) timer = setTimeout(tick, job.everyMs - (Date.now() % job.everyMs));
  };
  const tick = () => {
    arm();
    if (running) return;
    running = job
      .run(context)
      .catch((error: unknown) => context.log(`${job.lockId} failed: ${errorMessage(error)}`))
      .finally(() => {
        running = null;
      });
  };
  arm();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
    idle: () => running ?? Promise.resolve(),
  };
}

async function main(): Promise<void> {
  const name = process.env.DEMO_WORKER_NAME ?? `worker-${process.pid}`;
  const log = logger(name);
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set (the demo supervisor passes it)');
  // Output goes to the supervisor's terminal or pipe; if that is gone, a failed write must not crash the
  // worker before it has released its locks.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);

  const sequelize = openSequelize(url, { logging: false, pool: { max: 5 } });
  // The holder label is what the dashboard shows in its Holder column.
  const mutex = initDbMutex(sequelize, { holder: name, setDefault: false });
  mutex.on('renewalFailed', ({ error }) => log(`could not renew its leases: ${errorMessage(error)}`));

  const stopping = new AbortController();
  let schedules: Schedule[] = [];
  const shutdown = (why: string) => {
    if (stopping.signal.aborted) return;
    stopping.abort();
    setTimeout(() => {
      log(`shutdown took longer than ${SHUTDOWN_TIMEOUT_MS / 1000} s; exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
    for (const s of schedules) s.stop();
    mutex
      .close() // releases every lock still held; runs in progress see their lock.signal abort
      .then(() => Promise.all(schedules.map((s) => s.idle())))
      .then(() => sequelize.close())
      .then(
        () => {
          log(`stopped (${why}); its locks are released`);
          process.exit(0);
        },
        (error: unknown) => {
          log(`stopped (${why}) with an error: ${errorMessage(error)}`);
          process.exit(1);
        },
      );
  };
  process.on('message', (message: ToWorkerMessage) => {
    if (message?.type === 'shutdown') shutdown('asked by the supervisor');
  });
  process.on('disconnect', () => shutdown('the supervisor is gone'));
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => shutdown(signal));
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) shutdown('the supervisor is gone');
  }, 1000).unref();

  await sequelize.authenticate();
  if (stopping.signal.aborted) return;
  const context: JobContext = {
    mutex,
    log,
    dashboardUrl: process.env.DEMO_DASHBOARD_URL ?? 'the dashboard',
    stopping: stopping.signal,
  };
  schedules = createJobs().map((job) => schedule(job, context));
  process.send?.({ type: 'ready' } satisfies WorkerMessage);
}

main().catch((error: unknown) => {
  console.error(`[${process.env.DEMO_WORKER_NAME ?? 'worker'}] could not start: ${errorMessage(error)}`);
  process.exit(1);
});
