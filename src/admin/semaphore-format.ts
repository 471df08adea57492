/**
 * How operators see a counting semaphore, for the dashboard's semaphore page, its JSON API and the CLI:
 * one entry with `used / limit`, then one line per permit (holder, age, heartbeat, token). A permit is
 * released like a lock, by its row key and fencing token.
 */
import type { SemaphoreEntry } from '../operator';
import { lockJson, lockView } from './format';

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
