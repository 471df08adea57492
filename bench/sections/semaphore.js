// @ts-check
'use strict';
/**
 * Counting semaphores: uncontended acquire + release of a permit, critical section a no-op, against
 * the lock's own cycle in the same process and run (interleaved, see lib/measure.js). The ratio is
 * what a permit costs over a lock: on PostgreSQL the acquisition is one function call that claims the
 * semaphore and scans its permits; on MariaDB a transaction of four round trips; on SQLite one
 * statement. The refusal row is a full semaphore answering DB_MUTEX_SEMAPHORE_FULL.
 */
const { measureInterleaved } = require('../lib/measure');
const { fmt, fmtSpread, fmtRatio } = require('../lib/stats');

const noop = () => undefined;

/**
 * @param {import('../types').BenchEnv} env
 * @returns {import('../types').Variant[]}
 */
function variantsFor(env) {
  const { lib, mutex } = env;
  /** Another process's holders: a DbMutex with its own pool (closed with the scratch database). */
  const otherMutex = () => env.mutexFor(env.sequelizeFor(env.url), { holder: 'bench-other', setDefault: false });
  /** @param {number} limit */
  const semaphore = (limit) => (/** @type {string} */ id) => lib.withDbSemaphore(id, noop, { mutex, limit });
  /** @type {{ release(): Promise<void> }[]} */
  const held = [];
  return [
    { key: 'lock', label: 'lock: withDbMutex(noop), heartbeat on (the baseline)', cycle: (id) => lib.withDbMutex(id, noop, { mutex }) },
    { key: 'sem-1', label: 'semaphore: withDbSemaphore(noop, { limit: 1 })', cycle: semaphore(1) },
    { key: 'sem-3', label: 'semaphore: withDbSemaphore(noop, { limit: 3 })', cycle: semaphore(3) },
    {
      key: 'sem-100-busy',
      label: 'semaphore: limit 100, 50 permits held by another DbMutex (the lowest free permit is the 51st)',
      setup: async () => {
        const other = await otherMutex();
        for (let i = 0; i < 50; i++) held.push(await other.acquireSemaphore('bench:sem:busy', { limit: 100 }));
      },
      cycle: () => lib.withDbSemaphore('bench:sem:busy', noop, { mutex, limit: 100 }),
    },
    {
      key: 'sem-full',
      label: 'refused: acquireSemaphore of a full semaphore (rejects with DB_MUTEX_SEMAPHORE_FULL)',
      setup: async () => {
        held.push(await (await otherMutex()).acquireSemaphore('bench:sem:full', { limit: 1 }));
      },
      cycle: async () => {
        try {
          await mutex.acquireSemaphore('bench:sem:full', { limit: 1 });
        } catch (error) {
          if (error instanceof lib.DbMutexError && error.code === 'DB_MUTEX_SEMAPHORE_FULL') return;
          throw error;
        }
        throw new Error('a full semaphore admitted a holder');
      },
      teardown: async () => {
        for (const permit of held.splice(0)) await permit.release();
      },
    },
  ];
}

/**
 * @param {import('../types').BenchEnv} env
 * @returns {Promise<import('../types').Report>}
 */
async function run(env) {
  const { config, log } = env;
  const variants = variantsFor(env);
  log(`semaphore: ${variants.length} rows × ${config.runs} runs × ${config.cycles} cycles (warm-up ${config.warmup})`);
  const results = await measureInterleaved(variants, {
    cycles: config.cycles,
    runs: config.runs,
    warmup: config.warmup,
    lockIdPrefix: `bench:s:${env.dialect.name}`,
    log,
  });
  const base = results.get('lock');
  const baseMedian = base && !base.skipped ? base.wallUs.median : NaN;
  const rows = [...results.values()].map((e) =>
    e.skipped
      ? [e.variant.label, `skipped: ${e.skipped}`, '', '']
      : [e.variant.label, fmtSpread(e.wallUs, 0), fmtRatio(e.wallUs.median / baseMedian), fmt(e.cpuUs.median, 0)],
  );
  return {
    title: `Semaphore: acquire + release of a permit vs the lock's cycle (${env.dialect.label})`,
    intro:
      'Uncontended cycles, critical section a no-op; µs per cycle (min / median / max over runs), ratio of medians ' +
      "to the lock's withDbMutex cycle in the same run.",
    tables: [{ headers: ['row', 'µs per cycle', '× lock', 'client CPU µs'], rows }],
  };
}

module.exports = { run };
