/**
 * Waiters of one process, per lock id, in arrival order. A release notice wakes the waiter at the
 * head of its lock id's queue only (FIFO within the process); the others keep their jittered poll
 * timers as a fallback, so a missed or misdirected notice costs latency, never progress.
 */
import { DbMutexError } from './errors';

export class Waiter {
  private notified = false;
  private resolve: (() => void) | null = null;
  private reject: ((error: unknown) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly lockId: string) {}

  /** Forget a notice that arrived before the attempt that is about to start. */
  clearNotice(): void {
    this.notified = false;
  }

  /** Sleeps until woken, `ms` elapses, or `signal` aborts (rejects with its reason). */
  wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.notified) {
      this.notified = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => this.finish(signal!.reason, true);
      this.resolve = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.reject = (error) => {
        signal?.removeEventListener('abort', onAbort);
        reject(error);
      };
      this.timer = setTimeout(() => this.finish(undefined, false), ms);
      if (signal) {
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  wake(): void {
    if (this.resolve) this.finish(undefined, false);
    else this.notified = true;
  }

  fail(error: unknown): void {
    if (this.reject) this.finish(error, true);
  }

  private finish(error: unknown, failed: boolean): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const resolve = this.resolve;
    const reject = this.reject;
    this.resolve = null;
    this.reject = null;
    if (failed) reject?.(error);
    else resolve?.();
  }
}

export class WaitQueue {
  private readonly byLockId = new Map<string, Waiter[]>();

  add(lockId: string): Waiter {
    const waiter = new Waiter(lockId);
    const queue = this.byLockId.get(lockId);
    if (queue) queue.push(waiter);
    else this.byLockId.set(lockId, [waiter]);
    return waiter;
  }

  /** True when it was the last waiter of its lock id. */
  remove(waiter: Waiter): boolean {
    const queue = this.byLockId.get(waiter.lockId);
    if (!queue) return false;
    const i = queue.indexOf(waiter);
    if (i >= 0) queue.splice(i, 1);
    if (queue.length > 0) return false;
    this.byLockId.delete(waiter.lockId);
    return true;
  }

  wake(lockId: string): void {
    this.byLockId.get(lockId)?.[0]?.wake();
  }

  wakeAll(): void {
    for (const queue of this.byLockId.values()) queue[0]?.wake();
  }

  closeAll(): void {
    for (const [lockId, queue] of this.byLockId) {
      for (const waiter of queue) waiter.fail(new DbMutexError(lockId, { code: 'DB_MUTEX_CLOSED' }));
    }
  }

  /** True while some waiter waits under `lockId`. */
  has(lockId: string): boolean {
    return this.byLockId.has(lockId);
  }

  get size(): number {
    let n = 0;
    for (const queue of this.byLockId.values()) n += queue.length;
    return n;
  }
}
