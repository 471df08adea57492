/**
 * Pieces the dashboard tests share: reading values back out of the escaped HTML, and waiting until
 * the holder of a lock an operator force-released has lost it.
 */
import type { DbMutexHeldLock } from '../../src';
import { notifies } from './db';
import { waitUntil } from './wait';

/** Undoes the five escapes the views write, so a value read from the HTML compares with the original. */
export function unescapeHtml(s: string): string {
  return s.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#34;/g, '"').replace(/&#39;/g, "'");
}

/**
 * Waits until the holder of a force-released lock has lost it. PostgreSQL's release notice aborts it at
 * once; the other dialects have no notices, so the holder finds out at its next renewal, which
 * extend() runs now instead of waiting for the heartbeat (or, without one, for the TTL).
 */
export async function holderLoses(lock: DbMutexHeldLock, what: string, withinMs = 3000): Promise<void> {
  if (!notifies) await expect(lock.extend()).rejects.toMatchObject({ reason: 'released-by-other' });
  await waitUntil(() => lock.signal.aborted, withinMs, what, 10);
}
