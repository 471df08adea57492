/**
 * Acquisitions whose answer never arrived (client-side timeout, dropped connection). The server may
 * still finish such a statement and commit a row that nobody holds; an immediate clean-up could run
 * before that commit and delete nothing. So the clean-up (a release by the acquisition's own owner
 * token, which can never touch anyone else's lock) is retried with backoff until it removes the row
 * or the row would have expired by itself anyway.
 */
/** Retry delay after `elapsedMs` since the failed acquisition: dense at first, when it most likely commits. */
function delayAfter(elapsedMs: number): number {
  if (elapsedMs < 5_000) return 250;
  if (elapsedMs < 30_000) return 1_000;
  return 5_000;
}
const MAX_TIMER_MS = 2_147_483_647;

interface Pending {
  lockId: string;
  ownerToken: string;
  started: number;
  horizon: number;
  attempt: number;
  timer: NodeJS.Timeout | null;
}

export class OrphanCleanup {
  private readonly pending = new Set<Pending>();

  /** `release` resolves true once it removed the row (false: nothing there, yet). */
  constructor(private readonly release: (lockId: string, ownerToken: string) => Promise<boolean>) {}

  /** `lifetimeMs`: how long the row could live on its own (lease or TTL); Infinity if never. */
  add(lockId: string, ownerToken: string, lifetimeMs: number): void {
    const now = performance.now();
    const entry: Pending = { lockId, ownerToken, started: now, horizon: now + lifetimeMs, attempt: 0, timer: null };
    this.pending.add(entry);
    this.schedule(entry);
  }

  private schedule(entry: Pending): void {
    const now = performance.now();
    const delay = entry.attempt === 0 ? 0 : delayAfter(now - entry.started);
    if (entry.attempt > 0 && now + delay > entry.horizon + 1000) {
      this.pending.delete(entry); // by then the row has expired by itself
      return;
    }
    entry.timer = setTimeout(() => void this.attempt(entry), Math.min(delay, MAX_TIMER_MS));
    entry.timer.unref();
  }

  private async attempt(entry: Pending): Promise<void> {
    entry.timer = null;
    entry.attempt++;
    const removed = await this.release(entry.lockId, entry.ownerToken).catch(() => false);
    if (removed) this.pending.delete(entry);
    else if (this.pending.has(entry)) this.schedule(entry);
  }

  get size(): number {
    return this.pending.size;
  }

  /** One last attempt for each pending clean-up, then stop. */
  async flush(): Promise<void> {
    const entries = [...this.pending];
    this.pending.clear();
    for (const e of entries) if (e.timer) clearTimeout(e.timer);
    await Promise.all(entries.map((e) => this.release(e.lockId, e.ownerToken).catch(() => false)));
  }
}
