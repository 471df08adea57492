// @ts-check
'use strict';
/**
 * SQLite side of the bench (contract: top of bench/dialects/postgres.js). Provides what the
 * uncontended and contended sections need; scale, heartbeat and memory are PostgreSQL-only for now.
 * There is no server: each scratch "database" is a FILE in a fresh temp directory, switched to WAL
 * mode (as the library does on first use), removed with its directory at the end. URLs are
 * `sqlite:<absolute path>`. SQLite has no LISTEN/NOTIFY and no blocking lock a raw baseline could
 * wait on, so the contended section shows the library's polling rows only.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const sqlite3 = require('sqlite3');
const { Sequelize } = require('sequelize');
const { floorVariant, originalVariant, runnerVariant, libraryInternals: internalsOf } = require('../lib/sql-baselines');
const { packageVersion } = require('../lib/env');

const BUSY_TIMEOUT_MS = 10_000;
/** The row that sends the library's own statements by hand as shipped (history on); the floor is the same without history. */
const OWN_STATEMENTS = 'lib-sql-raw';

/** @param {string} url */
function fileOf(url) {
  if (!url.startsWith('sqlite:')) throw new Error(`not a sqlite: URL: ${url}`);
  return url.slice('sqlite:'.length);
}

/**
 * A raw sqlite3 connection wrapped as `query(text, values) → rows`.
 * @param {string} url
 */
async function open(url) {
  /** @type {import('sqlite3').Database} */
  const db = await new Promise((resolve, reject) => {
    const d = new sqlite3.Database(fileOf(url), (error) => (error ? reject(error) : resolve(d)));
  });
  db.configure('busyTimeout', BUSY_TIMEOUT_MS);
  /** @type {import('../lib/sql-baselines').RawConnection['query']} */
  const query = (text, values) =>
    new Promise((resolve, reject) => db.all(text, [...values], (error, rows) => (error ? reject(error) : resolve(/** @type {Record<string, unknown>[]} */ (rows ?? [])))));
  /** @type {() => Promise<void>} */
  const close = () => new Promise((resolve) => db.close(() => resolve()));
  return { raw: db, query, close };
}

/** @type {import('../types').BenchDialect['openServer']} */
async function openServer() {
  return { url: 'sqlite:', embedded: false, stop: async () => undefined };
}

/** @type {import('../types').BenchDialect['createScratch']} */
async function createScratch() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbm-bench-sqlite-'));
  const url = `sqlite:${path.join(dir, 'bench.sqlite')}`;
  const c = await open(url);
  try {
    await c.query('PRAGMA journal_mode = WAL', []);
  } finally {
    await c.close();
  }
  return { name: dir, url, drop: async () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** @type {import('../types').BenchDialect['describeServer']} */
async function describeServer(url) {
  const c = await open(url);
  const first = async (/** @type {string} */ text, /** @type {string} */ column) => String((await c.query(text, []))[0]?.[column]);
  try {
    const version = await first('SELECT sqlite_version() AS v', 'v');
    const settings = {
      journal_mode: await first('PRAGMA journal_mode', 'journal_mode'),
      synchronous: await first('PRAGMA synchronous', 'synchronous'),
      file: path.dirname(fileOf(url)).startsWith(os.tmpdir()) ? `temp file in ${os.tmpdir()}` : fileOf(url),
    };
    return { product: `SQLite ${version} (sqlite3 ${packageVersion('sqlite3')})`, settings, otherConnections: 0 };
  } finally {
    await c.close();
  }
}

/** @type {import('../types').BenchDialect['makeSequelize']} */
function makeSequelize(url, options = {}) {
  return new Sequelize({ dialect: 'sqlite', storage: fileOf(url), logging: false, ...options });
}

function fastCommitOptions() {
  return {};
}

/** @type {import('../types').BenchDialect['libraryInternals']} */
function libraryInternals() {
  return internalsOf('sqlite');
}

/** @type {import('../types').BenchDialect['uncontendedVariants']} */
function uncontendedVariants(ctx) {
  const internals = libraryInternals();
  const variants = [
    originalVariant(open, ctx.url, {
      createTable: (t) =>
        `CREATE TABLE IF NOT EXISTS ${t} (id INTEGER PRIMARY KEY AUTOINCREMENT, lock_id VARCHAR(255) NOT NULL UNIQUE, creation_time DATETIME NOT NULL)`,
    }),
  ];
  if (internals) {
    variants.unshift(
      floorVariant(open, ctx.url, internals, "raw sqlite3 floor: the library's own acquire (INSERT … ON CONFLICT … WHERE expired RETURNING) + release statements, one connection"),
    );
    variants.push(
      floorVariant(
        open,
        ctx.url,
        internals,
        "its own statements by hand: the library's acquire and release through the raw driver, one connection, as the library sends them " +
          '(history on, as shipped: the history row is a second statement after the release)',
        { key: OWN_STATEMENTS, history: true },
      ),
      runnerVariant(internals, ctx.sequelize),
    );
  }
  return variants;
}

/** Canned successful answers for the library's acquire and release (JS-only rows). */
/** @type {import('../types').BenchDialect['stubRows']} */
function stubRows(statement) {
  if (statement.name.endsWith('_acquire')) {
    const now = Date.now();
    return [{ fencing_token: 1, acquired_ms: now, expires_ms: now + 1_800_000 }];
  }
  if (statement.name.endsWith('_release')) return [{ expired: 0 }];
  return [];
}

/** @satisfies {import('../types').BenchDialect} */
const sqliteBench = {
  name: 'sqlite',
  label: 'SQLite',
  // No LISTEN/NOTIFY: waiting is polling only (sections/contended.js drops its notify row).
  notifies: false,
  openServer,
  createScratch,
  describeServer,
  makeSequelize,
  fastCommitOptions,
  uncontendedVariants,
  ownStatementsKey: OWN_STATEMENTS,
  // The floor sends the library's own statements through the raw driver (db.all), as the library does,
  // without the history write.
  ownStatementsNoHistoryKey: 'floor',
  LEVERS_UNDONE: {},
  stubRows,
  libraryInternals,
  contendedRaw: async (/** @type {string} */ _url, /** @type {string} */ variant) => {
    throw new Error(`no raw contended variant on SQLite (${variant})`);
  },
  contendedRawVariants: [],
};

module.exports = sqliteBench;
