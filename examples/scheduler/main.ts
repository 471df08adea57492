/**
 * A worker process running two non-overlapping periodic jobs. Start it twice (two terminals, or two
 * machines on the same database): each tick, one process runs a job and the other skips it.
 *
 *   DATABASE_URL=postgres://… npx sequelize-cli db:migrate
 *   npm run build && npx tsc -p tsconfig.json --outDir /tmp/ex && DATABASE_URL=… node /tmp/ex/examples/scheduler/main.js
 */
import { Sequelize } from 'sequelize';
import { initDbMutex } from '../../src';
import { lockedJob, type JobOutcome } from './locked-job';
import { startScheduler } from './scheduler';

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('Set DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/app');
  const sequelize = new Sequelize(url, { logging: false });
  const mutex = initDbMutex(sequelize, { leaseSeconds: 30 });

  const report = {
    onLost: (error: Error) => console.error(`[${process.pid}] LOST LOCK, the run may have overlapped another: ${error.message}`),
    onError: (error: unknown) => console.error(`[${process.pid}] job failed:`, error),
  };
  const scheduler = startScheduler(
    [
      {
        name: 'billing-sync',
        cron: '*/10 * * * * *',
        job: lockedJob({
          lockId: 'billing:sync',
          mutex,
          ttlSeconds: 300,
          // Passing the signal on means a lost lock stops the work instead of racing the next holder.
          run: async (lock) => sleep(4000, lock.signal),
          ...report,
        }),
      },
      {
        name: 'nightly-report',
        cron: '0 30 2 * * *',
        job: lockedJob({ lockId: 'nightly-report', mutex, run: async () => 'report written', ...report }),
      },
    ],
    (name: string, outcome: JobOutcome) => console.log(`[${process.pid}] ${name}: ${outcome.status}`),
  );
  console.log(`[${process.pid}] scheduler started; Ctrl-C to stop`);

  const shutdown = async () => {
    await scheduler.stop();
    await mutex.close();
    await sequelize.close();
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      shutdown().catch((error: unknown) => {
        console.error(error);
        process.exitCode = 1;
      });
    });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
