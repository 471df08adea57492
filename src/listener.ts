/**
 * One dedicated LISTEN connection per DbMutex (PostgreSQL), outside the pool, so waiting never
 * holds a pooled connection per waiter. It wakes waiters when a lock is released and tells holders
 * at once when their lock was force-released. If it drops, it reconnects with backoff; in the
 * meantime waiters fall back to polling and holders to the next renewal, so a missed notice only
 * costs latency, never safety.
 */
import type { StatementRunner } from './connection';
import type { ReleaseNotice } from './dialects/types';

interface PgNotifyingClient {
  query(text: string): Promise<unknown>;
  on(event: 'notification', cb: (msg: { channel: string; payload?: string }) => void): void;
  on(event: 'error' | 'end', cb: (err?: Error) => void): void;
  removeAllListeners(event?: string): void;
  connection?: { stream?: { unref?: () => void } };
}

export interface ListenerHooks {
  onNotice(notice: ReleaseNotice): void;
  onError(error: unknown): void;
  /** Called after every (re)connect: notices may have been missed while down. */
  onReady(): void;
}

export class ReleaseListener {
  private client: PgNotifyingClient | null = null;
  private connecting: Promise<void> | null = null;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs = 100;

  constructor(
    private readonly runner: StatementRunner,
    private readonly channel: string,
    private readonly parse: (payload: string) => ReleaseNotice | null,
    private readonly hooks: ListenerHooks,
  ) {}

  get ready(): boolean {
    return this.client !== null;
  }

  /** Starts listening if not already; resolves once LISTEN is active (or the attempt failed). */
  start(): Promise<void> {
    if (this.closed || this.client) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connect(): Promise<void> {
    let client: PgNotifyingClient | null = null;
    try {
      client = (await this.runner.openDedicated()) as PgNotifyingClient;
      if (this.closed) {
        await this.runner.closeDedicated(client);
        return;
      }
      client.on('notification', (msg) => {
        if (msg.channel !== this.channel || !msg.payload) return;
        const notice = this.parse(msg.payload);
        if (notice) this.hooks.onNotice(notice);
      });
      const onDown = (err?: Error) => this.lost(client!, err);
      client.on('error', onDown);
      client.on('end', onDown);
      await client.query(`LISTEN "${this.channel}"`);
      // The listener alone must not keep the process alive: timers of waiters and holders do that.
      client.connection?.stream?.unref?.();
      this.client = client;
      this.backoffMs = 100;
      this.hooks.onReady();
    } catch (error) {
      this.hooks.onError(error);
      if (client) await this.runner.closeDedicated(client).catch(() => undefined);
      this.scheduleRetry();
    }
  }

  private lost(client: PgNotifyingClient, error?: Error): void {
    if (this.client !== client) return;
    this.client = null;
    client.removeAllListeners('notification');
    if (error) this.hooks.onError(error);
    this.runner.closeDedicated(client).catch(() => undefined);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 5000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.start();
    }, delay);
    this.retryTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await this.connecting?.catch(() => undefined);
    const client = this.client;
    this.client = null;
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await this.runner.closeDedicated(client).catch(() => undefined);
    }
  }
}
