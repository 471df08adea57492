/**
 * How operators see a counting semaphore, for the dashboard's semaphore page, its JSON API and the CLI:
 * one entry with `used / limit`, then one line per permit (holder, age, heartbeat, token). A permit is
 * released like a lock, by its row key and fencing token.
 */
import type { SemaphoreEntry } from '../operator';
import { formatUtc, lockJson, lockView } from './format';
import { query } from './links';
import { layoutData, type PageModel } from './view-model';

export function semaphoreView(entry: SemaphoreEntry) {
  return {
    semaphoreId: entry.semaphoreId,
    used: entry.used,
    limit: entry.limit,
    usage: `${entry.used} / ${entry.limit}`,
    full: entry.used >= entry.limit,
    holders: entry.holders.map((row) => ({ ...lockView(row), permit: row.permit })),
  };
}

export function semaphoreJson(entry: SemaphoreEntry) {
  return {
    semaphoreId: entry.semaphoreId,
    used: entry.used,
    limit: entry.limit,
    holders: entry.holders.map(lockJson),
  };
}

/** The semaphore page: each semaphore once, each holder with a Release link to the lock's confirm page. */
export function semaphoresPage(input: { base: string; entries: SemaphoreEntry[]; operator: string; readOnly: boolean }): PageModel {
  const { base } = input;
  const first = input.entries[0]?.holders[0];
  return {
    layout: layoutData(base, 'Semaphores'),
    data: {
      operator: input.operator,
      readOnly: input.readOnly,
      dbNow: first ? formatUtc(first.dbNow) : null,
      semaphores: input.entries.map((entry) => {
        const view = semaphoreView(entry);
        return {
          ...view,
          holders: view.holders.map((h) => ({
            ...h,
            releaseUrl: `${base}/confirm-release?${query({ lockId: h.lockId, fencingToken: String(h.fencingToken) })}`,
          })),
        };
      }),
      links: { locks: `${base}/` },
    },
  };
}
