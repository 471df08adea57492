// @ts-check
'use strict';
/**
 * CPU profile of one uncontended row: `npm run build && node bench/profile.js [row] [cycles]`
 * (rows: the keys of bench/sections/uncontended.js and the dialect's rows, e.g. ours-hb, floor,
 * lib-sql-raw). Uses the V8 sampling profiler that `node --cpu-prof` uses, started after setup and
 * warm-up so the profile holds only the measured loop. Writes <row>.cpuprofile (open it in Chrome
 * DevTools) to BENCH_PROFILE_DIR, default <os tmpdir>/sequelize-db-mutex-profiles, and prints self
 * time per cycle by package and by function.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Session } = require('node:inspector');
const { readConfig, loadLibrary, openDialect } = require('./lib/env');
const { markdownTable, fmt } = require('./lib/stats');
const { variantsFor } = require('./sections/uncontended');

/** @type {import('./types').Log} */
const log = (msg) => {
  process.stdout.write(`${msg}\n`);
};

/**
 * The profiler commands this file sends, promisified.
 * @param {Session} session
 * @param {'Profiler.enable' | 'Profiler.start' | 'Profiler.setSamplingInterval'} method
 * @param {object} [params]
 * @returns {Promise<void>}
 */
function post(session, method, params) {
  return new Promise((resolve, reject) => session.post(method, params, (error) => (error ? reject(error) : resolve())));
}

/**
 * @param {Session} session
 * @returns {Promise<import('node:inspector').Profiler.Profile>}
 */
function stopProfiler(session) {
  return new Promise((resolve, reject) => session.post('Profiler.stop', (error, result) => (error ? reject(error) : resolve(result.profile))));
}

/**
 * @param {string} url
 * @param {string} functionName
 */
function bucketOf(url, functionName) {
  if (!url) return functionName.startsWith('(') ? functionName : '(native / builtins)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const [scope = '', name = ''] = url.slice(nm + '/node_modules/'.length).split('/');
    return scope.startsWith('@') ? `${scope}/${name}` : scope;
  }
  if (url.includes('/dist/')) return 'sequelize-db-mutex (dist/)';
  if (url.startsWith('node:')) return 'node internals';
  if (url.includes('/bench/')) return 'bench harness';
  return url;
}

/**
 * Self time per bucket and per function, in µs per cycle.
 * @param {import('node:inspector').Profiler.Profile} profile
 * @param {number} cycles
 */
function summarise(profile, cycles) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<number, number>} */
  const selfUs = new Map();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const id = /** @type {number} */ (samples[i]);
    selfUs.set(id, (selfUs.get(id) ?? 0) + (deltas[i] ?? 0));
  }
  /** @type {Map<string, number>} */
  const buckets = new Map();
  /** @type {Map<string, number>} */
  const functions = new Map();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const bucket = bucketOf(url, functionName || '(anonymous)');
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + us);
    const short = url ? `${url.replace(/^.*?\/(node_modules|dist|bench)\//, '$1/')}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'} ${short}`.trim();
    functions.set(key, (functions.get(key) ?? 0) + us);
  }
  const top = (/** @type {Map<string, number>} */ m, /** @type {number} */ n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
  const busy = [...buckets].filter(([k]) => k !== '(idle)').reduce((a, [, us]) => a + us, 0);
  return {
    buckets: [...top(buckets, 20).map(([k, us]) => [k, fmt(us / cycles)]), ['all but (idle)', fmt(busy / cycles)]],
    functions: top(functions, 30).map(([k, us]) => [k, fmt(us / cycles)]),
  };
}

async function main() {
  const key = process.argv[2] || 'ours-hb';
  const cycles = Number(process.argv[3] || 3000);
  const config = { ...readConfig(), sections: [] };
  const lib = loadLibrary();
  const { env, close } = await openDialect(config, lib, config.dialects[0] ?? 'postgres', log);
  try {
    const variant = variantsFor(env).find((v) => v.key === key);
    if (!variant) throw new Error(`unknown row ${key}; known: ${variantsFor(env).map((v) => v.key).join(', ')}`);
    await variant.setup?.();
    const lockId = `bench:profile:${key}`;
    for (let i = 0; i < 300; i++) await variant.cycle(lockId, i);
    const session = new Session();
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.setSamplingInterval', { interval: 50 });
    await post(session, 'Profiler.start');
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < cycles; i++) await variant.cycle(lockId, i);
    const wallUs = ((performance.now() - t0) * 1000) / cycles;
    const cpu = process.cpuUsage(cpu0);
    const profile = await stopProfiler(session);
    session.disconnect();
    await variant.teardown?.();
    const dir = process.env.BENCH_PROFILE_DIR || path.join(os.tmpdir(), 'sequelize-db-mutex-profiles');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${key}.cpuprofile`);
    fs.writeFileSync(file, JSON.stringify(profile));
    const s = summarise(profile, cycles);
    log(`\n${variant.label}: ${fmt(wallUs)} µs/cycle wall, CPU ${fmt(cpu.user / cycles)} µs user + ${fmt(cpu.system / cycles)} µs system per cycle (profiler on), ${cycles} cycles`);
    log(`profile: ${file}\n`);
    log(markdownTable(['self time by package', 'µs/cycle'], s.buckets));
    log('');
    log(markdownTable(['self time by function', 'µs/cycle'], s.functions));
  } finally {
    await close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
