/**
 * One dedicated LISTEN connection per DbMutex (PostgreSQL), outside the pool, so waiting never
 * holds a pooled connection per waiter. It wakes waiters when a lock is released and tells holders
 * at once when their lock was force-released. If it drops, it reconnects with backoff; in the
 * meantime waiters fall back to polling and holders to the next renewal, so a missed notice only
 * costs latency, never safety.
 *
 * While this process waits for a lock id, the connection also marks that id as awaited (`mark`): a
 * release notifies only when some process has marked its id, so releases nobody waits for cost no
 * NOTIFY. The marks live and die with the connection's session.
 *
 * It is open only while someone needs it: the DbMutex calls `start()` when this process begins to
 * wait for or hold a lock and `stop()` once nobody has for a while, so an idle process costs no
 * connection beyond its pool. `stop()` is not final: `start()` opens a new connection. `close()` is.
 */
import type { ReleaseNotice } from './dialects/types';

export interface PgNotifyingClient {
  query(text: string, values?: unknown[]): Promise<unknown>;
  on(event: 'notification', cb: (msg: { channel: string; payload?: string }) => void): void;
  on(event: 'error' | 'end', cb: (err?: Error) => void): void;
  removeAllListeners(event?: string): void;
  connection?: { stream?: { unref?: () => void } };
}

/** Opens and closes the connection the listener uses (the pool's settings, or `listenUrl`). */
export interface ListenConnector {
  open(): Promise<PgNotifyingClient>;
  close(client: PgNotifyingClient): Promise<void>;
}

export interface ListenerHooks {
  onNotice(notice: ReleaseNotice): void;
  onError(error: unknown): void;
  /**
   * Called after every (re)connect: notices may have been missed while down. `reconnected`: this
   * connect follows a dropped connection or a failed attempt (not a start after an idle stop).
   */
  onReady(info: { reconnected: boolean }): void;
}

/** Idle marks kept at most per listener (see `ReleaseListener.idle`). */
const MAX_IDLE_MARKS = 256;

/** What marking a lock id as awaited came to (see `ReleaseListener.mark`). */
export type MarkOutcome =
  /** Marked on the live connection: a release of the id from now on notifies. */
  | 'marked'
  /** A release of the id is committing right now: try to acquire again at once. */
  | 'busy'
  /** No connection (or no marks on this database): notices cannot be relied on, keep polling. */
  | 'unavailable';

export class ReleaseListener {
  private client: PgNotifyingClient | null = null;
  /** Marks taken or being taken on the current connection, by lock id (each resolves true once taken). */
  private marks = new Map<string, Promise<boolean>>();
  /** The lock ids whose mark is in place on the current connection (a synchronous view of `marks`). */
  private readonly marked = new Set<string>();
  /**
   * Marks nobody in this process waits under any more, with the monotonic ms since when. They stay
   * for `markIdleMs`, so a process that waits for the same lock again and again (a contended lock)
   * does not pay a mark and an extra attempt per wait; then they are given back.
   */
  private readonly idleMarks = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private connecting: Promise<void> | null = null;
  /** Whether a connection is wanted now (between start() and stop()). */
  private wanted = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs = 100;
  /** A connection dropped or an attempt failed since the last successful connect (for metrics). */
  private interrupted = false;

  constructor(
    private readonly connector: ListenConnector,
    private readonly channel: string,
    private readonly parse: (payload: string) => ReleaseNotice | null,
    private readonly hooks: ListenerHooks,
    private readonly markSql: { mark: string; unmark: string } | null = null,
    private readonly markIdleMs = 10_000,
  ) {}

  /** True when a release of `lockId` from now on notifies this connection (its mark is in place). */
  isMarked(lockId: string): boolean {
    return this.marked.has(lockId);
  }

  /**
   * Marks `lockId` as awaited by this process (once, however many of its waiters ask). The caller
   * must try to acquire again after a fresh mark before sleeping: a release that committed before
   * the mark did not notify.
   */
  async mark(lockId: string): Promise<MarkOutcome> {
    const client = this.client;
    if (!client || !this.markSql) return 'unavailable';
    this.idleMarks.delete(lockId);
    let pending = this.marks.get(lockId);
    if (!pending) {
      const marks = this.marks;
      const taking = client.query(this.markSql.mark, [lockId]).then((r) => (r as { rows: { marked?: unknown }[] }).rows[0]?.marked === true);
      pending = taking;
      marks.set(lockId, taking);
      taking.then(
        (ok) => {
          if (marks.get(lockId) !== taking) return;
          if (ok && marks === this.marks) this.marked.add(lockId);
          // Not taken (a release was committing): the next waiter's attempt asks again.
          else if (!ok) marks.delete(lockId);
        },
        () => {
          if (marks.get(lockId) === taking) marks.delete(lockId);
        },
      );
    }
    try {
      return (await pending) ? (this.client === client ? 'marked' : 'unavailable') : 'busy';
    } catch {
      // The connection failed; its loss is handled (and reported) by the listener itself.
      return 'unavailable';
    }
  }

  /** A waiter of `lockId` in this process is back (its mark, if still in place, is in use again). */
  awaited(lockId: string): void {
    this.idleMarks.delete(lockId);
  }

  /**
   * This process no longer waits for `lockId`: its mark is given back after `markIdleMs` unless a
   * waiter comes back by then. At most MAX_IDLE_MARKS stay idle (the oldest go first): each is an
   * entry in the server's shared lock table.
   */
  idle(lockId: string): void {
    if (!this.marks.has(lockId)) return;
    this.idleMarks.delete(lockId);
    this.idleMarks.set(lockId, performance.now());
    if (this.idleMarks.size > MAX_IDLE_MARKS) {
      const oldest = this.idleMarks.keys().next().value as string;
      this.idleMarks.delete(oldest);
      this.unmark(oldest);
    }
    this.sweepTimer ??= this.armSweep(this.markIdleMs);
  }

  private armSweep(delayMs: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.sweepTimer = null;
      const now = performance.now();
      let next = Infinity;
      for (const [lockId, since] of this.idleMarks) {
        const left = since + this.markIdleMs - now;
        if (left > 0) {
          next = Math.min(next, left);
          continue;
        }
        this.idleMarks.delete(lockId);
        this.unmark(lockId);
      }
      if (next !== Infinity) this.sweepTimer = this.armSweep(next);
    }, delayMs);
    // Idle marks alone must not keep the process alive.
    timer.unref();
    return timer;
  }

  /** Gives the mark of `lockId` back now (on the connection that took it). */
  private unmark(lockId: string): void {
    const pending = this.marks.get(lockId);
    if (!pending) return;
    this.marks.delete(lockId);
    this.marked.delete(lockId);
    const client = this.client;
    const sql = this.markSql;
    if (!client || !sql) return;
    // Shared session locks are counted: each mark taken is given back exactly once, so a newer mark
    // of the same id taken meanwhile stays in place whatever the order of the two statements.
    void pending
      .then((taken) => (taken && this.client === client ? client.query(sql.unmark, [lockId]) : undefined))
      .catch(() => undefined);
  }

  /** The connection's marks ended with it. */
  private forgetMarks(): void {
    this.marks = new Map();
    this.marked.clear();
    this.idleMarks.clear();
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
  }

  get ready(): boolean {
    return this.client !== null;
  }

  /** Starts listening if not already; resolves once LISTEN is active (or the attempt failed). */
  start(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.wanted = true;
    if (this.client) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /** Closes the connection until the next start(). */
  async stop(): Promise<void> {
    this.wanted = false;
    this.cancelRetry();
    const client = this.client;
    this.client = null;
    this.forgetMarks();
    if (client) await this.discard(client);
  }

  private async connect(): Promise<void> {
    let client: PgNotifyingClient | null = null;
    try {
      client = await this.connector.open();
      client.on('notification', (msg) => {
        if (msg.channel !== this.channel || !msg.payload) return;
        const notice = this.parse(msg.payload);
        if (notice) this.hooks.onNotice(notice);
      });
      const onDown = (err?: Error) => this.lost(client!, err);
      client.on('error', onDown);
      client.on('end', onDown);
      await client.query(`LISTEN "${this.channel}"`);
      // stop() or close() ran while connecting: nobody wants this connection any more.
      if (this.closed || !this.wanted) {
        await this.discard(client);
        return;
      }
      // The listener alone must not keep the process alive: timers of waiters and holders do that.
      client.connection?.stream?.unref?.();
      this.client = client;
      this.backoffMs = 100;
      const reconnected = this.interrupted;
      this.interrupted = false;
      this.hooks.onReady({ reconnected });
    } catch (error) {
      this.hooks.onError(error);
      if (client) await this.discard(client);
      this.scheduleRetry();
    }
  }

  private lost(client: PgNotifyingClient, error?: Error): void {
    if (this.client !== client) return;
    this.client = null;
    this.forgetMarks();
    client.removeAllListeners('notification');
    if (error) this.hooks.onError(error);
    this.connector.close(client).catch(() => undefined);
    this.scheduleRetry();
  }

  private async discard(client: PgNotifyingClient): Promise<void> {
    client.removeAllListeners();
    client.on('error', () => undefined);
    await this.connector.close(client).catch(() => undefined);
  }

  private scheduleRetry(): void {
    this.interrupted = true;
    if (this.closed || !this.wanted || this.retryTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 5000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.wanted) void this.start();
    }, delay);
    this.retryTimer.unref();
  }

  private cancelRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wanted = false;
    this.cancelRetry();
    await this.connecting?.catch(() => undefined);
    const client = this.client;
    this.client = null;
    this.forgetMarks();
    if (client) await this.discard(client);
  }
}
