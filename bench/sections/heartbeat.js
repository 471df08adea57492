// @ts-check
'use strict';
/**
 * Section 4: what the heartbeat costs while one process holds 1, 100, 1000 locks. The library sends
 * its statements through the host's Sequelize `logging` hook (with `benchmark: true` it passes the
 * elapsed ms), so the count of lock statements per renewal period comes from the same hook an app
 * would use. CPU per period is process.cpuUsage() of this (otherwise idle) process.
 */
const { setTimeout: sleep } = require('node:timers/promises');
const { spread, fmt, fmtSpread } = require('../lib/stats');

/**
 * @param {import('../types').BenchEnv} env
 * @returns {Promise<import('../types').Report>}
 */
async function run(env) {
  const { config, log, dialect } = env;
  const leaseSeconds = config.leaseSeconds;
  const periodMs = (leaseSeconds * 1000) / 3;
  /** @type {{ sql: string, ms: number }[]} */
  const statements = [];
  const sequelize = env.sequelizeFor(await env.newDatabase(), {
    benchmark: true,
    logging: (/** @type {unknown} */ sql, /** @type {unknown} */ ms) => {
      if (typeof sql === 'string' && sql.startsWith('Executing (db-mutex)')) statements.push({ sql, ms: typeof ms === 'number' ? ms : NaN });
    },
  });
  const mutex = await env.mutexFor(sequelize, { leaseSeconds, heartbeat: true });
  /** @type {string[][]} */
  const rows = [];
  /** @type {{ size: number, counts: import('../types').Spread, cpu: import('../types').Spread, stmtMs: import('../types').Spread }[]} */
  const perSize = [];
  try {
    for (const size of config.heartbeatSizes) {
      log(`heartbeat: holding ${size} locks, lease ${leaseSeconds} s (renewal every ${fmt(periodMs)} ms), ${config.heartbeatPeriods} periods`);
      const locks = [];
      for (let i = 0; i < size; i++) locks.push(await mutex.acquire(`bench:hb:${size}:${i}`));
      await sleep(periodMs * 1.5); // let the tick settle on its period
      const counts = [];
      const cpu = [];
      const stmtMs = [];
      const kinds = new Set();
      for (let p = 0; p < config.heartbeatPeriods; p++) {
        const from = statements.length;
        const c0 = process.cpuUsage();
        await sleep(periodMs);
        const c = process.cpuUsage(c0);
        const window = statements.slice(from);
        counts.push(window.length);
        cpu.push((c.user + c.system) / 1000);
        for (const s of window) {
          stmtMs.push(s.ms);
          kinds.add(s.sql.replace('Executing (db-mutex): ', '').split(' ')[0]);
        }
      }
      const lost = locks.filter((l) => !l.isHeld()).length;
      for (const l of locks) await l.release();
      perSize.push({ size, counts: spread(counts), cpu: spread(cpu), stmtMs: spread(stmtMs) });
      rows.push([
        size.toLocaleString('en-US'),
        fmtSpread(spread(counts), 0),
        stmtMs.length ? fmtSpread(spread(stmtMs), 0) : '–',
        fmtSpread(spread(cpu), 2),
        String(lost),
      ]);
      log(`  ${size}: ${fmt(spread(counts).median)} statements/period, ${fmt(spread(cpu).median)} ms CPU/period (${[...kinds].join(', ') || 'none'})`);
    }
  } finally {
    await mutex.close();
  }
  const first = perSize[0];
  const last = perSize[perSize.length - 1];
  if (!first || !last) throw new RangeError('BENCH_HEARTBEAT_SIZES is empty');
  return {
    title: 'Heartbeat cost',
    intro:
      `One DbMutex holds N heartbeat locks (leaseSeconds ${leaseSeconds}, so one renewal round every ${fmt(periodMs)} ms). ` +
      `Per period (${config.heartbeatPeriods} consecutive windows of one period each): lock statements seen by Sequelize's logging hook, ` +
      'their duration as reported by `benchmark: true` (whole ms), and CPU of this process.',
    tables: [{ headers: ['locks held', 'statements / period min / median / max', 'statement ms', 'CPU ms / period', 'locks lost'], rows }],
    targets: [
      {
        name: `${dialect.label}: renewal statements per period, ${last.size} vs ${first.size} locks`,
        value: last.counts.median,
        target: `constant (= ${fmt(first.counts.median, 0)})`,
        pass: last.counts.median === first.counts.median,
        fmt: (/** @type {number} */ v) => fmt(v, 0),
      },
    ],
  };
}

module.exports = { run };
