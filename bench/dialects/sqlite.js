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

const BUSY_TIMEOUT_MS = 10_000;

function fileOf(url) {
  if (!url.startsWith('sqlite:')) throw new Error(`not a sqlite: URL: ${url}`);
  return url.slice('sqlite:'.length);
}

/** A raw sqlite3 connection wrapped as `query(text, values) → rows`. */
async function open(url) {
  const db = await new Promise((resolve, reject) => {
    const d = new sqlite3.Database(fileOf(url), (error) => (error ? reject(error) : resolve(d)));
  });
  db.configure('busyTimeout', BUSY_TIMEOUT_MS);
  const query = (text, values) =>
    new Promise((resolve, reject) => db.all(text, values, (error, rows) => (error ? reject(error) : resolve(rows ?? []))));
  return { raw: db, query, close: () => new Promise((resolve) => db.close(() => resolve())) };
}

async function openServer() {
  return { url: 'sqlite:', embedded: false, stop: async () => undefined };
}

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

async function describeServer(url) {
  const c = await open(url);
  try {
    const version = (await c.query('SELECT sqlite_version() AS v', []))[0].v;
    const settings = {
      journal_mode: (await c.query('PRAGMA journal_mode', []))[0].journal_mode,
      synchronous: (await c.query('PRAGMA synchronous', []))[0].synchronous,
      file: path.dirname(fileOf(url)).startsWith(os.tmpdir()) ? `temp file in ${os.tmpdir()}` : fileOf(url),
    };
    return { product: `SQLite ${version} (sqlite3 ${require('sqlite3/package.json').version})`, settings, otherConnections: 0 };
  } finally {
    await c.close();
  }
}

function makeSequelize(url, options = {}) {
  return new Sequelize({ dialect: 'sqlite', storage: fileOf(url), logging: false, ...options });
}

function fastCommitOptions() {
  return {};
}

function libraryInternals() {
  return internalsOf('sqlite');
}

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
    variants.push(runnerVariant(internals, ctx.sequelize));
  }
  return variants;
}

/** Canned successful answers for the library's acquire and release (JS-only rows). */
function stubRows(statement) {
  if (statement.name.endsWith('_acquire')) {
    const now = Date.now();
    return [{ fencing_token: 1, acquired_ms: now, expires_ms: now + 1_800_000 }];
  }
  if (statement.name.endsWith('_release')) return [{ expired: 0 }];
  return [];
}

module.exports = {
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
  LEVERS_UNDONE: {},
  stubRows,
  libraryInternals,
  contendedRaw: async (url, variant) => {
    throw new Error(`no raw contended variant on SQLite (${variant})`);
  },
  contendedRawVariants: [],
};
