// @ts-check
'use strict';
/**
 * Baseline rows shared by the dialects whose raw driver is wrapped as `query(text, values) → rows`
 * (bench/dialects/mariadb.js, sqlite.js): the floor (the library's own acquire and release
 * statements, sent straight through the raw driver on one connection) and the original
 * django-db-mutex algorithm in raw SQL. PostgreSQL keeps its own richer set in postgres.js.
 */
const { randomUUID } = require('node:crypto');
const { NAMES, benchSeam } = require('./levers');

const TTL_SECONDS = 1800;

/**
 * A raw driver connection, wrapped by the dialect file.
 * @typedef {object} RawConnection
 * @property {(text: string, values: readonly unknown[]) => Promise<Record<string, unknown>[]>} query
 * @property {() => Promise<void>} close
 */
/** @typedef {(url: string) => Promise<RawConnection>} Open */

/**
 * One cycle of the floor: the statements withDbMutex sends for an uncontended acquire + release,
 * without Sequelize's pool, the library's statement runner, its statement-timeout wrapper, or any
 * JavaScript of DbMutex/Lease around them. The library's lock store (its SQL and its row parsing,
 * through the bench seam) sends each statement's text through `query`.
 */
/**
 * @param {import('../types').LibraryInternals} internals
 * @param {RawConnection['query']} query
 * @returns {(lockId: string) => Promise<void>}
 */
function floorCycle(internals, query) {
  const store = internals.seam.storeOn(internals.dialectName, NAMES, (statement) => query(statement.text, statement.values));
  return async (lockId) => {
    const ownerToken = randomUUID();
    const acquired = await store.acquire({ lockId, ownerToken, holder: 'bench', hostname: 'bench-host', pid: process.pid, ttlSeconds: TTL_SECONDS, leaseSeconds: null });
    if (!acquired.won) throw new Error('floor acquire refused');
    if (!(await store.release({ lockId, ownerToken }))) throw new Error('floor release found no row');
  };
}

/**
 * The original's algorithm (its model: autoincrement id, unique lock_id, creation_time; expiry
 * judged by the client's clock): DELETE expired; BEGIN; SAVEPOINT; INSERT; RELEASE; COMMIT;
 * SELECT by pk; DELETE by pk. `createTable` is the dialect's DDL for that model.
 */
/**
 * @param {Open} open
 * @param {string} url
 * @param {{ createTable: (table: string) => string, table?: string }} p
 * @returns {import('../types').Variant}
 */
function originalVariant(open, url, { createTable, table = 'bench_original_dbmutex' }) {
  /** @type {RawConnection | undefined} */
  let conn;
  const connection = () => {
    if (!conn) throw new Error('original: not set up');
    return conn;
  };
  return {
    key: 'original',
    group: 'baseline',
    label: 'original django-db-mutex algorithm, raw SQL (DELETE expired; BEGIN; SAVEPOINT; INSERT; RELEASE; COMMIT; SELECT by pk; DELETE by pk)',
    setup: async () => {
      conn ??= await open(url);
      await conn.query(createTable(table), []);
    },
    cycle: async (lockId) => {
      const conn = connection();
      await conn.query(`DELETE FROM ${table} WHERE creation_time <= ?`, [new Date(Date.now() - TTL_SECONDS * 1000)]);
      await conn.query('BEGIN', []);
      let id;
      try {
        await conn.query('SAVEPOINT bench_s1', []);
        const rows = await conn.query(`INSERT INTO ${table} (lock_id, creation_time) VALUES (?, ?) RETURNING id`, [lockId, new Date()]);
        await conn.query('RELEASE SAVEPOINT bench_s1', []);
        await conn.query('COMMIT', []);
        id = rows[0]?.id;
      } catch (error) {
        await conn.query('ROLLBACK', []).catch(() => undefined);
        throw error;
      }
      const exists = await conn.query(`SELECT 1 AS a FROM ${table} WHERE id = ? LIMIT 1`, [id]);
      if (exists.length !== 1) throw new Error('original: lock row vanished');
      await conn.query(`DELETE FROM ${table} WHERE id = ?`, [id]);
    },
    teardown: async () => {
      if (conn) await conn.close();
      conn = undefined;
    },
  };
}

/** The floor row (the raw driver has its own connection, opened in setup). */
/**
 * @param {Open} open
 * @param {string} url
 * @param {import('../types').LibraryInternals} internals
 * @param {string} label
 * @returns {import('../types').Variant}
 */
function floorVariant(open, url, internals, label) {
  /** @type {RawConnection | undefined} */
  let conn;
  /** @type {((lockId: string) => Promise<void>) | undefined} */
  let cycle;
  return {
    key: 'floor',
    group: 'baseline',
    label,
    setup: async () => {
      const c = (conn ??= await open(url));
      cycle = floorCycle(internals, (text, values) => c.query(text, values));
    },
    cycle: (lockId) => {
      if (!cycle) throw new Error('floor: not set up');
      return cycle(lockId);
    },
    teardown: async () => {
      if (conn) await conn.close();
      conn = undefined;
    },
  };
}

/** The library's own statements through its StatementRunner (pool checkout + logging hook + timeout wrapper). */
/**
 * @param {import('../types').LibraryInternals} internals
 * @param {import('sequelize').Sequelize} sequelize
 * @returns {import('../types').Variant}
 */
function runnerVariant(internals, sequelize) {
  /** @type {((lockId: string) => Promise<void>) | undefined} */
  let cycle;
  return {
    key: 'lib-runner',
    group: 'decomposition',
    label: "the library's own SQL through its StatementRunner (Sequelize pool checkout + logging hook)",
    cycle: (lockId) => {
      if (!cycle) {
        const runner = internals.seam.statementRunner(sequelize, 10_000);
        cycle = floorCycle(internals, (text, values) => runner.run({ name: 'bench_runner', text, values }));
      }
      return cycle(lockId);
    },
  };
}

/**
 * The library's bench seam for one dialect (e.g. 'mariadb'); null when this build has none.
 * @param {string} dialectName
 * @returns {import('../types').LibraryInternals | null}
 */
function libraryInternals(dialectName) {
  const seam = benchSeam();
  return seam ? { seam, dialectName } : null;
}

module.exports = { TTL_SECONDS, floorCycle, floorVariant, originalVariant, runnerVariant, libraryInternals };
