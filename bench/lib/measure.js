// @ts-check
'use strict';
/**
 * The timing loop. Within a run, rows take turns a small block of cycles at a time (A B C A B C …,
 * starting from a different row each run), so drift and bursts on a shared machine (checkpoints,
 * autovacuum, other processes) fall on every row alike instead of on whichever ran last. Each run's
 * figure is the median of its cycles' durations; a row's figure is min / median / max over runs.
 */
const { median, spread } = require('./stats');

class Skip extends Error {}

/** A forced garbage collection when node runs with --expose-gc (bench/run.js makes sure it does). */
function gc() {
  if (typeof globalThis.gc === 'function') globalThis.gc();
}

/**
 * @typedef {object} MeasureOptions
 * @property {number} cycles per run and row
 * @property {number} runs
 * @property {number} warmup cycles per row before the first run
 * @property {number} [block] cycles per turn (default 20)
 * @property {number} [maxRunMs] per run and row
 * @property {string} lockIdPrefix
 * @property {import('../types').Log} log
 */

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/**
 * @param {import('../types').Variant[]} variants
 * @param {MeasureOptions} options
 * @returns {Promise<Map<string, import('../types').MeasuredRow>>} by variant key
 */
async function measureInterleaved(variants, options) {
  const { cycles, runs, warmup, block = 20, maxRunMs = Infinity, lockIdPrefix, log } = options;
  /** @type {Map<string, import('../types').MeasuredRow>} */
  const results = new Map();
  /** @type {import('../types').Variant[]} */
  const active = [];
  const nothing = spread([]);
  for (const v of variants) {
    /** @type {import('../types').MeasuredRow} */
    const entry = { variant: v, runs: [], skipped: null, wallUs: nothing, meanUs: nothing, cpuUs: nothing, cycles: 0 };
    results.set(v.key, entry);
    try {
      await v.setup?.();
      active.push(v);
    } catch (error) {
      entry.skipped = error instanceof Skip ? error.message : `setup failed: ${messageOf(error)}`;
      log(`  skip ${v.key}: ${entry.skipped}`);
    }
  }
  const entryOf = (/** @type {import('../types').Variant} */ v) => /** @type {import('../types').MeasuredRow} */ (results.get(v.key));
  const lockIdOf = (/** @type {import('../types').Variant} */ v) => `${lockIdPrefix}:${v.key}`;
  for (const v of [...active]) {
    try {
      for (let i = 0; i < warmup; i++) await v.cycle(lockIdOf(v), i);
      v.endRun?.();
    } catch (error) {
      entryOf(v).skipped = `failed in warm-up: ${messageOf(error)}`;
      log(`  skip ${v.key}: ${error instanceof Error ? error.stack : String(error)}`);
      active.splice(active.indexOf(v), 1);
    }
  }
  for (let r = 0; r < runs; r++) {
    gc();
    const order = active.map((_, i) => /** @type {import('../types').Variant} */ (active[(i + r) % active.length]));
    /** @typedef {{ times: number[], wallMs: number, cpuUs: number }} RunState */
    /** @type {Map<import('../types').Variant, RunState>} */
    const state = new Map(order.map((v) => [v, { times: [], wallMs: 0, cpuUs: 0 }]));
    const stateOf = (/** @type {import('../types').Variant} */ v) => /** @type {RunState} */ (state.get(v));
    // Rows take turns `block` cycles at a time, so each run of each row is spread over the same
    // stretch of time as every other row's: load from other processes falls on all rows alike.
    for (let open = order.length; open > 0; ) {
      open = 0;
      for (const v of order) {
        const st = stateOf(v);
        if (st.times.length >= cycles || st.wallMs > maxRunMs) continue;
        const lockId = lockIdOf(v);
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        let last = t0;
        for (let i = 0; i < block && st.times.length < cycles; i++) {
          await v.cycle(lockId, st.times.length);
          const now = performance.now();
          st.times.push((now - last) * 1000);
          last = now;
        }
        const cpu = process.cpuUsage(cpu0);
        st.wallMs += last - t0;
        st.cpuUs += cpu.user + cpu.system;
        if (st.times.length < cycles && st.wallMs <= maxRunMs) open++;
      }
    }
    for (const v of order) {
      const st = stateOf(v);
      const n = st.times.length;
      // A run's figure is its median cycle: other processes on a shared machine disturb a few cycles
      // a lot, which moves a mean far more than a median. The mean is kept alongside.
      entryOf(v).runs.push({
        wallUs: median(st.times),
        meanUs: (st.wallMs * 1000) / n,
        cpuUs: st.cpuUs / n,
        cycles: n,
        timesUs: st.times,
        // endRun: per-run figures a row collects itself (e.g. acquire latency alone).
        ...v.endRun?.(),
      });
    }
    log(`  run ${r + 1}/${runs} done`);
  }
  for (const v of variants) await v.teardown?.();
  for (const entry of results.values()) {
    entry.wallUs = spread(entry.runs.map((x) => x.wallUs));
    entry.meanUs = spread(entry.runs.map((x) => x.meanUs));
    entry.cpuUs = spread(entry.runs.map((x) => x.cpuUs));
    entry.cycles = entry.runs.reduce((a, x) => a + x.cycles, 0);
  }
  return results;
}

module.exports = { measureInterleaved, Skip, gc };
