// @ts-check
'use strict';
/**
 * MariaDB side of the bench (contract: top of bench/dialects/postgres.js). Provides what the
 * uncontended and contended sections need; the scale, heartbeat and memory sections are
 * PostgreSQL-only for now. MariaDB has no LISTEN/NOTIFY: the library's waiters poll (jittered), so
 * the contended section shows polling rows only, plus GET_LOCK as the raw blocking baseline.
 * Server: BENCH_MARIADB_URL (default mariadb://root@127.0.0.1:3306/test); a scratch database is
 * created on it and dropped at the end.
 */
const { randomBytes } = require('node:crypto');
const mariadb = require('mariadb');
const { Sequelize } = require('sequelize');
const { floorCycle, floorVariant, originalVariant, runnerVariant, libraryInternals: internalsOf } = require('../lib/sql-baselines');

const DEFAULT_URL = 'mariadb://root@127.0.0.1:3306/test';
/**
 * The row that sends the library's own statements by hand the way its driver does (execute + timeout
 * wrapper), history write included as shipped; and the same with history off.
 */
const OWN_STATEMENTS = 'lever-execute-wrapper';
const OWN_STATEMENTS_NO_HISTORY = `${OWN_STATEMENTS}-nohistory`;

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/** @param {string} url */
function connectionOptions(url) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username || 'root'),
    password: decodeURIComponent(u.password || ''),
    database: u.pathname.replace(/^\//, '') || undefined,
  };
}

/**
 * A raw connector connection wrapped as `query(text, values) → rows`.
 * @param {string} url
 */
async function open(url) {
  const conn = await mariadb.createConnection(connectionOptions(url));
  return {
    raw: conn,
    /** @type {import('../lib/sql-baselines').RawConnection['query']} */
    query: async (text, values) => {
      const r = await conn.query(text, values);
      return Array.isArray(r) ? r : [];
    },
    close: () => conn.end(),
  };
}

/**
 * @template T
 * @param {string} url
 * @param {(c: Awaited<ReturnType<typeof open>>) => Promise<T>} fn
 * @returns {Promise<T>}
 */
async function withConnection(url, fn) {
  const c = await open(url);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** @type {import('../types').BenchDialect['openServer']} */
async function openServer() {
  const url = process.env.BENCH_MARIADB_URL || DEFAULT_URL;
  try {
    await withConnection(url, (c) => c.query('SELECT 1', []));
  } catch (error) {
    throw new Error(`cannot connect to MariaDB at ${url} (set BENCH_MARIADB_URL): ${messageOf(error)}`, { cause: error });
  }
  return { url, embedded: false, stop: async () => undefined };
}

/** @type {import('../types').BenchDialect['createScratch']} */
async function createScratch(serverUrl) {
  const name = `dbm_bench_${randomBytes(6).toString('hex')}`;
  await withConnection(serverUrl, (c) => c.query(`CREATE DATABASE \`${name}\``, []));
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return {
    name,
    url: u.toString(),
    drop: () => withConnection(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS \`${name}\``, [])).then(() => undefined),
  };
}

/** @type {import('../types').BenchDialect['describeServer']} */
async function describeServer(url) {
  return withConnection(url, async (c) => {
    const version = String((await c.query('SELECT VERSION() AS v', []))[0]?.v);
    /** @type {Record<string, string>} */
    const settings = {};
    for (const name of ['innodb_flush_log_at_trx_commit', 'sync_binlog', 'log_bin', 'transaction_isolation', 'max_connections']) {
      const rows = await c.query('SHOW VARIABLES LIKE ?', [name]);
      if (rows[0]) settings[name] = String(rows[0].Value);
    }
    const others = (await c.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon'", []))[0]?.n;
    return { product: `MariaDB ${version}`, settings, otherConnections: Number(others) };
  });
}

/** @type {import('../types').BenchDialect['makeSequelize']} */
function makeSequelize(url, options = {}) {
  return new Sequelize(url, { logging: false, pool: { max: 5 }, ...options });
}

/** Nothing to switch per connection here (innodb_flush_log_at_trx_commit is server-wide). */
function fastCommitOptions() {
  return {};
}

/** @type {import('../types').BenchDialect['libraryInternals']} */
function libraryInternals() {
  return internalsOf('mariadb');
}

/** @type {import('../types').BenchDialect['uncontendedVariants']} */
function uncontendedVariants(ctx) {
  const internals = libraryInternals();
  const variants = [
    originalVariant(open, ctx.url, {
      createTable: (t) =>
        `CREATE TABLE IF NOT EXISTS ${t} (id BIGINT AUTO_INCREMENT PRIMARY KEY, lock_id VARCHAR(255) NOT NULL UNIQUE, creation_time DATETIME(6) NOT NULL) ENGINE=InnoDB`,
    }),
  ];
  if (internals) {
    variants.unshift(
      floorVariant(open, ctx.url, internals, "raw mariadb-connector floor: the library's own acquire (INSERT … ON DUPLICATE KEY UPDATE … RETURNING) + release statements, one connection"),
    );
    variants.push(runnerVariant(internals, ctx.sequelize), ...leverVariants(ctx.url, internals));
  }
  return variants;
}

/**
 * What the library's driver does around the floor's statements, one lever at a time on one raw
 * connection: the server-side statement timeout (`SET STATEMENT max_statement_time=… FOR`, as
 * src/dialects/mariadb.ts sends every statement) and the binary protocol with a server-side prepared
 * statement (`execute`, cached per connection by the connector) instead of a text query.
 */
/**
 * @param {string} url
 * @param {import('../types').LibraryInternals} internals
 * @returns {import('../types').Variant[]}
 */
function leverVariants(url, internals) {
  /** @type {Awaited<ReturnType<typeof open>> | undefined} */
  let conn;
  const wrap = (/** @type {string} */ text) => `SET STATEMENT max_statement_time=10.000 FOR ${text}`;
  const asRows = (/** @type {unknown} */ r) => (Array.isArray(r) ? r : []);
  /** @typedef {(c: import('mariadb').Connection, text: string, values: unknown[]) => Promise<unknown>} Send */
  /**
   * @param {string} key
   * @param {string} label
   * @param {Send} send
   * @param {{ group?: string, history?: boolean }} [p] history: the store writes the history table (as shipped)
   * @returns {import('../types').Variant}
   */
  const lever = (key, label, send, { group = 'lever', history = false } = {}) => {
    /** @type {((lockId: string) => Promise<void>) | undefined} */
    let cycle;
    return {
      key,
      group,
      label,
      setup: async () => {
        const c = (conn ??= await open(url));
        cycle = floorCycle(internals, async (text, values) => asRows(await send(c.raw, text, [...values])), { history });
      },
      cycle: (lockId) => {
        if (!cycle) throw new Error(`${key}: not set up`);
        return cycle(lockId);
      },
      teardown: async () => {
        if (conn) await conn.close();
        conn = undefined;
      },
    };
  };
  /** @type {Send} */
  const asTheLibrarySends = (c, text, values) => c.execute(wrap(text), values);
  return [
    lever('lever-wrapper', 'floor + the statement-timeout wrapper (SET STATEMENT max_statement_time=… FOR …)', (c, text, values) => c.query(wrap(text), values)),
    lever('lever-execute', 'floor through execute() (binary protocol, prepared statement cached per connection)', (c, text, values) => c.execute(text, values)),
    lever(
      OWN_STATEMENTS,
      "its own statements by hand: the library's acquire and release from its MariaDB lock store, through execute() " +
        '(binary protocol, prepared statement cached per connection) with the statement-timeout wrapper, as the library sends them, one connection ' +
        '(history on, as shipped: the history row is a second statement after the release)',
      asTheLibrarySends,
      { group: 'baseline', history: true },
    ),
    lever(OWN_STATEMENTS_NO_HISTORY, 'its own statements by hand, history off: the same without the history write (history: false)', asTheLibrarySends, {
      group: 'baseline',
    }),
  ];
}

/** Canned successful answers for the library's acquire and release (JS-only rows). */
/** @type {import('../types').BenchDialect['stubRows']} */
function stubRows(statement) {
  if (statement.name.endsWith('_acquire')) {
    const now = Date.now();
    return [{ won: 1, fencing_token: '1', acquired_ms: now, expires_ms: now + 1_800_000 }];
  }
  if (statement.name.endsWith('_release')) return [{ expired: 0 }];
  return [];
}

/** Raw contended baseline: GET_LOCK blocks in the server, which wakes the next waiter on RELEASE_LOCK. */
/** @type {import('../types').BenchDialect['contendedRaw']} */
async function contendedRaw(url, variant) {
  if (variant !== 'get-lock-blocking') throw new Error(`unknown raw contended variant ${variant}`);
  const c = await open(url);
  return {
    async run(lockId, section) {
      const got = await c.query('SELECT GET_LOCK(?, 60) AS ok', [lockId]);
      if (Number(got[0]?.ok) !== 1) throw new Error('GET_LOCK timed out');
      try {
        await section();
      } finally {
        await c.query('SELECT RELEASE_LOCK(?) AS ok', [lockId]);
      }
    },
    close: () => c.close(),
  };
}

/** @satisfies {import('../types').BenchDialect} */
const mariadbBench = {
  name: 'mariadb',
  label: 'MariaDB',
  // No LISTEN/NOTIFY: waiting is polling only (sections/contended.js drops its notify row).
  notifies: false,
  openServer,
  createScratch,
  describeServer,
  makeSequelize,
  fastCommitOptions,
  uncontendedVariants,
  ownStatementsKey: OWN_STATEMENTS,
  ownStatementsNoHistoryKey: OWN_STATEMENTS_NO_HISTORY,
  LEVERS_UNDONE: {
    'text-protocol': {
      label: 'every statement as a text query (no server-side prepared statements)',
      // Every operation's statements (see bench/lib/levers.js).
      operation: null,
      rewrite: (statement) => ({ ...statement, prepare: false }),
    },
  },
  stubRows,
  libraryInternals,
  contendedRaw,
  contendedRawVariants: [{ key: 'get-lock-blocking', short: 'blocking GET_LOCK', label: 'raw MariaDB GET_LOCK, blocking (server wakes the next waiter)' }],
};

module.exports = mariadbBench;
