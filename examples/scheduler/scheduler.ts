/**
 * Runs locked jobs on cron schedules with node-cron, and stops them cleanly.
 *
 * node-cron's `noOverlap` only keeps one process from starting a run while its previous run is still
 * going; the database lock inside each job is what keeps *other* processes and machines out.
 */
import { schedule, type ScheduledTask } from 'node-cron';
import type { JobOutcome } from './locked-job';

export interface ScheduledJob {
  name: string;
  /** node-cron expression; six fields allow seconds (`*\/10 * * * * *` = every 10 s). */
  cron: string;
  job: () => Promise<JobOutcome>;
}

export interface Scheduler {
  /** Stops every schedule and waits for runs in progress to finish (they release their locks). */
  stop(): Promise<void>;
}

export function startScheduler(jobs: readonly ScheduledJob[], onOutcome: (name: string, outcome: JobOutcome) => void): Scheduler {
  const running = new Set<Promise<void>>();
  const tasks: ScheduledTask[] = jobs.map(({ name, cron, job }) =>
    schedule(
      cron,
      () => {
        const run = job().then((outcome) => onOutcome(name, outcome));
        running.add(run);
        // `job()` never rejects; settle-and-forget keeps the set small.
        return run.finally(() => running.delete(run));
      },
      { name, noOverlap: true },
    ),
  );
  return {
    async stop() {
      await Promise.all(tasks.map(async (task) => {
        await task.stop();
        await task.destroy();
      }));
      await Promise.all(running);
    },
  };
}
