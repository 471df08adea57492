// @ts-check
'use strict';
/**
 * Section 5: memory after many cycles, and a leak soak over every path of a lock's life (plain
 * cycle, waiter woken, waiter timed out, waiter aborted, body that throws): heap, timers, pool and
 * LISTEN connections must stay flat however many locks come and go. Both measure this process's heap, so their DbMutex talks to sessions with
 * synchronous_commit off: the library code path is identical, the server only skips the WAL flush,
 * which makes 100 000 cycles take seconds instead of minutes.
 */
const { setTimeout: sleep } = require('node:timers/promises');
const { gc } = require('../lib/measure');
const { fmt, fmtBytes } = require('../lib/stats');

const noop = () => undefined;

/** @typedef {import('../types').Library} Library */
/** @typedef {import('../types').DbMutex} DbMutex */

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));
/** @param {unknown} error */
const codeOf = (error) => (error instanceof Error && 'code' in error ? error.code : undefined);

function snapshot() {
  gc();
  gc();
  const m = process.memoryUsage();
  const resources = process.getActiveResourcesInfo();
  return { heap: m.heapUsed, rss: m.rss, external: m.external, timers: resources.filter((r) => r === 'Timeout').length, resources: resources.length };
}

/**
 * @typedef {{ size: number, available: number, using: number, waiting: number }} PoolStats
 * @param {import('sequelize').Sequelize} sequelize
 * @returns {PoolStats | null}
 */
function poolStats(sequelize) {
  // Sequelize's connection manager and its pool are not in its typings.
  /** @type {(PoolStats & { write?: undefined }) | { write?: PoolStats, size?: undefined } | undefined} */
  const pool = /** @type {any} */ (sequelize).connectionManager.pool;
  // sequelize-pool exposes size/available/using/waiting; a replication pool nests it under .write.
  const p = pool && typeof pool.size === 'number' ? pool : pool && pool.write;
  return p ? { size: p.size, available: p.available, using: p.using, waiting: p.waiting } : null;
}

/**
 * @param {Library} lib
 * @param {DbMutex} mutex
 * @param {number} total
 * @param {number} concurrency
 * @param {(done: number) => void} onProgress
 */
async function cycles(lib, mutex, total, concurrency, onProgress) {
  let started = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, j) => {
      const lockId = `bench:mem:${j}`;
      while (started < total) {
        started++;
        await lib.withDbMutex(lockId, noop, { mutex });
        done++;
        if (done % 10_000 === 0) onProgress(done);
      }
    }),
  );
}

/**
 * @param {import('../types').BenchEnv} env
 * @returns {Promise<import('../types').Report>}
 */
async function memoryRun(env) {
  const { config, log, dialect, lib } = env;
  const sequelize = env.sequelizeFor(await env.newDatabase(), dialect.fastCommitOptions());
  const mutex = await env.mutexFor(sequelize);
  const checkpoints = [1000, 10_000, config.memoryCycles].filter((n, i, a) => n <= config.memoryCycles && a.indexOf(n) === i);
  /** @type {(ReturnType<typeof snapshot> & { cycles: number, held: number })[]} */
  const points = [];
  let done = 0;
  const t0 = performance.now();
  try {
    for (const target of checkpoints) {
      await cycles(lib, mutex, target - done, config.memoryConcurrency, (n) => log(`  memory: ${(done + n).toLocaleString('en-US')} cycles`));
      done = target;
      points.push({ cycles: done, ...snapshot(), held: mutex.heldLocks().length });
    }
  } finally {
    await mutex.close();
  }
  const secs = (performance.now() - t0) / 1000;
  const first = points[0];
  const last = points[points.length - 1];
  if (!first || !last) throw new RangeError('no memory checkpoint was reached');
  const rows = points.map((p) => [
    p.cycles.toLocaleString('en-US'),
    fmtBytes(p.heap),
    fmtBytes(p.heap - first.heap),
    fmtBytes(p.rss),
    fmtBytes(p.rss - first.rss),
    String(p.timers),
    String(p.held),
  ]);
  // "No growth" allowance: 1 MiB of heap covers JIT/IC churn; a leak of even 10 bytes per cycle over 100k cycles is 1 MiB.
  const growth = last.heap - first.heap;
  return {
    title: 'Memory over many cycles',
    intro:
      `withDbMutex(noop) with the default options (heartbeat on), ${config.memoryConcurrency} concurrent loops on distinct lock ids, ` +
      `${last.cycles.toLocaleString('en-US')} cycles in ${fmt(secs)} s. Figures after two forced GCs (--expose-gc).`,
    tables: [{ headers: ['after cycles', 'heap used', 'heap Δ vs 1,000', 'RSS', 'RSS Δ vs 1,000', 'active timers', 'locks held'], rows }],
    targets: [
      {
        name: `${dialect.label}: heap growth ${last.cycles.toLocaleString('en-US')} vs ${first.cycles.toLocaleString('en-US')} cycles`,
        value: growth,
        target: '≈ 0 (< 1 MiB)',
        pass: growth < 1024 * 1024,
        fmt: fmtBytes,
      },
    ],
  };
}

/** Every path a lock can take, once per round: plain cycle, waiter woken, waiter timed out, waiter aborted, body throws. */
/**
 * @param {Library} lib
 * @param {DbMutex} mutex
 * @param {number} i
 */
async function soakRound(lib, mutex, i) {
  const id = `bench:soak:${i % 16}`;
  await lib.withDbMutex(id, noop, { mutex });
  // A waiter that is woken by the release.
  const holder = await mutex.acquire(id);
  const woken = mutex.acquire(id, { waitMs: 10_000 });
  await sleep(1);
  await holder.release();
  await (await woken).release();
  // A waiter that times out.
  const holder2 = await mutex.acquire(id);
  try {
    await mutex.acquire(id, { waitMs: 3 });
    throw new Error('soak: a held lock was acquired twice');
  } catch (error) {
    if (codeOf(error) !== 'DB_MUTEX_WAIT_TIMEOUT') throw error;
  }
  // A waiter that is aborted.
  const controller = new globalThis.AbortController();
  const aborted = mutex.acquire(id, { waitMs: 10_000, signal: controller.signal });
  setTimeout(() => controller.abort(new Error('soak abort')), 2);
  try {
    await aborted;
    throw new Error('soak: an aborted waiter acquired a held lock');
  } catch (error) {
    if (messageOf(error) !== 'soak abort') throw error;
  }
  await holder2.release();
  // A body that throws.
  try {
    await lib.withDbMutex(id, () => {
      throw new Error('soak body');
    }, { mutex });
  } catch (error) {
    if (messageOf(error) !== 'soak body') throw error;
  }
}

/**
 * @param {import('../types').BenchEnv} env
 * @returns {Promise<import('../types').Report>}
 */
async function soakRun(env) {
  const { config, log, dialect, lib } = env;
  const listenerConnections = dialect.listenerConnections;
  if (!listenerConnections) throw new Error(`the leak soak needs ${dialect.label}'s listenerConnections (bench/dialects/${dialect.name}.js)`);
  const url = await env.newDatabase();
  const sequelize = env.sequelizeFor(url, dialect.fastCommitOptions());
  const tableName = 'db_mutex_locks';
  const mutex = await env.mutexFor(sequelize, { pollIntervalMs: 50, tableName });
  const warm = Math.min(100, config.soakRounds);
  let before;
  let after;
  const t0 = performance.now();
  try {
    for (let i = 0; i < warm; i++) await soakRound(lib, mutex, i);
    before = { ...snapshot(), pool: poolStats(sequelize), listeners: await listenerConnections(url, tableName), held: mutex.heldLocks().length };
    for (let i = 0; i < config.soakRounds; i++) {
      await soakRound(lib, mutex, i);
      if ((i + 1) % 500 === 0) log(`  soak: ${i + 1} rounds`);
    }
    await sleep(20); // let the aborted waiters' timers settle
    after = { ...snapshot(), pool: poolStats(sequelize), listeners: await listenerConnections(url, tableName), held: mutex.heldLocks().length };
  } finally {
    await mutex.close();
  }
  const secs = (performance.now() - t0) / 1000;
  const pool = (/** @type {PoolStats | null} */ p) => (p ? `${p.size} open / ${p.available} idle / ${p.using} in use / ${p.waiting} waiting` : '–');
  const rows = [
    ['heap used', fmtBytes(before.heap), fmtBytes(after.heap), fmtBytes(after.heap - before.heap)],
    ['RSS', fmtBytes(before.rss), fmtBytes(after.rss), fmtBytes(after.rss - before.rss)],
    ['active timers (process-wide)', String(before.timers), String(after.timers), String(after.timers - before.timers)],
    ['active handles/requests (process-wide)', String(before.resources), String(after.resources), String(after.resources - before.resources)],
    ['Sequelize pool', pool(before.pool), pool(after.pool), ''],
    ['LISTEN connections of this DbMutex', String(before.listeners), String(after.listeners), ''],
    ['locks held by the DbMutex', String(before.held), String(after.held), ''],
  ];
  const growth = after.heap - before.heap;
  return {
    title: 'Leak soak: every path of a lock\'s life',
    intro:
      `${config.soakRounds.toLocaleString('en-US')} rounds (after ${warm} warm-up rounds) in ${fmt(secs)} s; each round: a withDbMutex cycle, a waiter ` +
      'woken by a release, a waiter that times out (waitMs 3), a waiter aborted by its AbortSignal, and a body that throws. ' +
      'Sequelize pool and LISTEN connections counted at both ends.',
    tables: [{ headers: ['figure', 'before', 'after', 'Δ'], rows }],
    targets: [
      { name: `${dialect.label}: soak heap growth over ${config.soakRounds.toLocaleString('en-US')} rounds`, value: growth, target: '≈ 0 (< 1 MiB)', pass: growth < 1024 * 1024, fmt: fmtBytes },
      {
        name: `${dialect.label}: soak leaves timers / pool / listener steady`,
        value: after.timers - before.timers,
        target: 'Δ timers 0, 1 listener, pool idle',
        pass: after.timers <= before.timers && after.listeners <= 1 && (!after.pool || after.pool.using === 0) && after.held === 0,
        fmt: (v) => `Δ timers ${v}, ${after.listeners} listener(s), ${after.pool ? after.pool.using : '?'} in use`,
      },
    ],
  };
}

module.exports = { memoryRun, soakRun };
