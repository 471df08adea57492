/**
 * One dedicated LISTEN connection per DbMutex (PostgreSQL), outside the pool, so waiting never
 * holds a pooled connection per waiter. It wakes waiters when a lock is released and tells holders
 * at once when their lock was force-released. If it drops, it reconnects with backoff; in the
 * meantime waiters fall back to polling and holders to the next renewal, so a missed notice only
 * costs latency, never safety.
 *
 * It is open only while someone needs it: the DbMutex calls `start()` when this process begins to
 * wait for or hold a lock and `stop()` once nobody has for a while, so an idle process costs no
 * connection beyond its pool. `stop()` is not final: `start()` opens a new connection. `close()` is.
 */
import type { ReleaseNotice } from './dialects/types';

export interface PgNotifyingClient {
  query(text: string): Promise<unknown>;
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

export class ReleaseListener {
  private client: PgNotifyingClient | null = null;
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
  ) {}

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
    if (client) await this.discard(client);
  }
}
