// @ts-check
'use strict';
/**
 * A contended-section worker (forked by sections/contended.js). It waits for commands over IPC so the
 * parent forks the workers once and reuses them for every row:
 *   {type:'setup', dialect, url, variant, lockId, pollIntervalMs, sectionMs, thinkMs}  -> {type:'ready'}
 *   {type:'go', untilNs, baseNs}                                                        -> {type:'done', samples, errors}
 *   {type:'teardown'}                                                                   -> {type:'closed'}
 *   {type:'exit'}
 * Timestamps are process.hrtime.bigint(): CLOCK_MONOTONIC, one clock for every process on the
 * machine, so the parent can order sections of different workers on one time line.
 */
const { setTimeout: sleep } = require('node:timers/promises');
const { loadDialect, loadLibrary } = require('./lib/env');
const { mutexWithLeversUndone } = require('./lib/levers');
const probe = require('./lib/handoff-probe');

/** @typedef {import('./types').WorkerCommand} WorkerCommand */
/** @typedef {(section: () => Promise<void>, untilNs: bigint) => Promise<unknown>} Run */

/** @type {{ run: Run, close: () => Promise<void>, params: { sectionMs: number, thinkMs: number } } | null} */
let current = null;

function now() {
  return process.hrtime.bigint();
}

/**
 * @param {Extract<WorkerCommand, { type: 'setup' }>} msg
 * @returns {Promise<{ run: Run, close: () => Promise<void> }>}
 */
async function setup(msg) {
  const dialect = loadDialect(msg.dialect);
  // Stamps statements and notices on PostgreSQL's driver: where each hand-off's time goes.
  if (msg.dialect === 'postgres') probe.install();
  const variant = msg.variant;
  if (variant.kind === 'raw') {
    const raw = await dialect.contendedRaw(msg.url, String(variant.raw));
    return { run: (section) => raw.run(msg.lockId, section), close: () => raw.close() };
  }
  const lib = loadLibrary();
  const sequelize = dialect.makeSequelize(msg.url, { pool: { max: 2 } });
  const mutexOptions = {
    setDefault: false,
    pollIntervalMs: variant.pollIntervalMs,
    listen: variant.listen !== false,
    // e.g. { preparedStatements: false, listenUrl } for a row through a transaction-mode PgBouncer
    ...variant.mutexOptions,
  };
  // Bench-only: adopted levers undone, to measure what they are worth (see bench/lib/levers.js).
  const patches = variant.patches || [];
  const mutex = await mutexWithLeversUndone(lib, dialect, sequelize, mutexOptions, patches);
  if (!mutex) throw new Error(`levers ${patches.join(', ')} cannot be undone on this build`);
  const options = { mutex, waitMs: 60_000, heartbeat: variant.heartbeat ?? true };
  return {
    run: variant.retryMs === undefined ? (section) => lib.withDbMutex(msg.lockId, section, options) : retryingRun(lib, msg.lockId, options, variant.retryMs),
    close: async () => {
      await mutex.close();
      await sequelize.close();
    },
  };
}

/**
 * "Skip if held, try again soon": no waitMs; a refused attempt sleeps retryMs and tries again, so most
 * attempts are refusals of a held lock. Resolves false (no section ran) once the run's time is up.
 */
/**
 * @param {import('./types').Library} lib
 * @param {string} lockId
 * @param {import('../src/index').WithDbMutexOptions} options
 * @param {number} retryMs
 * @returns {Run}
 */
function retryingRun(lib, lockId, options, retryMs) {
  const once = { ...options, waitMs: 0 };
  return async (section, untilNs) => {
    for (;;) {
      try {
        await lib.withDbMutex(lockId, section, once);
        return true;
      } catch (error) {
        if (!(error instanceof lib.DbMutexError && error.code === 'DB_MUTEX_HELD')) throw error;
      }
      if (now() >= untilNs) return false;
      await sleep(retryMs);
    }
  };
}

/**
 * @param {Extract<WorkerCommand, { type: 'go' }>} msg
 * @returns {Promise<Omit<Extract<import('./types').WorkerReply, { type: 'done' }>, 'type' | 'pid'>>}
 */
async function go(msg) {
  if (!current) throw new Error("'go' before 'setup'");
  const until = BigInt(msg.untilNs);
  const base = BigInt(msg.baseNs);
  const ms = (/** @type {bigint} */ t) => Number(t - base) / 1e6;
  /** @type {[number, number, number][]} */
  const samples = [];
  /** @type {string[]} */
  const errors = [];
  const { sectionMs, thinkMs } = current.params;
  probe.take(base); // drop the stamps of setup and earlier runs
  while (now() < until) {
    let start = 0n;
    let end = 0n;
    try {
      const ran = await current.run(async () => {
        start = now();
        await sleep(sectionMs);
        end = now();
      }, until);
      if (ran !== false) samples.push([ms(start), ms(end), ms(now())]);
    } catch (error) {
      errors.push(error instanceof Error ? error.message : String(error));
      if (errors.length > 20) break;
    }
    // Work outside the lock, so a waiter (not the releaser looping straight back) usually takes over.
    if (thinkMs > 0) await sleep(thinkMs);
  }
  return { samples, errors, probe: probe.take(base) };
}

process.on('message', (/** @type {WorkerCommand} */ msg) => {
  const reply = (/** @type {import('./types').WorkerReply} */ m) => {
    if (!process.send) throw new Error('bench/worker.js runs as a forked child (sections/contended.js)');
    process.send(m);
  };
  (async () => {
    if (msg.type === 'setup') {
      const handle = await setup(msg);
      current = { ...handle, params: { sectionMs: msg.sectionMs, thinkMs: msg.thinkMs } };
      reply({ type: 'ready' });
    } else if (msg.type === 'go') {
      reply({ type: 'done', pid: process.pid, ...(await go(msg)) });
    } else if (msg.type === 'teardown') {
      if (current) await current.close();
      current = null;
      reply({ type: 'closed' });
    } else if (msg.type === 'exit') {
      // Whatever a failed setup left open must not keep this process alive.
      process.exit(0);
    }
  })().catch((error) => {
    reply({ type: 'error', message: error instanceof Error ? String(error.stack) : String(error) });
  });
});
