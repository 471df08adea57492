// @ts-check
'use strict';
/**
 * Configuration (environment variables), the machine description, and the per-dialect environment
 * every section runs in: one server, one scratch database created and dropped by the bench, the
 * DbMutex under test, and DbMutexes with one adopted lever undone (to measure what it is worth).
 */
const os = require('node:os');
const path = require('node:path');
const { mutexWithLeversUndone } = require('./levers');

const SECTIONS = ['uncontended', 'contended', 'scale', 'heartbeat', 'memory', 'soak', 'failover', 'observability', 'semaphore'];

/**
 * @param {string} name
 * @param {number} fallback
 */
function int(name, fallback, min = 1) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}
/**
 * @param {string} name
 * @param {number} fallback
 */
function num(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}
/**
 * @template [T=string]
 * @param {string} name
 * @param {T[]} fallback
 * @param {(s: string) => T} [parse] default: the text itself
 * @returns {T[]}
 */
function list(name, fallback, parse = (s) => /** @type {T} */ (/** @type {unknown} */ (s))) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  return raw.split(',').map((s) => s.trim()).filter(Boolean).map(parse);
}
/**
 * @param {string} name
 * @param {number[]} fallback
 */
function sizes(name, fallback) {
  return list(name, fallback, (s) => {
    const n = Number(s.replace(/_/g, ''));
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`${name}: ${s} is not a row count`);
    return n;
  });
}

function readConfig() {
  const sections = list('BENCH_SECTIONS', SECTIONS);
  for (const s of sections) if (!SECTIONS.includes(s)) throw new RangeError(`BENCH_SECTIONS: unknown section ${s} (known: ${SECTIONS.join(', ')})`);
  return {
    dialects: list('BENCH_DIALECTS', ['postgres']),
    sections,
    cycles: int('BENCH_CYCLES', 200),
    runs: int('BENCH_RUNS', 9),
    warmup: int('BENCH_WARMUP', 100, 0),
    workers: int('BENCH_WORKERS', 8, 2),
    contendedSeconds: num('BENCH_CONTENDED_SECONDS', 3),
    contendedRuns: int('BENCH_CONTENDED_RUNS', 3),
    // Only these contended rows (their keys; the server's blocking lock, which every ratio needs, always runs).
    contendedRows: list('BENCH_CONTENDED_ROWS', /** @type {string[]} */ ([])),
    sectionMs: num('BENCH_SECTION_MS', 1),
    thinkMs: int('BENCH_THINK_MS', 2, 0),
    scaleSizes: sizes('BENCH_SCALE_SIZES', [10, 10_000, 100_000, 1_000_000]),
    scaleCycles: int('BENCH_SCALE_CYCLES', 300),
    scaleRuns: int('BENCH_SCALE_RUNS', 3),
    scaleMaxRunMs: int('BENCH_SCALE_MAX_RUN_MS', 2000),
    dashboardLocks: int('BENCH_DASHBOARD_LOCKS', 100_000),
    heartbeatSizes: sizes('BENCH_HEARTBEAT_SIZES', [1, 100, 1000]),
    leaseSeconds: num('BENCH_LEASE_SECONDS', 1.5),
    heartbeatPeriods: int('BENCH_HEARTBEAT_PERIODS', 6),
    memoryCycles: int('BENCH_MEMORY_CYCLES', 100_000, 1000),
    memoryConcurrency: int('BENCH_MEMORY_CONCURRENCY', 4),
    soakRounds: int('BENCH_SOAK_ROUNDS', 1000),
    redisUrl: process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379',
    results: process.env.BENCH_RESULTS || path.join(__dirname, '..', 'results.md'),
  };
}

/** @param {string} name */
function packageVersion(name) {
  try {
    return /** @type {{ version: string }} */ (require(`${name}/package.json`)).version;
  } catch {
    return 'not installed';
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0] ? cpus[0].model.trim() : 'unknown',
    cores: cpus.length,
    ramGiB: os.totalmem() / 1024 ** 3,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    packages: Object.fromEntries(['sequelize', 'pg', 'redlock', 'ioredis'].map((p) => [p, packageVersion(p)])),
  };
}

/**
 * The built library (dist/), which is what users get; typed from src/ (bench/types.d.ts).
 * @returns {import('../types').Library}
 */
function loadLibrary() {
  return require(path.join(__dirname, '..', '..', 'dist'));
}

/**
 * A bench/dialects/<name>.js module.
 * @param {string} name
 * @returns {import('../types').BenchDialect}
 */
function loadDialect(name) {
  return require(path.join(__dirname, '..', 'dialects', `${name}.js`));
}

/**
 * Opens the dialect's server and a scratch database with the schema synced. Sections get more
 * scratch databases from `newDatabase()`: PostgreSQL wakes every LISTENing backend of a database on
 * each NOTIFY, so each DbMutex under test gets a database of its own, where it is the only
 * listener, as in an app process. `close()` releases everything, drops every scratch database, and
 * stops an embedded server.
 */
/**
 * @param {import('../types').BenchDialect} dialect
 * @param {import('../types').BenchEnv['extraMutex']} extraMutex
 */
async function leverMutexes(dialect, extraMutex) {
  /** @type {Map<string, import('../types').DbMutex>} */
  const out = new Map();
  for (const name of Object.keys(dialect.LEVERS_UNDONE || {})) {
    const made = await extraMutex('db_mutex_locks', { patches: [name] });
    if (made) out.set(name, made.mutex);
  }
  return out;
}

/**
 * @param {import('../types').BenchConfig} config
 * @param {import('../types').Library} lib
 * @param {string} dialectName
 * @param {import('../types').Log} log
 * @returns {Promise<{ env: import('../types').BenchEnv, close: () => Promise<void> }>}
 */
async function openDialect(config, lib, dialectName, log) {
  const dialect = loadDialect(dialectName);
  const server = await dialect.openServer(log);
  /** @type {(() => unknown)[]} */
  const cleanups = [];
  /** @type {import('../types').Scratch[]} */
  const databases = [];
  const close = async () => {
    for (const fn of cleanups.splice(0)) await Promise.resolve().then(fn).catch(() => undefined);
    for (const db of databases.splice(0)) await db.drop().catch((/** @type {Error} */ error) => log(`could not drop ${db.name}: ${error.message}`));
    await server.stop();
  };
  const newDatabase = async () => {
    const db = await dialect.createScratch(server.url);
    databases.push(db);
    return db.url;
  };
  /** @type {import('../types').BenchEnv['sequelizeFor']} A Sequelize instance closed by `close()`. */
  const sequelizeFor = (url, options) => {
    const s = dialect.makeSequelize(url, options);
    cleanups.push(() => s.close());
    return s;
  };
  /** @type {import('../types').BenchEnv['mutexFor']} A DbMutex (schema synced) closed by `close()`, before its Sequelize instance. */
  const mutexFor = async (sequelize, options = {}) => {
    const m = lib.initDbMutex(sequelize, { setDefault: false, ...options });
    cleanups.unshift(() => m.close());
    await m.sync();
    return m;
  };
  try {
    const url = await newDatabase();
    log(`${dialect.label}: scratch database ${databases[0]?.name}`);
    const description = await dialect.describeServer(url);
    const sequelize = sequelizeFor(url);
    const mutex = await mutexFor(sequelize);
    /**
     * A DbMutex in a database of its own, optionally with adopted levers undone (bench-only, through
     * the library's bench seam: bench/lib/levers.js).
     * Returns { mutex, url }, or null when the dialect cannot undo one of them.
     * @type {import('../types').BenchEnv['extraMutex']}
     */
    const extraMutex = async (tableName, { patches = [], listen = true, history = true } = {}) => {
      const dbUrl = await newDatabase();
      const m = await mutexWithLeversUndone(lib, dialect, sequelizeFor(dbUrl), { setDefault: false, tableName, listen, history }, patches);
      if (!m) return null;
      cleanups.unshift(() => m.close());
      await m.sync();
      return { mutex: m, url: dbUrl };
    };
    const noListen = await extraMutex('db_mutex_locks', { listen: false });
    if (!noListen) throw new Error('a DbMutex with listen: false could not be made');
    const noHistory = await extraMutex('db_mutex_locks', { history: false });
    if (!noHistory) throw new Error('a DbMutex with history: false could not be made');
    /** @type {Omit<import('../types').BenchEnv, 'pgbouncer'>} */
    const base = {
      config,
      log,
      lib,
      dialect,
      url,
      description,
      embedded: server.embedded,
      sequelize,
      mutex,
      // name -> a DbMutex with that one adopted lever undone (levers that cannot be undone on this build are left out)
      leverMutexes: await leverMutexes(dialect, extraMutex),
      mutexNoListen: noListen.mutex,
      mutexNoHistory: noHistory.mutex,
      extraMutex,
      newDatabase,
      sequelizeFor,
      mutexFor,
      /** Runs `fn` in close(), before the scratch databases are dropped (e.g. stops a PgBouncer). */
      onClose: (fn) => {
        cleanups.push(fn);
      },
      track: (client) => {
        cleanups.push(() => client.end());
        return client;
      },
    };
    /** @type {import('../types').BenchEnv} */
    const env = { ...base, pgbouncer: require('./pgbouncer').pgbouncers(base) };
    return { env, close };
  } catch (error) {
    await close();
    throw error;
  }
}

module.exports = { SECTIONS, readConfig, machine, packageVersion, loadLibrary, loadDialect, openDialect };
