// @ts-check
'use strict';
/**
 * PostgreSQL side of the bench: server discovery (or an embedded server), the scratch database,
 * and every hand-written baseline and lever written in raw SQL. The generic rows (withDbMutex,
 * naive Sequelize, redlock) live in the sections; a dialect only supplies what is SQL-specific, so
 * adding MariaDB or SQLite means adding a sibling file with the same exports and naming it in
 * BENCH_DIALECTS:
 *   name, label, openServer(log), createScratch(serverUrl), describeServer(url), makeSequelize(url, opts),
 *   fastCommitOptions(), uncontendedVariants(ctx) (must include key 'floor' and 'original'),
 *   LEVERS_UNDONE {name: {label, affectsRefusal?, operation, rewrite(statement), probe?(store)}} (bench/lib/levers.js), stubRows(statement), libraryInternals(), fillOtherRows(url, {table, originalTable, count}),
 *   dropTables(url, tables), scaleBaselines(ctx, {table, originalTable}) (keys 'floor', 'original'),
 *   contendedRaw(url, key) + contendedRawVariants, listenerConnections(url, tableName).
 */
const { randomBytes, randomUUID } = require('node:crypto');
const { Client } = require('pg');
const { Sequelize, QueryTypes } = require('sequelize');
const { storeCycle, libraryInternals: internalsOf } = require('../lib/sql-baselines');
const { NAMES } = require('../lib/levers');

const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/test';
const LOCKS = NAMES.tableName;
const ORIGINAL = 'bench_original_dbmutex';
const TTL_SECONDS = 1800;

/** @typedef {import('../types').Statement} Statement */
/** @typedef {import('../types').DbMutex} DbMutex */
/**
 * Sends one statement through some path and reports its rows and affected-row count.
 * @typedef {(s: Statement) => Promise<{ rows: Record<string, any>[], count?: number | null }>} Exec
 */

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/**
 * @param {string} url
 * @param {string} database
 */
function withDatabase(url, database) {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * @template T
 * @param {string} url
 * @param {(client: Client) => Promise<T>} fn
 * @returns {Promise<T>}
 */
async function withClient(url, fn) {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * The server at DATABASE_URL; without DATABASE_URL, the default local URL, and if nothing answers
 * there, an embedded PostgreSQL started for this run (stopped by `stop()`).
 */
/** @type {import('../types').BenchDialect['openServer']} */
async function openServer(log) {
  const explicit = process.env.DATABASE_URL;
  const url = explicit || DEFAULT_URL;
  try {
    await withClient(url, (c) => c.query('SELECT 1'));
    return { url, embedded: false, stop: async () => undefined };
  } catch (error) {
    if (explicit) throw new Error(`cannot connect to DATABASE_URL: ${messageOf(error)}`, { cause: error });
  }
  log(`nothing answers at ${DEFAULT_URL}: starting an embedded PostgreSQL (scripts/embedded-pg.js)`);
  const { startEmbeddedPostgres } = require('../../scripts/embedded-pg.js');
  /** @type {{ url: string, stop(): Promise<void> }} */
  const pg = await startEmbeddedPostgres();
  return { url: pg.url, embedded: true, stop: () => pg.stop() };
}

/** A fresh database on the same server, dropped (WITH FORCE) by `drop()`. */
/** @type {import('../types').BenchDialect['createScratch']} */
async function createScratch(serverUrl) {
  const name = `dbm_bench_${randomBytes(6).toString('hex')}`;
  await withClient(serverUrl, (c) => c.query(`CREATE DATABASE "${name}"`));
  return {
    name,
    url: withDatabase(serverUrl, name),
    drop: () => withClient(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

/** @type {import('../types').BenchDialect['describeServer']} */
async function describeServer(url) {
  return withClient(url, async (c) => {
    const version = (await c.query('SHOW server_version')).rows[0].server_version;
    /** @type {Record<string, string>} */
    const settings = {};
    for (const name of ['fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers', 'max_connections']) {
      settings[name] = (await c.query(`SHOW ${name}`)).rows[0][name];
    }
    const others = (await c.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = $1 AND pid <> pg_backend_pid()', ['client backend'])).rows[0].n;
    return { product: `PostgreSQL ${version}`, settings, otherConnections: others };
  });
}

/** @type {import('../types').BenchDialect['makeSequelize']} */
function makeSequelize(url, options = {}) {
  return new Sequelize(url, { logging: false, pool: { max: 5 }, ...options });
}

/** Sequelize options that make this dialect's commits skip the WAL flush (memory-only sections). */
function fastCommitOptions() {
  return { dialectOptions: { options: '-c synchronous_commit=off' } };
}

/** @param {string} url */
async function rawClient(url) {
  const client = new Client({ connectionString: url });
  await client.connect();
  return client;
}

// ---- statements -------------------------------------------------------------------------------

/** The floor: what a careful developer writes by hand against the library's table (made by mutex.sync()). */
/** @param {string} table */
function floorSql(table) {
  const acquire = `INSERT INTO ${table} AS l (lock_id, owner_token, fencing_token, holder, hostname, pid,
      acquired_at, expires_at, deadline_at, heartbeat_at)
    VALUES ($1, $2, nextval('${table}_fencing_seq'), $3, $4, $5, now(), now() + $6 * interval '1 second', now() + $6 * interval '1 second', now())
    ON CONFLICT (lock_id) DO UPDATE SET owner_token = EXCLUDED.owner_token, fencing_token = EXCLUDED.fencing_token,
      holder = EXCLUDED.holder, hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, acquired_at = EXCLUDED.acquired_at,
      expires_at = EXCLUDED.expires_at, deadline_at = EXCLUDED.deadline_at, heartbeat_at = EXCLUDED.heartbeat_at,
      lease_seconds = NULL
    WHERE l.expires_at <= now()
    RETURNING fencing_token`;
  const deleted = `DELETE FROM ${table} WHERE lock_id = $1 AND owner_token = $2`;
  return {
    acquire,
    release: deleted,
    releaseNotify: `WITH d AS (${deleted} RETURNING lock_id) SELECT pg_notify('db_mutex_bench', $2::text || d.lock_id) FROM d`,
    /**
     * Asynchronous commit for this one statement's transaction: `set_config(…, true)` is transaction-
     * local and the commit reads synchronous_commit when it runs, after the statement. The data-modifying
     * CTE always runs; the outer SELECT calls set_config once per deleted row (none deleted: nothing to flush).
     */
    releaseAsync: `WITH d AS (${deleted} RETURNING lock_id) SELECT set_config('synchronous_commit', 'off', true) FROM d`,
  };
}

/** @type {Map<string, ReturnType<typeof floorSql>>} */
const FLOOR_SQL = new Map();

/** @typedef {'acquire' | 'release' | 'releaseNotify' | 'releaseAsync'} FloorKind */

/**
 * @param {string} lockId
 * @param {string} ownerToken
 * @returns {Record<FloorKind, Statement & { values: unknown[] }>}
 */
function floorStatements(lockId, ownerToken, table = LOCKS) {
  let sql = FLOOR_SQL.get(table);
  if (!sql) FLOOR_SQL.set(table, (sql = floorSql(table)));
  const text = sql;
  const stmt = (/** @type {FloorKind} */ kind, /** @type {unknown[]} */ values) => ({ name: `bench_floor_${kind}_${table}`, text: text[kind], values });
  return {
    acquire: stmt('acquire', [lockId, ownerToken, 'bench', 'bench-host', process.pid, TTL_SECONDS]),
    release: stmt('release', [lockId, ownerToken]),
    releaseNotify: stmt('releaseNotify', [lockId, ownerToken]),
    releaseAsync: stmt('releaseAsync', [lockId, ownerToken]),
  };
}

/**
 * The library's release statement with its asynchronous commit taken out: the release waits for the
 * WAL flush again, as before that lever was adopted. Returns null if the shape is not recognised.
 */
/**
 * @param {Statement} statement
 * @returns {Statement | null}
 */
function durableRelease(statement) {
  const text = statement.text.replace(/,\s*set_config\('synchronous_commit', 'off', true\) AS async_commit/, '');
  return text === statement.text ? null : { name: `${statement.name}_durable`, text, values: statement.values };
}

/** The library's release statement without its (conditional) pg_notify column (decomposition only). */
/**
 * @param {Statement} statement
 * @returns {Statement | null}
 */
function withoutNotify(statement) {
  const text = statement.text.replace(/,\s*CASE WHEN pg_try_advisory_xact_lock[\s\S]*?END AS notified/, '');
  return text === statement.text ? null : { name: `${statement.name}_quiet`, text, values: statement.values };
}

/**
 * The library's release statement notifying on every release, as before "notify only when someone
 * waits" (the lever undone): the waiters' mark is never consulted.
 * @param {Statement} statement
 * @returns {Statement | null}
 */
function notifyAlways(statement) {
  const text = statement.text.replace(/pg_try_advisory_xact_lock\(-?\d+, hashtext\(d\.lock_id\)\)/, 'false');
  return text === statement.text ? null : { name: `${statement.name}_notify_always`, text, values: statement.values };
}

/**
 * @param {readonly unknown[]} rows
 * @param {string} what
 */
function expectOneRow(rows, what) {
  if (rows.length !== 1) throw new Error(`${what}: expected one row, got ${rows.length}`);
}
/**
 * @param {number | null | undefined} n
 * @param {string} what
 */
function expectCount(n, what) {
  if (n !== 1) throw new Error(`${what}: expected one row affected, got ${n}`);
}

// ---- executors: the same statement through different paths ---------------------------------

/** pg's default: a parameterised query without a name is parsed and planned on every call. */
/**
 * @param {Client} client
 * @returns {Exec}
 */
function unnamedOn(client) {
  return async (s) => {
    const r = await client.query(s.text, [...s.values]);
    return { rows: r.rows, count: r.rowCount };
  };
}
/** Named: parsed and planned once per connection, then only bound and executed. */
/**
 * @param {Client} client
 * @returns {Exec}
 */
function namedOn(client) {
  return async (s) => {
    const r = await client.query({ name: s.name, text: s.text, values: [...s.values] });
    return { rows: r.rows, count: r.rowCount };
  };
}
/** Through Sequelize's query pipeline (bind parameters, no model). */
/**
 * @param {import('sequelize').Sequelize} sequelize
 * @returns {Exec}
 */
function viaSequelizeQuery(sequelize) {
  return async (s) => {
    /** @type {[Record<string, unknown>[], { rowCount?: unknown } | undefined]} */
    const [rows, result] = /** @type {any} */ (await sequelize.query(s.text, { bind: [...s.values], type: QueryTypes.RAW }));
    return { rows, count: result && typeof result.rowCount === 'number' ? result.rowCount : rows.length };
  };
}
/** A connection checked out of Sequelize's own pool per statement, named statement on the raw client. */
/**
 * @param {import('sequelize').Sequelize} sequelize
 * @returns {Exec}
 */
function viaConnectionManager(sequelize) {
  // Sequelize's connection manager is not in its typings; the library reaches it the same way.
  /** @type {{ getConnection(o: object): Promise<Client>, releaseConnection(c: Client): void }} */
  const cm = /** @type {any} */ (sequelize).connectionManager;
  return async (s) => {
    const connection = await cm.getConnection({ type: 'write', useMaster: true });
    try {
      const r = await connection.query({ name: s.name, text: s.text, values: [...s.values] });
      return { rows: r.rows, count: r.rowCount };
    } finally {
      cm.releaseConnection(connection);
    }
  };
}

/**
 * @param {Exec} exec
 * @param {'release' | 'releaseNotify' | 'releaseAsync'} release
 * @returns {(lockId: string) => Promise<void>}
 */
function floorCycle(exec, release = 'release', table = LOCKS) {
  return async (lockId) => {
    const s = floorStatements(lockId, randomUUID(), table);
    const acquired = await exec(s.acquire);
    expectOneRow(acquired.rows, 'floor acquire');
    const released = await exec(s[release]);
    expectCount(release === 'release' ? released.count : released.rows.length, 'floor release');
  };
}

// ---- the minimal durable lease ----------------------------------------------------------------

const MINIMAL_TABLE = 'bench_minimal_lease';
/** The minimal lease's release notice channel (contended rows by hand). */
const MINIMAL_CHANNEL = 'bench_minimal_lease';

/**
 * The least a lease row can cost: a table of its own with only what a lease needs (id, owner token,
 * fencing token from a sequence, expiry by the database clock), one upsert that takes the lock only
 * if it is free or expired, and one delete by owner token.
 */
const MINIMAL_SQL = {
  create: [
    `CREATE SEQUENCE IF NOT EXISTS ${MINIMAL_TABLE}_fencing_seq`,
    `CREATE TABLE IF NOT EXISTS ${MINIMAL_TABLE} (lock_id text PRIMARY KEY, owner_token uuid NOT NULL,
      fencing_token bigint NOT NULL, expires_at timestamptz NOT NULL)`,
  ],
  acquire: `INSERT INTO ${MINIMAL_TABLE} AS l (lock_id, owner_token, fencing_token, expires_at)
    VALUES ($1, $2, nextval('${MINIMAL_TABLE}_fencing_seq'), now() + $3 * interval '1 second')
    ON CONFLICT (lock_id) DO UPDATE SET owner_token = EXCLUDED.owner_token, fencing_token = EXCLUDED.fencing_token,
      expires_at = EXCLUDED.expires_at
    WHERE l.expires_at <= now()
    RETURNING fencing_token`,
  release: `DELETE FROM ${MINIMAL_TABLE} WHERE lock_id = $1 AND owner_token = $2`,
  /** The same delete, its transaction committed asynchronously (as the library's release is; see floorSql). */
  releaseAsync: `WITH d AS (DELETE FROM ${MINIMAL_TABLE} WHERE lock_id = $1 AND owner_token = $2 RETURNING lock_id)
    SELECT set_config('synchronous_commit', 'off', true) FROM d`,
  /** The asynchronous delete that also notifies the lease's channel (every release: no marks). */
  releaseNotify: `WITH d AS (DELETE FROM ${MINIMAL_TABLE} WHERE lock_id = $1 AND owner_token = $2 RETURNING lock_id)
    SELECT pg_notify('${MINIMAL_CHANNEL}', d.lock_id), set_config('synchronous_commit', 'off', true) FROM d`,
};

/**
 * One cycle of the minimal durable lease, named statements. `libraryCommits`: the acquire waits for
 * the WAL flush and the release commits asynchronously, as the library's do; otherwise the client's
 * session decides (the row: synchronous_commit off for the session, set in the row's setup).
 * @param {Client} client
 * @returns {(lockId: string) => Promise<void>}
 */
function minimalLeaseCycle(client, { libraryCommits = false } = {}) {
  const exec = namedOn(client);
  const release = libraryCommits ? 'releaseAsync' : 'release';
  return async (lockId) => {
    const ownerToken = randomUUID();
    const acquired = await exec({ name: 'bench_minimal_acquire', text: MINIMAL_SQL.acquire, values: [lockId, ownerToken, TTL_SECONDS] });
    expectOneRow(acquired.rows, 'minimal lease acquire');
    const released = await exec({ name: `bench_minimal_${release}`, text: MINIMAL_SQL[release], values: [lockId, ownerToken] });
    expectCount(libraryCommits ? released.rows.length : released.count, 'minimal lease release');
  };
}

/**
 * The library's bench seam (for the decomposition rows); null when this build has none.
 * @returns {import('../types').LibraryInternals | null}
 */
function libraryInternals() {
  return internalsOf('postgres');
}

/**
 * The library's own acquire + release (its lock store: SQL and row parsing, through the bench seam)
 * with each statement sent through `exec`; the release optionally waiting for the WAL flush, or
 * without its pg_notify; the history write in both statements as shipped, unless `history` is false.
 * @param {import('../types').LibraryInternals} internals
 * @param {Exec} exec
 * @returns {(lockId: string) => Promise<void>}
 */
function libraryCycle(internals, exec, { durable = false, notify = true, history = true } = {}) {
  /** @param {Statement} statement */
  const rewriteRelease = (statement) => {
    /** @type {Statement | null} */
    let release = statement;
    if (durable) release = release && durableRelease(release);
    if (!notify) release = release && withoutNotify(release);
    if (!release) throw new Error("the library's release statement no longer has the shape this row rewrites");
    return release;
  };
  const store = internals.seam.storeOn(
    'postgres',
    NAMES,
    async (s) => (await exec(s)).rows,
    (operation, statement) => (operation === 'release' ? rewriteRelease(statement) : statement),
    history,
  );
  return storeCycle(store, 'library statements');
}

// ---- variants ---------------------------------------------------------------------------------

/**
 * Uncontended rows specific to this dialect. Each: { key, label, group, setup?, cycle(lockId), teardown? }.
 * `ctx` = { url, sequelize, track(client) }.
 */
/** @type {import('../types').BenchDialect['uncontendedVariants']} */
function uncontendedVariants(ctx) {
  /** @type {Client | undefined} */
  let client; // one raw client shared by the raw rows (they run one at a time)
  const raw = () => {
    if (!client) throw new Error('the raw client is opened in setup');
    return client;
  };
  const setupClient = async () => {
    if (!client) client = ctx.track(await rawClient(ctx.url));
  };
  /** @param {() => (lockId: string) => Promise<void>} make */
  const lazy = (make) => {
    /** @type {((lockId: string) => Promise<void>) | undefined} */
    let fn;
    return (/** @type {string} */ lockId) => (fn ??= make())(lockId);
  };
  const internals = libraryInternals();
  /** @type {import('../types').Variant[]} */
  const variants = [
    {
      key: 'floor',
      group: 'baseline',
      label: 'raw pg floor: INSERT … ON CONFLICT … WHERE expired RETURNING + DELETE by token (unnamed, one client)',
      setup: setupClient,
      cycle: lazy(() => floorCycle(unnamedOn(raw()))),
    },
    {
      key: 'advisory',
      group: 'baseline',
      label: 'raw pg advisory lock: pg_try_advisory_lock + pg_advisory_unlock (one client)',
      setup: setupClient,
      cycle: async (lockId) => {
        const got = await raw().query('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [lockId]);
        if (got.rows[0].ok !== true) throw new Error('advisory lock refused');
        await raw().query('SELECT pg_advisory_unlock(hashtext($1))', [lockId]);
      },
    },
    {
      key: 'original',
      group: 'baseline',
      label: "original django-db-mutex algorithm, raw SQL (DELETE expired; BEGIN; SAVEPOINT; INSERT; RELEASE; COMMIT; SELECT by pk; DELETE by pk)",
      setup: async () => {
        await setupClient();
        await ensureOriginalTable(raw());
      },
      cycle: (lockId) => originalCycle(raw(), lockId),
    },
    {
      key: 'floor-refused',
      group: 'refused',
      label: 'raw pg floor: the INSERT … ON CONFLICT … DO UPDATE … WHERE expired of a held lock (returns no row; unnamed, one client)',
      setup: async () => {
        await setupClient();
        const s = floorStatements('bench:refused:floor', randomUUID());
        await raw().query(`DELETE FROM ${LOCKS} WHERE lock_id = $1`, ['bench:refused:floor']);
        expectOneRow((await unnamedOn(raw())(s.acquire)).rows, 'floor acquire of the held lock');
      },
      cycle: async () => {
        const s = floorStatements('bench:refused:floor', randomUUID());
        const r = await unnamedOn(raw())(s.acquire);
        if (r.rows.length !== 0) throw new Error('floor acquired a held lock');
      },
    },
    {
      key: 'lever-named',
      group: 'lever',
      label: 'floor with named prepared statements',
      setup: setupClient,
      cycle: lazy(() => floorCycle(namedOn(raw()))),
    },
    {
      key: 'lever-sequelize-query',
      group: 'lever',
      label: 'floor SQL through sequelize.query (bind parameters)',
      cycle: floorCycle(viaSequelizeQuery(ctx.sequelize)),
    },
    {
      key: 'lever-cm-named',
      group: 'lever',
      label: "floor SQL, named, on a connection checked out of Sequelize's pool per statement",
      cycle: floorCycle(viaConnectionManager(ctx.sequelize)),
    },
    {
      key: 'lever-notify',
      group: 'lever',
      label: 'floor (named) + pg_notify in the release statement',
      setup: setupClient,
      cycle: lazy(() => floorCycle(namedOn(raw()), 'releaseNotify')),
    },
    {
      key: 'lever-async-stmt',
      group: 'lever',
      label: "floor (named), release commits asynchronously: set_config('synchronous_commit','off',true) in the statement",
      setup: setupClient,
      cycle: lazy(() => floorCycle(namedOn(raw()), 'releaseAsync')),
    },
    {
      key: 'lever-async-multi',
      group: 'lever',
      label: 'floor, release as one simple-query message: BEGIN; SET LOCAL synchronous_commit = off; DELETE; COMMIT',
      setup: setupClient,
      cycle: async (lockId) => {
        const ownerToken = randomUUID();
        const s = floorStatements(lockId, ownerToken);
        const acquired = await raw().query(s.acquire.text, s.acquire.values);
        expectOneRow(acquired.rows, 'floor acquire');
        const c = raw();
        // The simple-query protocol takes no parameters: literals are escaped by the driver.
        const results = await c.query(
          `BEGIN; SET LOCAL synchronous_commit = off; DELETE FROM ${LOCKS} WHERE lock_id = ${c.escapeLiteral(lockId)} AND owner_token = ${c.escapeLiteral(ownerToken)}; COMMIT`,
        );
        expectCount(/** @type {import('pg').QueryResult[]} */ (/** @type {unknown} */ (results))[2]?.rowCount, 'multi-statement release');
      },
    },
  ];
  /** @type {Client | undefined} */
  let asyncClient; // its session has synchronous_commit off, so it is not shared with the other rows
  variants.push({
    key: 'minimal-lease',
    group: 'baseline',
    label:
      'minimal durable lease by hand: own table (lock_id PK, owner_token, fencing_token from a sequence, expires_at), ' +
      'INSERT … ON CONFLICT DO UPDATE … WHERE expired RETURNING + DELETE … WHERE owner_token; named, synchronous_commit off, one raw pg client',
    setup: async () => {
      if (asyncClient) return;
      const c = ctx.track(await rawClient(ctx.url));
      await c.query('SET synchronous_commit = off');
      for (const statement of MINIMAL_SQL.create) await c.query(statement);
      asyncClient = c;
    },
    cycle: lazy(() => {
      if (!asyncClient) throw new Error('the minimal lease client is opened in setup');
      return minimalLeaseCycle(asyncClient);
    }),
  });
  variants.push({
    key: 'minimal-lease-library-commits',
    group: 'decomposition',
    label:
      "the minimal lease with the library's commit policy: acquire waits for the WAL flush, release commits asynchronously " +
      '(named, one raw pg client): the SQL shape alone against its own statements by hand',
    setup: async () => {
      await setupClient();
      for (const statement of MINIMAL_SQL.create) await raw().query(statement);
    },
    cycle: lazy(() => minimalLeaseCycle(raw(), { libraryCommits: true })),
  });
  if (internals) {
    variants.push(
      {
        key: 'lib-sql-raw',
        group: 'baseline',
        label:
          "its own statements by hand: the library's acquire and release from its PostgreSQL lock store, named, on one raw pg client " +
          '(as shipped: history row written by the release statement itself, pg_notify only when a process waits, asynchronous commit)',
        setup: setupClient,
        cycle: lazy(() => libraryCycle(internals, namedOn(raw()))),
      },
      {
        key: 'lib-sql-raw-nohistory',
        group: 'baseline',
        label: 'its own statements by hand, history off: the same without the history write (history: false)',
        setup: setupClient,
        cycle: lazy(() => libraryCycle(internals, namedOn(raw()), { history: false })),
      },
      {
        key: 'lib-sql-raw-quiet',
        group: 'decomposition',
        label: "the library's own SQL on one raw client, release without pg_notify",
        setup: setupClient,
        cycle: lazy(() => libraryCycle(internals, namedOn(raw()), { notify: false })),
      },
      {
        key: 'lib-sql-raw-durable',
        group: 'decomposition',
        label: "the library's own SQL on one raw client, release waiting for the WAL flush (lever undone)",
        setup: setupClient,
        cycle: lazy(() => libraryCycle(internals, namedOn(raw()), { durable: true })),
      },
      {
        key: 'lib-runner',
        group: 'decomposition',
        label: "the library's own SQL through its StatementRunner (Sequelize pool checkout + logging hook)",
        cycle: lazy(() => {
          const runner = internals.seam.statementRunner(ctx.sequelize, 10_000);
          return libraryCycle(internals, async (s) => ({ rows: await runner.run(s) }));
        }),
      },
    );
  }
  return variants;
}

/**
 * The acquire as it was before the no-row-lock lever: `INSERT … ON CONFLICT (lock_id) DO UPDATE …
 * WHERE expired`, rebuilt from the library's own statement (same claim, columns, values and RETURNING
 * list). That form locks the live row even when it refuses (PostgreSQL locks every conflicting row
 * it considers), so every refused attempt writes WAL and waits for a flush while holding the id's
 * claim. Returns null when the library's statement does not have the expected shape.
 */
const ACQUIRE_SHAPE =
  /^WITH (claim AS \(SELECT pg_advisory_xact_lock\([^()]*hashtext\(\$1\)\)\)),\s*inserted AS \(INSERT INTO (\S+) AS l \(([^)]*)\) SELECT ([\s\S]*?) FROM claim\s+ON CONFLICT \(lock_id\) DO NOTHING RETURNING ([\s\S]*?)\),\s*taken_over AS \(UPDATE /;

/**
 * @param {Statement} statement
 * @returns {Statement | null}
 */
function lockingAcquire(statement) {
  const m = ACQUIRE_SHAPE.exec(statement.text);
  if (!m) return null;
  const [, claim, table, columns = '', fresh, returning] = m;
  const set = columns
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c && c !== 'lock_id')
    .map((c) => `${c} = EXCLUDED.${c}`)
    .join(', ');
  const text = `WITH ${claim}
    INSERT INTO ${table} AS l (${columns}) SELECT ${fresh} FROM claim
    ON CONFLICT (lock_id) DO UPDATE SET ${set} WHERE l.expires_at <= now()
    RETURNING ${returning}`;
  return { name: `${statement.name}_locking`, text, values: statement.values };
}

const PROBE_TOKEN = '00000000-0000-0000-0000-000000000000';
const PROBE_ACQUIRE = { lockId: 'probe', ownerToken: PROBE_TOKEN, holder: 'h', hostname: 'h', pid: 1, ttlSeconds: 1, leaseSeconds: null };

/**
 * Canned answers for the library's statements, for measuring its client-side cost with the database
 * taken out (the JS-only rows): what this dialect's acquire and release return on success.
 */
/** @type {import('../types').BenchDialect['stubRows']} */
function stubRows(statement) {
  // `_h`: the form that writes the history row in the same statement (history on, the default).
  if (/_acquire(_h)?$/.test(statement.name)) {
    const now = Date.now();
    return [{ won: true, fencing_token: '1', acquired_ms: now, expires_ms: now + TTL_SECONDS * 1000 }];
  }
  if (/_release(_h)?$/.test(statement.name)) return [{ expired: false, notified: '' }];
  return [];
}

/**
 * Adopted levers, undone by name (bench-only, through the library's bench seam; see
 * bench/lib/levers.js): each row that undoes one shows what the lever is worth today, measured
 * against the library as shipped in the same run.
 */
/** @type {Record<string, import('../types').LeverUndone>} */
const LEVERS_UNDONE = {
  'locking-acquire': {
    label: 'acquire as ON CONFLICT DO UPDATE … WHERE expired (locks the live row when refused)',
    affectsRefusal: true,
    operation: 'acquire',
    rewrite: lockingAcquire,
    probe: (store) => store.acquire(PROBE_ACQUIRE),
  },
  'durable-release': {
    label: 'release waits for the WAL flush',
    operation: 'release',
    rewrite: durableRelease,
    probe: (store) => store.release({ lockId: 'probe', ownerToken: PROBE_TOKEN }),
  },
  'notify-always': {
    label: 'release notifies every time (not only when a process waits for the lock)',
    operation: 'release',
    rewrite: notifyAlways,
    probe: (store) => store.release({ lockId: 'probe', ownerToken: PROBE_TOKEN }),
  },
};

// ---- the original's algorithm ---------------------------------------------------------------

/** @param {Client} client */
async function ensureOriginalTable(client, table = ORIGINAL) {
  // The original's model: autoincrement id, unique lock_id, creation_time (no index on it).
  await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
    id bigserial PRIMARY KEY, lock_id varchar(255) NOT NULL UNIQUE, creation_time timestamptz NOT NULL)`);
}

/**
 * @param {Client} client
 * @param {string} lockId
 */
async function originalCycle(client, lockId, table = ORIGINAL) {
  // Expiry is computed from the client's clock, as the original does with timezone.now().
  await client.query(`DELETE FROM ${table} WHERE creation_time <= $1`, [new Date(Date.now() - TTL_SECONDS * 1000)]);
  await client.query('BEGIN');
  let id;
  try {
    await client.query('SAVEPOINT bench_s1');
    const r = await client.query(`INSERT INTO ${table} (lock_id, creation_time) VALUES ($1, $2) RETURNING id`, [lockId, new Date()]);
    await client.query('RELEASE SAVEPOINT bench_s1');
    await client.query('COMMIT');
    id = r.rows[0].id;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  const exists = await client.query(`SELECT 1 AS a FROM ${table} WHERE id = $1 LIMIT 1`, [id]);
  if (exists.rowCount !== 1) throw new Error('original: lock row vanished');
  await client.query(`DELETE FROM ${table} WHERE id = $1`, [id]);
}

// ---- scale ------------------------------------------------------------------------------------

/**
 * Puts `count` other live (unexpired) rows with spread-out acquisition times into `table` (a lock
 * table made by sync()) and as many into a fresh table of the original's shape, then refreshes
 * planner statistics.
 */
/** @type {NonNullable<import('../types').BenchDialect['fillOtherRows']>} */
async function fillOtherRows(url, { table, originalTable, count }) {
  await withClient(url, async (c) => {
    await ensureOriginalTable(c, originalTable);
    await c.query(
      `INSERT INTO ${table} (lock_id, owner_token, fencing_token, holder, hostname, pid, acquired_at, expires_at, deadline_at, heartbeat_at)
       SELECT 'bench:other:' || g, gen_random_uuid(), nextval('${table}_fencing_seq'), 'bench-filler', 'bench-host', 1,
         now() - g * interval '1 millisecond', now() + interval '1 day', now() + interval '1 day', now()
       FROM generate_series(1, $1::int) AS g`,
      [count],
    );
    await c.query(`INSERT INTO ${originalTable} (lock_id, creation_time) SELECT 'bench:other:' || g, now() FROM generate_series(1, $1::int) AS g`, [
      count,
    ]);
    await c.query(`VACUUM ANALYZE ${table}`);
    await c.query(`VACUUM ANALYZE ${originalTable}`);
  });
}

/** @type {NonNullable<import('../types').BenchDialect['dropTables']>} */
async function dropTables(url, tables) {
  await withClient(url, async (c) => {
    for (const t of tables) await c.query(`DROP TABLE IF EXISTS ${t}`);
  });
}

/** The floor and the original for one table size, each on its own raw client. */
/** @type {NonNullable<import('../types').BenchDialect['scaleBaselines']>} */
function scaleBaselines(ctx, { table, originalTable }) {
  /** @type {Client | undefined} */
  let client;
  const setup = async () => {
    if (!client) client = ctx.track(await rawClient(ctx.url));
  };
  const raw = () => {
    if (!client) throw new Error('the raw client is opened in setup');
    return client;
  };
  return [
    { key: 'floor', label: 'raw pg floor (unnamed)', setup, cycle: (lockId) => floorCycle(unnamedOn(raw()), 'release', table)(lockId) },
    { key: 'original', label: 'original algorithm (raw SQL)', setup, cycle: (lockId) => originalCycle(raw(), lockId, originalTable) },
  ];
}

// ---- contended (worker side) --------------------------------------------------------------------


/**
 * A lease waited for with LISTEN/NOTIFY by hand, on one raw pg connection per process (statements and
 * LISTEN share it): `attempt` tries once and says whether it won, `release` ends the lease (and
 * notifies); a waiter tries again on any notice on `channel` or after 500 ms.
 * @param {Client} client
 * @param {string} channel
 * @param {{ attempt: (lockId: string, ownerToken: string) => Promise<boolean>, release: (lockId: string, ownerToken: string) => Promise<void> }} lease
 * @returns {Promise<import('../types').RawContended>}
 */
async function notifyLease(client, channel, lease) {
  await client.query(`LISTEN "${channel}"`);
  /** Notices seen so far, and the waiter to wake on the next one. */
  let notices = 0;
  /** @type {(() => void) | null} */
  let wake = null;
  client.on('notification', () => {
    notices++;
    if (wake) wake();
  });
  return {
    async run(lockId, section) {
      const ownerToken = randomUUID();
      for (;;) {
        const seen = notices;
        if (await lease.attempt(lockId, ownerToken)) break;
        // A notice that came while the attempt was in flight already counts: try again at once.
        if (notices !== seen) continue;
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, 500);
          wake = () => {
            clearTimeout(timer);
            resolve(undefined);
          };
        });
        wake = null;
      }
      try {
        await section();
      } finally {
        await lease.release(lockId, ownerToken);
      }
    },
    close: () => client.end(),
  };
}

/**
 * The minimal lease of the uncontended section, waited for with LISTEN/NOTIFY by hand: what the least
 * hand-off built on a lease row and notices can cost, next to the server's own blocking lock. Every
 * release notifies (no marks). `durable`: the acquire waits for the WAL flush (the library's commit
 * policy); otherwise it commits asynchronously too (not safe: an acquisition lost in a crash could be
 * handed out twice; it is here to show what the flush costs).
 * @param {string} url
 * @param {{ durable: boolean }} options
 */
async function minimalNotifyLease(url, { durable }) {
  const client = await rawClient(url);
  // Eight workers set up at once: CREATE … IF NOT EXISTS is not safe against itself, so one at a time.
  await client.query('BEGIN');
  await client.query("SELECT pg_advisory_xact_lock(hashtext('bench minimal lease setup'))");
  for (const text of MINIMAL_SQL.create) await client.query(text);
  await client.query('COMMIT');
  const acquire = durable
    ? { name: 'bench_minimal_acquire', text: MINIMAL_SQL.acquire }
    : {
        name: 'bench_minimal_acquire_async',
        text: `WITH s AS (SELECT set_config('synchronous_commit', 'off', true))
          ${MINIMAL_SQL.acquire.replace(/VALUES \((.*)\)\n/, 'SELECT $1 FROM s\n')}`,
      };
  const release = { name: 'bench_minimal_release_notify', text: MINIMAL_SQL.releaseNotify };
  return notifyLease(client, MINIMAL_CHANNEL, {
    attempt: async (lockId, ownerToken) => (await client.query({ ...acquire, values: [lockId, ownerToken, TTL_SECONDS] })).rows.length === 1,
    release: async (lockId, ownerToken) => expectOneRow((await client.query({ ...release, values: [lockId, ownerToken] })).rows, 'minimal lease release'),
  });
}

/**
 * The library's own acquire and release statements (its lock store, through the bench seam), sent by
 * hand on one raw pg connection and waited for with LISTEN/NOTIFY by hand: the hand-off at the cost of
 * its own SQL, without Sequelize's pool, DbMutex, Lease or the listener. The connection marks the lock
 * id as awaited as the library's listener does, so releases notify.
 * @param {string} url
 * @param {{ history: boolean }} options
 */
async function ownNotifyLease(url, { history }) {
  const internals = libraryInternals();
  if (!internals) throw new Error('this build has no bench seam');
  const client = await rawClient(url);
  const store = internals.seam.storeOn('postgres', NAMES, async (statement) => (await client.query({ name: statement.name || undefined, text: statement.text, values: [...statement.values] })).rows, undefined, history);
  const channel = internals.seam.releaseChannel('postgres', NAMES);
  if (!channel) throw new Error('no release channel');
  // The library's own mark (as its listener sends it): a shared session advisory lock on the id, so
  // the release notifies. It fails only while a release of that id is committing: try again then.
  const mark = internals.seam.waiterMark('postgres', NAMES);
  if (!mark) throw new Error('the library no longer marks awaited lock ids: update ownNotifyLease');
  const marked = new Set();
  return notifyLease(client, channel, {
    attempt: async (lockId, ownerToken) => {
      while (!marked.has(lockId)) if ((await client.query(mark.mark, [lockId])).rows[0]?.marked === true) marked.add(lockId);
      const params = { lockId, ownerToken, holder: 'bench', hostname: 'bench-host', pid: process.pid, ttlSeconds: TTL_SECONDS, leaseSeconds: null };
      return (await store.acquire(params)).won;
    },
    release: async (lockId, ownerToken) => {
      if (!(await store.release({ lockId, ownerToken }))) throw new Error('own statements: the release found no row');
    },
  });
}

/**
 * Raw contended rows for a worker process: the server's blocking advisory lock (woken by the server
 * itself), and the leases by hand woken by LISTEN/NOTIFY. Each returns { run(lockId, section), close() }.
 * @type {import('../types').BenchDialect['contendedRaw']}
 */
async function contendedRaw(url, variant) {
  if (variant === 'minimal-notify-durable') return minimalNotifyLease(url, { durable: true });
  if (variant === 'minimal-notify-async') return minimalNotifyLease(url, { durable: false });
  if (variant === 'own-notify') return ownNotifyLease(url, { history: true });
  if (variant === 'own-notify-nohistory') return ownNotifyLease(url, { history: false });
  if (variant !== 'advisory-blocking') throw new Error(`unknown raw contended variant ${variant}`);
  const client = await rawClient(url);
  return {
    async run(lockId, section) {
      await client.query({ name: 'bench_adv_lock', text: 'SELECT pg_advisory_lock(hashtext($1))', values: [lockId] });
      try {
        await section();
      } finally {
        await client.query({ name: 'bench_adv_unlock', text: 'SELECT pg_advisory_unlock(hashtext($1))', values: [lockId] });
      }
    },
    close: () => client.end(),
  };
}

/** Number of connections LISTENing for `tableName`'s release channel (leak checks). */
/** @type {NonNullable<import('../types').BenchDialect['listenerConnections']>} */
async function listenerConnections(url, tableName) {
  const internals = libraryInternals();
  const names = { ...NAMES, tableName, historyTableName: `${tableName}_history` };
  const channel = internals?.seam.releaseChannel('postgres', names) ?? `db_mutex_${tableName}`;
  return withClient(url, async (c) => {
    const r = await c.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = $1 AND pid <> pg_backend_pid()",
      [`LISTEN "${channel}"`],
    );
    return r.rows[0].n;
  });
}

/** @satisfies {import('../types').BenchDialect} */
const postgres = {
  name: 'postgres',
  label: 'PostgreSQL',
  openServer,
  createScratch,
  describeServer,
  makeSequelize,
  fastCommitOptions,
  uncontendedVariants,
  ownStatementsKey: 'lib-sql-raw',
  ownStatementsNoHistoryKey: 'lib-sql-raw-nohistory',
  LEVERS_UNDONE,
  stubRows,
  libraryInternals,
  fillOtherRows,
  dropTables,
  scaleBaselines,
  contendedRaw,
  contendedRawVariants: [
    // The first variant is the one every row is compared with.
    { key: 'advisory-blocking', short: 'blocking advisory lock', label: 'raw pg advisory lock, blocking pg_advisory_lock (server wakes the next waiter)' },
    {
      key: 'own-notify',
      short: 'its own statements with LISTEN/NOTIFY by hand',
      label: "its own statements by hand, waited for with LISTEN/NOTIFY: the library's acquire and release (history row as shipped) on one raw pg connection per process, which marks the id as awaited",
    },
    {
      key: 'own-notify-nohistory',
      short: 'the same without the history write',
      label: 'the same, history off',
    },
    {
      key: 'minimal-notify-durable',
      short: 'minimal durable lease with LISTEN/NOTIFY by hand',
      label: 'minimal durable lease by hand, waited for with LISTEN/NOTIFY: one raw pg connection per process, every release notifies, durable acquire, asynchronous release',
    },
    {
      key: 'minimal-notify-async',
      short: 'the same with an asynchronous acquire',
      label: 'the same, acquire committed asynchronously too (not safe: shows what the WAL flush costs)',
    },
  ],
  listenerConnections,
};

module.exports = postgres;
