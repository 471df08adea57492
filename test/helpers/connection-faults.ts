/**
 * The fault injectors of the connection-faults probe (and the leak test's connection counts), per
 * database. The slow-statement triggers of PostgreSQL and MariaDB come from safety-dialect.ts; the rest:
 * - PostgreSQL: connections labelled with `application_name`, terminated with `pg_terminate_backend`.
 * - MariaDB: killing the lock's own connections (`KILL CONNECTION`). MariaDB shows no client-chosen
 *   label in its process list, so the connections are labelled on the client side instead: a
 *   Sequelize `afterConnect` hook records the server's connection id (CONNECTION_ID(), the driver's
 *   `threadId`) of every connection the labelled instance opens.
 * - SQLite has no server, no connections to kill and no sleep in SQL: a slow database is another
 *   process holding the file's write lock (`BEGIN IMMEDIATE`), which every lock statement waits for
 *   up to its busy timeout (`statementTimeoutMs`).
 */
import type { Options } from 'sequelize';
import type { TestContext } from './db';
import type { ChildGroup } from './children';
import { safetyDialect } from './safety-dialect';
import { SqliteWriter } from './sqlite-faults';

/** Killing the server side of a DbMutex's connections. */
export interface ConnectionKiller {
  /** How the connections are killed, for test names and notes. */
  readonly how: string;
  /** Sequelize options that label every connection of an instance, so they can be found and killed. */
  labelledConnection(label: string): Options;
  /** Kills every connection with this label that is older than a moment; returns how many. */
  terminate(label: string): Promise<number>;
  /** Live connections with this label. */
  count(label: string): Promise<number>;
  /** LISTEN connections with this label; null where the database has no release notices. */
  countListeners(label: string): Promise<number> | null;
}

/**
 * Statements of the lock table made slow. `holder` limits the slowness to the statements writing rows
 * of that holder label, where the database can tell them apart (not SQLite: its write lock is one for
 * the whole file).
 */
export interface Slowdown {
  readonly how: string;
  readonly perHolder: boolean;
  install(tableName: string): Promise<void>;
  /** From now on, lock statements (of `holder`'s rows, where supported) do not finish by themselves. */
  begin(holder?: string): Promise<void>;
  /** Lock statements run normally again (statements already slowed may still be finishing on the server). */
  end(): Promise<void>;
  /** The error of a lock statement that ran out of statementTimeoutMs, as the driver words it. */
  readonly timeoutMessage: RegExp;
}

/** Sessions killed shortly after they connect can crash the client (see postgresKiller): only older ones are killed. */
const MIN_AGE_MS = 250;

function mariadbKiller(ctx: TestContext): ConnectionKiller {
  const connections = new Map<string, Map<number, number>>();
  return {
    how: 'KILL CONNECTION',
    labelledConnection(label) {
      const ids = new Map<number, number>();
      connections.set(label, ids);
      return {
        hooks: {
          afterConnect(connection: unknown) {
            const id = (connection as { threadId?: unknown }).threadId;
            if (typeof id === 'number') ids.set(id, performance.now());
          },
        },
      };
    },
    async terminate(label) {
      const live = await liveIds(ctx, connections.get(label));
      let killed = 0;
      for (const [id, connectedAt] of live) {
        if (performance.now() - connectedAt < MIN_AGE_MS) continue;
        try {
          await ctx.exec(`KILL CONNECTION ${id}`);
          killed++;
        } catch {
          // It ended by itself in the meantime.
        }
      }
      return killed;
    },
    async count(label) {
      return (await liveIds(ctx, connections.get(label))).length;
    },
    countListeners: () => null,
  };
}

async function liveIds(ctx: TestContext, ids: Map<number, number> | undefined): Promise<[number, number][]> {
  if (!ids || ids.size === 0) return [];
  const rows = await ctx.exec<{ ID: unknown }>(`SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN (${[...ids.keys()].join(', ')})`);
  const live = new Set(rows.map((r) => Number(r.ID)));
  return [...ids].filter(([id]) => live.has(id));
}

/** PostgreSQL: connections labelled with `application_name`, found in pg_stat_activity. */
function postgresKiller(ctx: TestContext): ConnectionKiller {
  const one = async (sql: string, params: unknown[]) => Number((await ctx.exec<{ n: unknown }>(sql, params))[0]!.n);
  return {
    how: 'pg_terminate_backend',
    labelledConnection: (label) => ({ dialectOptions: { application_name: label } }),
    terminate: (label) =>
      // Only connections older than a moment: Sequelize attaches its 'error' listener to a new
      // connection one tick after the connection is ready, so a backend killed in exactly that gap
      // crashes the client process with an unhandled 'error' event (a Sequelize race, seen once under
      // heavy load; not what this fault is about: the heartbeat's established connections).
      one(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = ? AND pid <> pg_backend_pid()
            AND backend_start < clock_timestamp() - interval '${MIN_AGE_MS} milliseconds'`,
        [label],
      ),
    count: (label) =>
      one('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = ?', [label]),
    countListeners: (label) =>
      one(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'
          AND application_name = ?`,
        [label],
      ),
  };
}

/** Null on SQLite, which has no server connections to kill. */
export function connectionKiller(ctx: TestContext): ConnectionKiller | null {
  if (ctx.dialect === 'sqlite') return null;
  return ctx.dialect === 'postgres' ? postgresKiller(ctx) : mariadbKiller(ctx);
}

export function slowdown(ctx: TestContext, group: ChildGroup): Slowdown {
  if (ctx.dialect === 'sqlite') {
    let writer: SqliteWriter | null = null;
    let holding = false;
    return {
      how: 'another process holding the write lock (BEGIN IMMEDIATE)',
      perHolder: false,
      async install() {
        writer = SqliteWriter.spawn(group, ctx.db.url.slice('sqlite:'.length), 'SQLite write-lock holder');
      },
      async begin() {
        await writer!.hold();
        holding = true;
      },
      async end() {
        if (!holding) return;
        holding = false;
        await writer!.rollback();
      },
      timeoutMessage: /SQLITE_BUSY/,
    };
  }
  const db = safetyDialect(ctx);
  return {
    how: ctx.dialect === 'postgres' ? 'a trigger that calls pg_sleep' : 'a trigger that calls SLEEP()',
    perHolder: true,
    install: (tableName) => db.installSlowTrigger(tableName),
    // Far beyond every statement timeout of the tests: a slowed statement never finishes on its own.
    begin: (holder) => db.setSlowness(SLOW_STATEMENT_MS, holder),
    end: () => db.setSlowness(0),
    // pg: the client's query_timeout; MariaDB: the server's max_statement_time (both drivers).
    timeoutMessage: ctx.dialect === 'postgres' ? /timeout/i : /max_statement_time exceeded/,
  };
}

/** How long a slowed statement sleeps in the triggers. */
export const SLOW_STATEMENT_MS = 3000;
