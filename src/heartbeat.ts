/**
 * The heartbeat of one DbMutex: one timer and one statement per renewal period renew every lease
 * it holds, however many. Each lease is told the result (`renewed`, `renewalFailed`, or
 * `markLost` when its row turned out expired or taken), so a lease never reaches back here.
 */
import type { LockStore } from './dialects/types';
import type { Lease } from './lease';

/** setTimeout's longest delay; a longer period is simply re-armed when it fires. */
const MAX_TIMER_MS = 2_147_483_647;
/** After a failed renewal, the next try comes at most this soon: the lease keeps running out meanwhile. */
const RETRY_AFTER_FAILURE_MS = 1000;

export class Heartbeat {
  private readonly leases = new Set<Lease>();
  private timer: NodeJS.Timeout | null = null;
  private dueAt = Infinity;
  private renewing = false;
  private stopped = false;

  /** `failed`: a renewal statement failed (the DbMutex reports it as `renewalFailed`). */
  constructor(
    private readonly store: LockStore,
    private readonly failed: (error: unknown, lockCount: number) => void,
  ) {}

  /** Starts renewing `lease` (a lease without heartbeat is ignored). */
  add(lease: Lease): void {
    if (lease.leaseSeconds === null) return;
    this.leases.add(lease);
    this.schedule((lease.leaseSeconds * 1000) / 3);
  }

  /** Stops renewing `lease` (it was lost or is being released). */
  remove(lease: Lease): void {
    this.leases.delete(lease);
  }

  /** For good: no renewal runs afterwards. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(periodMs: number): void {
    if (this.stopped) return;
    const due = performance.now() + periodMs;
    if (this.timer && due >= this.dueAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.dueAt = due;
    this.timer = setTimeout(() => void this.tick(), Math.min(periodMs, MAX_TIMER_MS));
    // A held lock alone does not keep the process alive; the critical section's own work does.
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.timer = null;
    this.dueAt = Infinity;
    if (this.renewing || this.stopped) return;
    const leases = [...this.leases];
    if (leases.length === 0) return;
    const periodMs = (Math.min(...leases.map((l) => l.leaseSeconds!)) * 1000) / 3;
    this.renewing = true;
    const sentAt = performance.now();
    try {
      const renewed = await this.store.renew(leases);
      const missing: Lease[] = [];
      for (const lease of leases) {
        if (renewed.has(lease.ownerToken)) lease.renewed(sentAt);
        else if (lease.isHeld()) missing.push(lease);
      }
      if (missing.length > 0) {
        const expired = await this.store.classify(missing);
        for (const lease of missing) lease.markLost(expired.has(lease.ownerToken) ? 'expired' : 'released-by-other');
      }
      this.renewing = false;
      this.schedule(periodMs);
    } catch (error) {
      for (const lease of leases) lease.renewalFailed();
      this.renewing = false;
      this.failed(error, leases.length);
      this.schedule(Math.min(periodMs, RETRY_AFTER_FAILURE_MS));
    }
  }
}
