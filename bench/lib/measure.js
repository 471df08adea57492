'use strict';
/**
 * The timing loop. Within a run, rows take turns a small block of cycles at a time (A B C A B C …,
 * starting from a different row each run), so drift and bursts on a shared machine (checkpoints,
 * autovacuum, other processes) fall on every row alike instead of on whichever ran last. Each run's
 * figure is the median of its cycles' durations; a row's figure is min / median / max over runs.
 */
const { median, spread } = require('./stats');

class Skip extends Error {}

function gc() {
  if (typeof globalThis.gc === 'function') globalThis.gc();
}

/**
 * @param variants {key, label, setup?, cycle(lockId, i), endRun?() -> object, teardown?}[]
 * @param options {cycles (per run and row), runs, warmup, block? (cycles per turn, default 20),
 *   maxRunMs? (per run and row), lockIdPrefix, log}
 * @returns Map key -> {variant, skipped?, wallUs: spread, cpuUs: spread, runs: {wallUs, cpuUs, cycles}[], extra}
 */
async function measureInterleaved(variants, options) {
  const { cycles, runs, warmup, block = 20, maxRunMs = Infinity, lockIdPrefix, log } = options;
  const results = new Map();
  const active = [];
  for (const v of variants) {
    const entry = { variant: v, runs: [], skipped: null };
    results.set(v.key, entry);
    try {
      await v.setup?.();
      active.push(v);
    } catch (error) {
      entry.skipped = error instanceof Skip ? error.message : `setup failed: ${error.message}`;
      log(`  skip ${v.key}: ${entry.skipped}`);
    }
  }
  const lockIdOf = (v) => `${lockIdPrefix}:${v.key}`;
  for (const v of [...active]) {
    try {
      for (let i = 0; i < warmup; i++) await v.cycle(lockIdOf(v), i);
      v.endRun?.();
    } catch (error) {
      results.get(v.key).skipped = `failed in warm-up: ${error.message}`;
      log(`  skip ${v.key}: ${error.stack}`);
      active.splice(active.indexOf(v), 1);
    }
  }
  for (let r = 0; r < runs; r++) {
    gc();
    const order = active.map((_, i) => active[(i + r) % active.length]);
    const state = new Map(order.map((v) => [v, { times: [], wallMs: 0, cpuUs: 0 }]));
    // Rows take turns `block` cycles at a time, so each run of each row is spread over the same
    // stretch of time as every other row's: load from other processes falls on all rows alike.
    for (let open = order.length; open > 0; ) {
      open = 0;
      for (const v of order) {
        const st = state.get(v);
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
      const st = state.get(v);
      const n = st.times.length;
      // A run's figure is its median cycle: other processes on a shared machine disturb a few cycles
      // a lot, which moves a mean far more than a median. The mean is kept alongside.
      results.get(v.key).runs.push({
        wallUs: median(st.times),
        meanUs: (st.wallMs * 1000) / n,
        cpuUs: st.cpuUs / n,
        cycles: n,
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
