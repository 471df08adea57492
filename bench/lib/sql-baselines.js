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
const HOLDER = 'bench';

/**
 * A raw driver connection, wrapped by the dialect file.
 * @typedef {object} RawConnection
 * @property {(text: string, values: readonly unknown[]) => Promise<Record<string, unknown>[]>} query
 * @property {() => Promise<void>} close
 */
/** @typedef {(url: string) => Promise<RawConnection>} Open */

/**
 * One uncontended acquire + release through a lock store of the library, checked. The release gets
 * what the holder knows of its acquisition, as the library's Lease passes it: MariaDB and SQLite
 * write a release's history row only from those facts, so with bare keys a store with history on
 * would skip the very write it is meant to time.
 * @param {import('../types').LockStore} store
 * @param {string} what names the row in errors
 * @returns {(lockId: string) => Promise<void>}
 */
function storeCycle(store, what) {
  return async (lockId) => {
    const ownerToken = randomUUID();
    const acquired = await store.acquire({ lockId, ownerToken, holder: HOLDER, hostname: 'bench-host', pid: process.pid, ttlSeconds: TTL_SECONDS, leaseSeconds: null });
    if (!acquired.won) throw new Error(`${what}: acquire refused`);
    const held = { lockId, ownerToken, fencingToken: acquired.fencingToken, holder: HOLDER, acquiredAt: acquired.acquiredAt };
    if (!(await store.release(held))) throw new Error(`${what}: release found no row`);
  };
}

/**
 * One cycle of the floor: the statements withDbMutex sends for an uncontended acquire + release,
 * without Sequelize's pool, the library's statement runner, its statement-timeout wrapper, or any
 * JavaScript of DbMutex/Lease around them. The library's lock store (its SQL and its row parsing,
 * through the bench seam) sends each statement's text through `query`. `history`: the store writes
 * the history table as the library does by default (the floor itself leaves it out).
 */
/**
 * @param {import('../types').LibraryInternals} internals
 * @param {RawConnection['query']} query
 * @returns {(lockId: string) => Promise<void>}
 */
function floorCycle(internals, query, { history = false } = {}) {
  const store = internals.seam.storeOn(internals.dialectName, NAMES, (statement) => query(statement.text, statement.values), undefined, history);
  return storeCycle(store, history ? 'own statements (history on)' : 'floor');
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

/**
 * The floor row (the raw driver has its own connection, opened in setup); with `history`, the same
 * statements as the library sends them by default, history write included, under another key.
 */
/**
 * @param {Open} open
 * @param {string} url
 * @param {import('../types').LibraryInternals} internals
 * @param {string} label
 * @param {{ key?: string, history?: boolean }} [p]
 * @returns {import('../types').Variant}
 */
function floorVariant(open, url, internals, label, { key = 'floor', history = false } = {}) {
  /** @type {RawConnection | undefined} */
  let conn;
  /** @type {((lockId: string) => Promise<void>) | undefined} */
  let cycle;
  return {
    key,
    group: 'baseline',
    label,
    setup: async () => {
      const c = (conn ??= await open(url));
      cycle = floorCycle(internals, (text, values) => c.query(text, values), { history });
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
}

/**
 * The library's own statements through its StatementRunner (pool checkout + logging hook + timeout
 * wrapper), history write included as shipped.
 */
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
    label: "the library's own SQL (history on, as shipped) through its StatementRunner (Sequelize pool checkout + logging hook)",
    cycle: (lockId) => {
      if (!cycle) {
        const runner = internals.seam.statementRunner(sequelize, 10_000);
        cycle = floorCycle(internals, (text, values) => runner.run({ name: 'bench_runner', text, values }), { history: true });
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

module.exports = { TTL_SECONDS, storeCycle, floorCycle, floorVariant, originalVariant, runnerVariant, libraryInternals };
