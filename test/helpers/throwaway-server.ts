/**
 * A database server of the test's own, for faults that would disturb every other test on the shared
 * one: stopping and restarting the server while locks are held. Each runs in a controller process
 * (test/fixtures/safety/pg-server.js, mariadb-server.js) that keeps the data across stop/start and
 * deletes it at dispose, even if the test process dies:
 * - PostgreSQL: an embedded PostgreSQL (scripts/embedded-pg.js);
 * - MariaDB: a server from the machine's MariaDB binaries, `mariadb-install-db` into a temporary
 *   folder, on a free loopback port of its own (never the machine's server).
 */
import * as mariadb from 'mariadb';
import { Client } from 'pg';
import { withDatabase } from './db';
import { ChildGroup } from './children';
import { ask } from './child-commands';

/** The controller process's side of a throw-away server: commands over stdin, answers on stdout. */
abstract class ControlledServer {
  private readonly group = new ChildGroup();

  protected constructor(
    private readonly controller: ReturnType<ChildGroup['spawn']>,
    protected readonly serverUrl: string,
    group: ChildGroup,
  ) {
    this.group.adopt(group);
  }

  protected static async spawnController(fixture: string, name: string): Promise<{ group: ChildGroup; controller: ReturnType<ChildGroup['spawn']>; url: string }> {
    const group = new ChildGroup();
    const controller = group.spawn(fixture, {}, { name });
    try {
      const up = await controller.waitForType('up', 120_000);
      return { group, controller, url: up.url as string };
    } catch (error) {
      await group.dispose();
      throw error;
    }
  }

  /** URL of a database on this server (same port across restarts). */
  url(database: string): string {
    return withDatabase(this.serverUrl, database);
  }

  abstract createDatabase(name: string): Promise<string>;

  /** Starts again on the same port and data, so clients reconnect to the same address. */
  start(): Promise<void> {
    return this.command('start');
  }

  async dispose(): Promise<void> {
    await this.command('exit', 60_000).catch(() => undefined);
    await this.controller.waitForExit(30_000).catch(() => undefined);
    await this.group.dispose();
  }

  protected async command(word: string, timeout = 120_000): Promise<void> {
    await ask(this.controller, word, '', timeout);
  }
}

/** A throw-away MariaDB server; `scheme` picks the Sequelize dialect of its URLs (`mariadb` or `mysql`). */
export class ThrowawayMariaDb extends ControlledServer {
  static async start(scheme: 'mariadb' | 'mysql' = 'mariadb'): Promise<ThrowawayMariaDb> {
    const { group, controller, url } = await ControlledServer.spawnController('mariadb-server.js', 'throw-away MariaDB');
    return new ThrowawayMariaDb(controller, url.replace(/^mariadb:/, `${scheme}:`), group);
  }

  async createDatabase(name: string): Promise<string> {
    const u = new URL(this.serverUrl);
    const conn = await mariadb.createConnection({ host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username) });
    try {
      await conn.query(`CREATE DATABASE \`${name}\``);
    } finally {
      await conn.end();
    }
    return this.url(name);
  }

  /** SIGKILL: the server crashes, every session is cut, InnoDB recovers at the next start. */
  kill(): Promise<void> {
    return this.command('kill');
  }

  /** A clean shutdown (SIGTERM): every session is disconnected. */
  shutdown(): Promise<void> {
    return this.command('shutdown');
  }
}

export class ThrowawayServer extends ControlledServer {
  static async start(): Promise<ThrowawayServer> {
    const { group, controller, url } = await ControlledServer.spawnController('pg-server.js', 'throw-away PostgreSQL');
    return new ThrowawayServer(controller, url, group);
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
}

