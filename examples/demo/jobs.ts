/**
 * The periodic jobs both workers run. The lock id is the job's identity: whichever worker gets the lock
 * runs the job, the other skips that tick, exactly as with two Celery workers and django-db-mutex.
 * (These ids differ from the seeded demo locks, which are snapshots of other, imaginary machines.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, type Log } from './log';
import { DbMutexError, DbMutexTimeoutError, withDbMutex, type DbMutex, type DbMutexHeldLock } from './package';

export interface JobContext {
  mutex: DbMutex;
  log: Log;
  /** Where an operator frees a stale lock, for the log lines that ask for one. */
  dashboardUrl: string;
  /** Aborted when the worker starts shutting down. */
  stopping: AbortSignal;
}

export interface DemoJob {
  /** The lock id; also the job's name in the logs. */
  lockId: string;
  /** Runs on the wall-clock multiples of this, the same instants in every worker, so they really compete. */
  everyMs: number;
  /** One run; logs its own outcome (one line) and never rejects. */
  run(context: JobContext): Promise<void>;
}

/** Durations are short so that everything happens within the first minute of the demo. */
export const NIGHTLY_REPORT = { lockId: 'jobs/nightly-report', everyMs: 4000, workMs: 1500, leaseSeconds: 6 };
export const BILLING_SYNC = { lockId: 'jobs/billing-sync', everyMs: 5000, workMs: 1000, slowWorkMs: 6000, ttlSeconds: 3 };
export const LEGACY_FEED = { lockId: 'jobs/import-legacy-feed', everyMs: 10_000, ttlSeconds: 15 };

/**
 * Runs `work` under `lockId` and logs the outcome, the way a scheduled job should treat each one:
 * ran; skipped because another worker holds the lock (normal, quiet in a real app); or lost its lock
 * while running (the lease ran out or an operator released it: the run may have overlapped another
 * one, so it must be reported).
 */
async function runLocked(
  context: JobContext,
  lockId: string,
  options: { ttlSeconds?: number | null; leaseSeconds?: number; heartbeat?: boolean },
  work: (lock: DbMutexHeldLock) => Promise<void>,
  explainLost: (reason: string) => string = () => '',
): Promise<void> {
  const started = performance.now();
  let held: DbMutexHeldLock | null = null;
  let failure: unknown = null;
  try {
    await withDbMutex(
      lockId,
      async (lock) => {
        held = lock;
        await work(lock);
      },
      { mutex: context.mutex, ...options },
    );
  } catch (error) {
    failure = error;
  }
  const lock = held as DbMutexHeldLock | null;
  // The lock's signal says whether it was lost while the work ran, even when the error that came out is
  // the work's own (its sleep was aborted) rather than a DbMutexTimeoutError.
  const lostReason = failure instanceof DbMutexTimeoutError ? failure.reason : lock?.signal.aborted ? reasonOf(lock.signal) : null;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (failure instanceof DbMutexError) {
    context.log(`${lockId} skipped: ${failure.code === 'DB_MUTEX_CLOSED' ? 'shutting down' : 'locked (another worker is running it)'}`);
  } else if (lock && (lostReason === 'closed' || (context.stopping.aborted && (failure !== null || lostReason !== null)))) {
    context.log(`${lockId} stopped: shutting down (fencing ${lock.fencingToken}, lock released)`);
  } else if (lock && lostReason !== null) {
    context.log(`${lockId} lost its lock (${lostReason}) after ${seconds} s (fencing ${lock.fencingToken})${explainLost(lostReason)}`);
  } else if (failure !== null) {
    context.log(`${lockId} failed: ${errorMessage(failure)}`);
  } else if (lock) {
    context.log(`${lockId} ran (fencing ${lock.fencingToken})`);
  }
}

/** Why a held lock was lost, from its aborted signal (a DbMutexLostError carries the reason). */
function reasonOf(signal: AbortSignal): string {
  const reason = (signal.reason as { reason?: unknown } | undefined)?.reason;
  return typeof reason === 'string' ? reason : 'lost';
}

/** A short job with the heartbeat on (the default): its lease is renewed for as long as it runs. */
function nightlyReport(): DemoJob {
  const { lockId, everyMs, workMs, leaseSeconds } = NIGHTLY_REPORT;
  return {
    lockId,
    everyMs,
    run: (context) => runLocked(context, lockId, { leaseSeconds }, (lock) => sleep(workMs, undefined, { signal: lock.signal })),
  };
}

/**
 * A job that sometimes runs past its lease. Its heartbeat is off, so the lock lasts exactly its TTL;
 * every third run in a worker meets a slow payment provider and needs twice that. Its work listens to
 * `lock.signal`, so it stops as soon as the lock is gone instead of carrying on unprotected.
 */
function billingSync(): DemoJob {
  const { lockId, everyMs, workMs, slowWorkMs, ttlSeconds } = BILLING_SYNC;
  let runs = 0;
  return {
    lockId,
    everyMs,
    run: (context) => {
      let slow = false;
      return runLocked(
        context,
        lockId,
        { heartbeat: false, ttlSeconds },
        async (lock) => {
          runs += 1;
          slow = runs % 3 === 2;
          await sleep(slow ? slowWorkMs : workMs, undefined, { signal: lock.signal });
        },
        (reason) =>
          slow && reason === 'expired'
            ? `: this run needed ${slowWorkMs / 1000} s but its TTL is ${ttlSeconds} s with no heartbeat, so it stopped when the lock expired; the next tick starts over`
            : '',
      );
    },
  };
}

/**
 * A job that hangs. Heartbeat off and a TTL: the lock is kept for the TTL only, then its row is expired
 * and the dashboard shows it as stale (nobody renews a hung job's lock; with the heartbeat on, a hung
 * *process* would show the same through its overdue heartbeat). By policy the workers do not take a stale
 * import over on their own (a half-done import needs a look first): an operator releases it in the
 * dashboard, then the next tick runs the feed again (and it hangs again).
 */
function legacyFeed(): DemoJob {
  const { lockId, everyMs, ttlSeconds } = LEGACY_FEED;
  let reportedStale = 0;
  return {
    lockId,
    everyMs,
    run: async (context) => {
      let current;
      try {
        current = await context.mutex.inspect(lockId);
      } catch (error) {
        context.log(`${lockId} failed: ${errorMessage(error)}`);
        return;
      }
      // A peek, not a guarantee (the lock may expire right after it): enough for a policy like this one.
      if (current?.stale) {
        if (reportedStale !== current.fencingToken) {
          reportedStale = current.fencingToken;
          context.log(
            `${lockId} skipped: its lock (fencing ${current.fencingToken}, held by ${current.holder}) is stale, left by a hung run; ` +
              `not taken over automatically: an operator should release it at ${context.dashboardUrl}`,
          );
        }
        return;
      }
      await runLocked(context, lockId, { heartbeat: false, ttlSeconds }, async (lock) => {
        context.log(
          `${lockId} started (fencing ${lock.fencingToken}); this feed hangs and never finishes. Its heartbeat is off, ` +
            `so its lock lasts its ${ttlSeconds} s TTL and then shows as stale in the dashboard`,
        );
        lock.signal.addEventListener(
          'abort',
          () => {
            const reason = reasonOf(lock.signal);
            if (reason === 'closed') return; // shutting down
            context.log(
              `${lockId} lost its lock (${reason}) while hung (fencing ${lock.fencingToken})` +
                (reason === 'expired' ? `: the lock is stale now; release it at ${context.dashboardUrl}` : ': it was released or taken over'),
            );
          },
          { once: true },
        );
        // Hung: it waits for nothing but the worker's shutdown. (Only so that its row is deleted then, by
        // withDbMutex's release: mutex.close() releases the locks still held, not one already lost.)
        await new Promise((resolve) => {
          if (context.stopping.aborted) resolve(undefined);
          else context.stopping.addEventListener('abort', resolve, { once: true });
        });
      });
    },
  };
}

export function createJobs(): DemoJob[] {
  return [nightlyReport(), billingSync(), legacyFeed()];
}
