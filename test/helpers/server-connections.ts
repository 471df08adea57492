/**
 * Counting a DbMutex's connections where the database sees them, instead of reading the library's
 * private fields: a check of "no connection per waiter" or "one listener" must hold on the server.
 * - PostgreSQL: pg_stat_activity, by the `application_name` the DbMutex's Sequelize connects with
 *   (`connectionTag()`), so other pools of the same test file do not count.
 * - MariaDB: information_schema.PROCESSLIST of the test database (no per-connection tag without
 *   performance_schema): compare with a count taken before, while the file's other pools stay idle.
 * - SQLite (no server): the open handles of the database file in this process (/proc/self/fd); each
 *   connection opens the file once.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import type { Options } from 'sequelize';
import type { TestContext } from './db';

/**
 * A PostgreSQL backend (pg_stat_activity row) is a DbMutex's LISTEN connection when the last
 * statement it ran was LISTEN or a waiter's mark/unmark of a lock id (the only statements that
 * connection runs; see ReleaseListener.mark).
 */
export const LISTENER_BACKEND_SQL = `(query LIKE 'LISTEN %' OR query LIKE 'SELECT pg\\_%advisory\\_%lock\\_shared(%')`;

/** Sequelize options that make a pool's PostgreSQL connections (the listener's too) recognisable. */
export function connectionTag(name: string, dialect: TestContext['dialect']): Options {
  return dialect === 'postgres' ? { dialectOptions: { application_name: name } } : {};
}

export interface ServerConnections {
  /** Connections to the test database: of the tagged pool on PostgreSQL, all of them elsewhere. */
  total: number;
  /** Of those, connections that ran LISTEN (PostgreSQL); 0 elsewhere, where nothing listens. */
  listening: number;
}

export async function serverConnections(ctx: TestContext, tag: string): Promise<ServerConnections> {
  if (ctx.dialect === 'postgres') {
    const [row] = await ctx.exec<{ total: unknown; listening: unknown }>(
      `SELECT count(*) AS total, count(*) FILTER (WHERE ${LISTENER_BACKEND_SQL}) AS listening
        FROM pg_stat_activity WHERE datname = current_database() AND application_name = ?`,
      [tag],
    );
    return { total: Number(row!.total), listening: Number(row!.listening) };
  }
  if (ctx.dialect === 'sqlite') {
    const file = ctx.db.url.slice('sqlite:'.length);
    let total = 0;
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`) === file) total++;
      } catch {
        // closed while we looked
      }
    }
    return { total, listening: 0 };
  }
  const [row] = await ctx.exec<{ n: unknown }>('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = DATABASE()');
  return { total: Number(row!.n), listening: 0 };
}
