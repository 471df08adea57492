/**
 * "Never silently held": samples, while a fault is injected, whether a lock the process still believes
 * it holds is really its own live row by the database clock. A sample counts against the library only
 * when the lock is believed held both before the read and after it (plus a pause that lets any timer
 * already due run), so a loss that is being reported right now is not mistaken for a silent one.
 */
import type { DbMutex, DbMutexHeldLock } from '../../src';
import { sleep } from './wait';

export interface HeldWatch {
  samples: number;
  /** Samples where the database disagreed with a lock believed held. */
  silentLosses: { atMs: number; row: unknown }[];
  stop(): Promise<void>;
}

export function watchHeld(lock: DbMutexHeldLock, observer: DbMutex, everyMs = 100): HeldWatch {
  const watch: HeldWatch = { samples: 0, silentLosses: [], stop: async () => undefined };
  let running = true;
  const loop = (async () => {
    while (running && lock.isHeld()) {
      const before = lock.isHeld();
      let row;
      try {
        row = await observer.inspect(lock.lockId);
      } catch {
        // The observer's own connection may be the one a fault hit; skip this sample.
        await sleep(everyMs);
        continue;
      }
      await sleep(5);
      if (before && lock.isHeld()) {
        watch.samples++;
        const own = row !== null && row.fencingToken === lock.fencingToken;
        const live = row !== null && (row.expiresAt === null || row.expiresAt.getTime() > row.dbNow.getTime());
        if (!own || !live) watch.silentLosses.push({ atMs: performance.now(), row });
      }
      await sleep(everyMs);
    }
  })();
  watch.stop = async () => {
    running = false;
    await loop;
  };
  return watch;
}
