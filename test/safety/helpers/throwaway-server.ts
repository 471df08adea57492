/**
 * A database server of the test's own, for faults that would disturb every other test on the shared
 * one: stopping and restarting the server while locks are held. PostgreSQL-specific: an embedded
 * PostgreSQL (scripts/embedded-pg.js) run by the fixture pg-server.js, its data kept across stop/start
 * and deleted at dispose.
 */
import { Client } from 'pg';
import { withDatabase } from '../../helpers/db';
import { ChildGroup } from './children';

export class ThrowawayServer {
  private readonly group = new ChildGroup();
  private nextId = 1;

  private constructor(
    private readonly controller: ReturnType<ChildGroup['spawn']>,
    private readonly serverUrl: string,
  ) {}

  static async start(): Promise<ThrowawayServer> {
    const group = new ChildGroup();
    const controller = group.spawn('pg-server.js', {}, { name: 'throw-away PostgreSQL' });
    const up = await controller.waitForType('up', 120_000);
    const server = new ThrowawayServer(controller, up.url as string);
    server.group.adopt(group);
    return server;
  }

  /** URL of a database on this server (same port across restarts). */
  url(database: string): string {
    return withDatabase(this.serverUrl, database);
  }

  async createDatabase(name: string): Promise<string> {
    const client = new Client({ connectionString: this.serverUrl });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name}"`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  /** Fast shutdown: every session is disconnected, as in a server restart or failover. */
  stop(): Promise<void> {
    return this.command('stop');
  }

  /** Starts again on the same port and data, so clients reconnect to the same address. */
  start(): Promise<void> {
    return this.command('start');
  }

  async dispose(): Promise<void> {
    await this.command('exit', 60_000).catch(() => undefined);
    await this.controller.waitForExit(30_000).catch(() => undefined);
    await this.group.dispose();
  }

  private async command(word: string, timeout = 120_000): Promise<void> {
    const id = String(this.nextId++);
    this.controller.tell(`${word} ${id}`);
    const reply = await this.controller.waitFor(
      (m) => (m.type === 'done' || m.type === 'failed') && m.id === id,
      timeout,
      `an answer to "${word}"`,
    );
    if (reply.type === 'failed') throw new Error(`throw-away server: ${word} failed: ${JSON.stringify(reply.error)}`);
  }
}
