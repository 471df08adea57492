/**
 * Per-file isolation, on whichever database DATABASE_URL names (the suite is one suite for every
 * dialect, selected by the URL's scheme):
 * - `postgres://…`: a fresh database per test file on that server, dropped (WITH FORCE) at the end;
 * - `mariadb://…` / `mysql://…`: a fresh database per test file on that MariaDB server (the scheme
 *   picks the Sequelize dialect, and so the driver: `mariadb` or `mysql2`);
 * - `sqlite:…`: the URL only selects the dialect; each test file gets its own temporary database
 *   FILE (so several connections and processes can share it), deleted at the end.
 * Files run in parallel and leave nothing behind.
 *
 * Dialect-specific SQL of the tests lives here, in `TEST_SQL`, and nowhere else: tests use
 * `ctx.exec()` and the `ctx.sql` helpers.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as mariadb from 'mariadb';
import { Client } from 'pg';
import { QueryTypes, Sequelize, type Options } from 'sequelize';
import { initDbMutex, type DbMutex, type DbMutexOptions } from '../../src';

const RELEASED_OWNER_TOKEN = '00000000-0000-0000-0000-000000000000';

export type TestDialect = 'postgres' | 'mariadb' | 'mysql' | 'sqlite';

export function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the tests through jest (its global setup provides one)');
  return url;
}

/**
 * The pooler DATABASE_URL goes through, if any (`.ci/run` sets it): `transaction` or `session` for a
 * PgBouncer in that pool mode. DB_MUTEX_TEST_DIRECT_URL then names the PostgreSQL server behind it,
 * for what a pooler cannot carry (admin SQL, raw clients, LISTEN).
 */
export const pooler: 'transaction' | 'session' | null = (() => {
  const v = process.env.DB_MUTEX_TEST_POOLER;
  if (!v) return null;
  if (v !== 'transaction' && v !== 'session') throw new Error(`DB_MUTEX_TEST_POOLER must be "transaction" or "session", got ${v}`);
  if (!process.env.DB_MUTEX_TEST_DIRECT_URL) throw new Error('DB_MUTEX_TEST_POOLER needs DB_MUTEX_TEST_DIRECT_URL (the server behind the pooler)');
  return v;
})();

/** The database server itself, bypassing any pooler. */
export function directServerUrl(): string {
  return process.env.DB_MUTEX_TEST_DIRECT_URL || serverUrl();
}

/** The Sequelize dialect a database URL selects. */
export function dialectOf(url: string): TestDialect {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') return 'postgres';
  if (scheme === 'mariadb' || scheme === 'mysql' || scheme === 'sqlite') return scheme;
  throw new Error(`DATABASE_URL has an unsupported scheme "${scheme}:" (use postgres://, mariadb://, mysql:// or sqlite:)`);
}

/** The dialect this test run uses. */
export const dialect: TestDialect = dialectOf(serverUrl());
/** Whether releases wake waiters and holders at once (LISTEN/NOTIFY); the others poll. */
export const notifies = dialect === 'postgres';
/** Both Sequelize dialects that talk to the MariaDB server. */
export const isMariaDb = dialect === 'mariadb' || dialect === 'mysql';

/** `it` when the condition holds, `it.skip` otherwise (for claims that only one dialect can make). */
export function itIf(condition: boolean): jest.It {
  return condition ? it : it.skip;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export interface TestDatabase {
  name: string;
  /** Through the pooler when the run has one. */
  url: string;
  /** The same database on the server itself (equal to `url` without a pooler). */
  directUrl: string;
  dialect: TestDialect;
  drop(): Promise<void>;
}

async function pgAdmin<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: directServerUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function mariadbAdmin(sql: string): Promise<void> {
  const u = new URL(serverUrl());
  const conn = await mariadb.createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  });
  try {
    await conn.query(sql);
  } finally {
    await conn.end();
  }
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `dbm_test_${randomBytes(6).toString('hex')}`;
  if (dialect === 'postgres') {
    await pgAdmin((c) => c.query(`CREATE DATABASE "${name}"`));
    return {
      name,
      url: withDatabase(serverUrl(), name),
      directUrl: withDatabase(directServerUrl(), name),
      dialect,
      drop: () => pgAdmin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
    };
  }
  if (isMariaDb) {
    await mariadbAdmin(`CREATE DATABASE \`${name}\``);
    const url = withDatabase(serverUrl(), name);
    return { name, url, directUrl: url, dialect, drop: () => mariadbAdmin(`DROP DATABASE IF EXISTS \`${name}\``) };
  }
  const dir = mkdtempSync(join(tmpdir(), 'dbm-test-'));
  const url = `sqlite:${join(dir, `${name}.sqlite`)}`;
  return {
    name,
    url,
    directUrl: url,
    dialect,
    drop: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * What a DbMutex needs behind this run's pooler (none without one): in transaction mode unnamed
 * statements and a LISTEN connection straight to the server, as the README's "Behind PgBouncer" says.
 */
export function poolerMutexOptions(db: Pick<TestDatabase, 'directUrl'>): DbMutexOptions {
  return pooler === 'transaction' ? { preparedStatements: false, listenUrl: db.directUrl } : {};
}

export function makeSequelize(url: string, options: Options = {}): Sequelize {
  return new Sequelize(url, { logging: false, pool: { max: 10 }, ...options });
}

/** The SQL that differs per dialect, for the test helpers only. `?` are Sequelize replacements. */
interface DialectTestSql {
  /** An instant `?` seconds before the database's now, in the form the lock table stores. */
  secondsAgo: string;
  /** Selects the database clock as epoch milliseconds, in a column `ms`. */
  nowMs: string;
  /** Casts a BIGINT column to text (so no driver turns it into a Number or BigInt on its own). */
  bigintAsText(column: string): string;
  /** `code` of the driver error for a table that does not exist. */
  noSuchTableCode: string;
  /** Statements that empty a (quoted) table and restart its auto-increment ids at 1. */
  emptyAndRestartIds(quotedTable: string, table: string): string[];
}

const MARIADB_SQL: DialectTestSql = {
  secondsAgo: 'UTC_TIMESTAMP(6) - INTERVAL CAST(ROUND(? * 1000000) AS SIGNED) MICROSECOND',
  nowMs: "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, TIMESTAMP'1970-01-01 00:00:00', UTC_TIMESTAMP(6)) / 1000 AS CHAR) AS ms",
  bigintAsText: (column) => `CAST(${column} AS CHAR)`,
  noSuchTableCode: 'ER_NO_SUCH_TABLE',
  // TRUNCATE recreates the InnoDB table, AUTO_INCREMENT included.
  emptyAndRestartIds: (quoted) => [`TRUNCATE TABLE ${quoted}`],
};

const TEST_SQL: Record<TestDialect, DialectTestSql> = {
  postgres: {
    secondsAgo: "now() - (? * interval '1 second')",
    nowMs: 'SELECT (extract(epoch from now()) * 1000)::float8 AS ms',
    bigintAsText: (column) => `CAST(${column} AS text)`,
    noSuchTableCode: '42P01',
    emptyAndRestartIds: (quoted) => [`TRUNCATE ${quoted} RESTART IDENTITY`],
  },
  mariadb: MARIADB_SQL,
  mysql: MARIADB_SQL,
  sqlite: {
    secondsAgo: "strftime('%Y-%m-%d %H:%M:%f +00:00', julianday('now') - ? / 86400.0)",
    nowMs: "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) AS ms",
    bigintAsText: (column) => `CAST(${column} AS TEXT)`,
    noSuchTableCode: 'SQLITE_ERROR',
    // AUTOINCREMENT keeps its high-water mark in sqlite_sequence, which DELETE leaves alone.
    emptyAndRestartIds: (quoted, name) => [`DELETE FROM ${quoted}`, `DELETE FROM sqlite_sequence WHERE name = '${name.replace(/'/g, "''")}'`],
  },
};

export interface LockTableRow {
  lock_id: string;
  owner_token: string;
  fencing_token: number;
  holder: string;
}

/** Small dialect-neutral helpers on the test database, through a connection of their own. */
export interface TestSqlHelpers {
  /** Rows of a lock table (default `db_mutex_locks`), ordered by lock id; all of them without `lockId`. */
  lockRows(lockId?: string | null, table?: string): Promise<LockTableRow[]>;
  /** Moves a lock's expiry one second into the past by the database clock. */
  expireLock(lockId: string, table?: string): Promise<void>;
  /** Deletes a lock row behind the library's back (as an operator with a SQL console would). */
  deleteLock(lockId: string, table?: string): Promise<void>;
  /** Pretends the last heartbeat was `seconds` ago by the database clock. */
  setHeartbeatAgo(lockId: string, seconds: number, table?: string): Promise<void>;
  dropTable(table: string): Promise<void>;
  /** The database clock, in epoch milliseconds. */
  dbNowMs(): Promise<number>;
  /** The `code` a driver error carries when a table does not exist. */
  readonly noSuchTableCode: string;
  /**
   * Moves a lock's timestamps by the database clock: each column given is set to that many seconds
   * before now (a negative number is in the future).
   */
  setSecondsAgo(lockId: string, columns: Partial<Record<LockTimeColumn, number>>, table?: string): Promise<void>;
  /**
   * The same for one acquisition's row of the history table (default `db_mutex_locks_history`) or the
   * audit table (`db_mutex_events`, whose end is `created_at`), so a test can lay out a past.
   */
  setEndedSecondsAgo(
    lockId: string,
    fencingToken: number,
    columns: Partial<Record<'acquired_at' | 'ended_at' | 'created_at', number>>,
    table?: string,
  ): Promise<void>;
  /** Empties the events table (default `db_mutex_events`) and restarts its ids at 1. */
  resetEvents(table?: string): Promise<void>;
  /**
   * The number of held rows of a lock table (default `db_mutex_locks`): every row but the released
   * ones MariaDB keeps (their owner token is the nil UUID, which no owner ever has).
   */
  countHeldLocks(table?: string): Promise<number>;
}

/** The owner token of a released row that MariaDB keeps (no acquisition's random token is nil). */
const NIL_OWNER_TOKEN = '00000000-0000-0000-0000-000000000000';

/** The timestamp columns of the lock table. */
export type LockTimeColumn = 'acquired_at' | 'heartbeat_at' | 'expires_at' | 'deadline_at';

/** Everything that defines the schema of the db_mutex tables, in a form that compares with toEqual. */
export interface SchemaDescription {
  tables: Record<string, unknown>[];
  columns: Record<string, unknown>[];
  indexes: Record<string, unknown>[];
  /** What hands out fencing tokens: a sequence (PostgreSQL, MariaDB); a counter table and its triggers (SQLite). */
  fencing: string[];
}

const SCHEMA_QUERIES: Record<TestDialect, { tables: string; columns: string; indexes: string; fencing: string }> = {
  postgres: {
    tables: `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'db_mutex%' ORDER BY table_name`,
    columns: `SELECT table_name, column_name, data_type, is_nullable, column_default, character_maximum_length, datetime_precision
      FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'db_mutex%' ORDER BY table_name, column_name`,
    indexes: `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename LIKE 'db_mutex%' ORDER BY indexname`,
    fencing: `SELECT sequence_name AS name FROM information_schema.sequences WHERE sequence_schema = 'public' ORDER BY sequence_name`,
  },
  mariadb: {
    tables: `SELECT TABLE_NAME, ENGINE, ROW_FORMAT, TABLE_COLLATION FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME LIKE 'db_mutex%' ORDER BY TABLE_NAME`,
    columns: `SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_KEY, EXTRA
      FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'db_mutex%' ORDER BY TABLE_NAME, COLUMN_NAME`,
    indexes: `SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, SUB_PART FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'db_mutex%' ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
    fencing: `SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'SEQUENCE' ORDER BY TABLE_NAME`,
  },
  mysql: { tables: '', columns: '', indexes: '', fencing: '' }, // same server as mariadb: filled in below
  sqlite: {
    tables: `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'db_mutex%' ORDER BY name`,
    columns: `SELECT m.name AS table_name, c.name, c.type, c."notnull", c.dflt_value, c.pk
      FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS c WHERE m.type = 'table' AND m.name LIKE 'db_mutex%' ORDER BY m.name, c.name`,
    indexes: `SELECT m.name AS table_name, l.name AS index_name, l."unique", l.origin, i.seqno, i.name AS column_name
      FROM sqlite_master AS m JOIN pragma_index_list(m.name) AS l JOIN pragma_index_info(l.name) AS i
      WHERE m.type = 'table' AND m.name LIKE 'db_mutex%' ORDER BY m.name, l.name, i.seqno`,
    fencing: `SELECT name FROM sqlite_master WHERE (type = 'trigger' OR (type = 'table' AND name LIKE '%_fencing')) ORDER BY name`,
  },
};
SCHEMA_QUERIES.mysql = SCHEMA_QUERIES.mariadb;

/** Reads the schema of the db_mutex tables of the database at `url`. */
export async function describeSchema(url: string): Promise<SchemaDescription> {
  const s = makeSequelize(url, { pool: { max: 1 } });
  try {
    const queries = SCHEMA_QUERIES[dialectOf(url)];
    const select = (sql: string) => s.query<Record<string, unknown>>(sql, { type: QueryTypes.SELECT });
    return {
      tables: await select(queries.tables),
      columns: await select(queries.columns),
      indexes: await select(queries.indexes),
      fencing: (await select(queries.fencing)).map((r) => String(r.name)),
    };
  } finally {
    await s.close();
  }
}

/** Owns everything a test file opens, and closes it all in `cleanup()`. */
export class TestContext {
  readonly dialect: TestDialect;
  readonly sql: TestSqlHelpers;
  private readonly sequelizes: Sequelize[] = [];
  private readonly mutexes: DbMutex[] = [];
  private readonly clients: Client[] = [];
  private raw: Promise<Sequelize> | null = null;

  constructor(readonly db: TestDatabase) {
    this.dialect = db.dialect;
    this.sql = this.makeSqlHelpers();
  }

  static async create(): Promise<TestContext> {
    return new TestContext(await createTestDatabase());
  }

  sequelize(options: Options = {}): Sequelize {
    const s = makeSequelize(this.db.url, options);
    this.sequelizes.push(s);
    return s;
  }

  /** A DbMutex on its own Sequelize instance (own pool), with the schema synced. */
  async mutex(options: DbMutexOptions = {}, sequelizeOptions: Options = {}): Promise<DbMutex> {
    const pooled = poolerMutexOptions(this.db);
    // A pool tagged with an application_name (to be counted on the server) tags its direct LISTEN
    // connection too, as it would be without the pooler.
    const tag = (sequelizeOptions.dialectOptions as { application_name?: unknown } | undefined)?.application_name;
    if (pooled.listenUrl && typeof tag === 'string') {
      const u = new URL(pooled.listenUrl);
      u.searchParams.set('application_name', tag);
      pooled.listenUrl = u.toString();
    }
    const m = initDbMutex(this.sequelize(sequelizeOptions), { setDefault: false, ...pooled, ...options });
    this.mutexes.push(m);
    await m.sync();
    return m;
  }

  /**
   * The same, straight to the server even when the run goes through a pooler: for claims about the
   * library's own server connections (backends killed, counted by application_name), which a pooler's
   * shared server connections would hide.
   */
  async directMutex(options: DbMutexOptions = {}, sequelizeOptions: Options = {}): Promise<DbMutex> {
    const s = makeSequelize(this.db.directUrl, sequelizeOptions);
    this.sequelizes.push(s);
    const m = initDbMutex(s, { setDefault: false, ...options });
    this.mutexes.push(m);
    await m.sync();
    return m;
  }

  /**
   * A raw pg client on the test database (a connection separate from every pool), straight to the
   * server even when the run goes through a pooler (LISTEN, backend pids). PostgreSQL only.
   */
  async client(): Promise<Client> {
    if (this.dialect !== 'postgres') throw new Error(`ctx.client() is PostgreSQL-only (this run uses ${this.dialect}); use ctx.exec()`);
    const c = new Client({ connectionString: this.db.directUrl });
    await c.connect();
    this.clients.push(c);
    return c;
  }

  /**
   * Runs one SQL statement on a connection separate from every DbMutex's pool; `?` placeholders take
   * `params` (Sequelize replacements). Returns the rows of a SELECT, [] for anything else.
   */
  async exec<T extends object = Record<string, unknown>>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    const s = await this.rawSequelize();
    const select = /^\s*(SELECT|WITH|PRAGMA)\b/i.test(sql);
    const options = { replacements: params.length ? [...params] : undefined };
    if (select) return s.query<T>(sql, { ...options, type: QueryTypes.SELECT });
    await s.query(sql, { ...options, type: QueryTypes.RAW });
    return [];
  }

  /** Quotes an identifier the way this database wants it. */
  quote(identifier: string): string {
    return this.dialect === 'postgres' || this.dialect === 'sqlite' ? `"${identifier.replace(/"/g, '""')}"` : `\`${identifier.replace(/`/g, '``')}\``;
  }

  private rawSequelize(): Promise<Sequelize> {
    this.raw ??= (async () => {
      const s = makeSequelize(this.db.url, { pool: { max: 2 } });
      this.sequelizes.push(s);
      if (this.dialect === 'sqlite') {
        // This connection writes the same file as the DbMutex connections: wait for it when busy.
        const cm = (s as unknown as { connectionManager: { getConnection(o: object): Promise<{ configure(k: string, v: number): void }> } })
          .connectionManager;
        (await cm.getConnection({})).configure('busyTimeout', 10_000);
      }
      return s;
    })();
    return this.raw;
  }

  private makeSqlHelpers(): TestSqlHelpers {
    const text = TEST_SQL[this.dialect];
    const table = (name = 'db_mutex_locks') => this.quote(name);
    return {
      lockRows: async (lockId = null, name) => {
        const rows = await this.exec<Record<string, unknown>>(
          // The all-zeros owner token marks a released row that MariaDB keeps (see src/dialects/mariadb.ts).
          `SELECT lock_id, owner_token, ${text.bigintAsText('fencing_token')} AS fencing_token, holder FROM ${table(name)}
            WHERE owner_token <> '${RELEASED_OWNER_TOKEN}' ${lockId === null ? '' : 'AND lock_id = ?'} ORDER BY lock_id`,
          lockId === null ? [] : [lockId],
        );
        return rows.map((r) => ({
          lock_id: String(r.lock_id),
          owner_token: String(r.owner_token),
          fencing_token: Number(r.fencing_token),
          holder: String(r.holder),
        }));
      },
      expireLock: async (lockId, name) => {
        await this.exec(`UPDATE ${table(name)} SET expires_at = ${text.secondsAgo} WHERE lock_id = ?`, [1, lockId]);
      },
      deleteLock: async (lockId, name) => {
        await this.exec(`DELETE FROM ${table(name)} WHERE lock_id = ?`, [lockId]);
      },
      setHeartbeatAgo: async (lockId, seconds, name) => {
        await this.exec(`UPDATE ${table(name)} SET heartbeat_at = ${text.secondsAgo} WHERE lock_id = ?`, [seconds, lockId]);
      },
      dropTable: async (name) => {
        await this.exec(`DROP TABLE ${this.quote(name)}`);
      },
      dbNowMs: async () => {
        const [row] = await this.exec<{ ms: unknown }>(text.nowMs);
        return Number(row!.ms);
      },
      noSuchTableCode: text.noSuchTableCode,
      setSecondsAgo: async (lockId, columns, name) => {
        const entries = Object.entries(columns).filter((e): e is [string, number] => typeof e[1] === 'number');
        if (!entries.length) return;
        const sets = entries.map(([column]) => `${this.quote(column)} = ${text.secondsAgo}`).join(', ');
        await this.exec(`UPDATE ${table(name)} SET ${sets} WHERE lock_id = ?`, [...entries.map(([, seconds]) => seconds), lockId]);
      },
      setEndedSecondsAgo: async (lockId, fencingToken, columns, name = 'db_mutex_locks_history') => {
        const entries = Object.entries(columns).filter((e): e is [string, number] => typeof e[1] === 'number');
        if (!entries.length) return;
        const sets = entries.map(([column]) => `${this.quote(column)} = ${text.secondsAgo}`).join(', ');
        await this.exec(`UPDATE ${this.quote(name)} SET ${sets} WHERE lock_id = ? AND fencing_token = ?`, [
          ...entries.map(([, seconds]) => seconds),
          lockId,
          fencingToken,
        ]);
      },
      resetEvents: async (name = 'db_mutex_events') => {
        for (const statement of text.emptyAndRestartIds(this.quote(name), name)) await this.exec(statement);
      },
      countHeldLocks: async (name) => {
        const [row] = await this.exec<{ n: unknown }>(`SELECT count(*) AS n FROM ${table(name)} WHERE owner_token <> ?`, [NIL_OWNER_TOKEN]);
        return Number(row!.n);
      },
    };
  }

  async cleanup(): Promise<void> {
    for (const m of this.mutexes) await m.close().catch(() => undefined);
    for (const s of this.sequelizes) await s.close().catch(() => undefined);
    for (const c of this.clients) await c.end().catch(() => undefined);
    await this.db.drop();
  }
}
