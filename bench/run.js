// @ts-check
'use strict';
/**
 * `npm run bench`: the library's cost (uncontended cycle, refused attempt, contended hand-off, table
 * size, heartbeat, memory), as ratios against baselines run in the same process on the same database
 * server. Prints each table and writes bench/results.md.
 *
 * Environment (defaults keep a run to a few minutes on 2 cores):
 *   DATABASE_URL            PostgreSQL server (default postgres://postgres@127.0.0.1:5432/test; if that is
 *                           unset and nothing answers, an embedded PostgreSQL is started). A scratch database
 *                           is created on it and dropped at the end.
 *   BENCH_DIALECTS          comma list, default "postgres" (one file per dialect in bench/dialects/)
 *   BENCH_SECTIONS          comma list of uncontended,contended,scale,heartbeat,memory,soak,failover,observability,semaphore (default all)
 *   BENCH_CYCLES=200 BENCH_RUNS=9 BENCH_WARMUP=100                          uncontended
 *   BENCH_WORKERS=8 BENCH_CONTENDED_SECONDS=3 BENCH_CONTENDED_RUNS=3 BENCH_CONTENDED_ROWS=notify,minimal-notify-durable (default all)
 *   BENCH_SECTION_MS=1 BENCH_THINK_MS=2                                     contended
 *   BENCH_SCALE_SIZES=10,10000,100000,1000000 BENCH_SCALE_CYCLES=300 BENCH_SCALE_RUNS=3
 *   BENCH_SCALE_MAX_RUN_MS=2000 BENCH_DASHBOARD_LOCKS=100000               scale
 *   BENCH_HEARTBEAT_SIZES=1,100,1000 BENCH_LEASE_SECONDS=1.5 BENCH_HEARTBEAT_PERIODS=6
 *   BENCH_MEMORY_CYCLES=100000 BENCH_MEMORY_CONCURRENCY=4 BENCH_SOAK_ROUNDS=1000
 *   BENCH_REDIS_URL=redis://127.0.0.1:6379   BENCH_RESULTS=bench/results.md
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { readConfig, machine, loadLibrary, openDialect } = require('./lib/env');
const { markdownTable } = require('./lib/stats');

// Memory figures need forced GCs: re-run this file with --expose-gc when started without it.
if (typeof globalThis.gc !== 'function') {
  const r = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, path.join(__dirname, 'run.js'), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

const IDLE_PROBE_MS = 2000;
const BUSY_WARNING_PERCENT = 20;

/**
 * Share of all cores' time spent busy over `ms` (the bench itself is idle meanwhile), in percent.
 * @param {number} ms
 */
async function busyPercent(ms) {
  const total = () =>
    os.cpus().reduce(
      (a, c) => {
        const t = c.times;
        a.all += t.user + t.nice + t.sys + t.idle + t.irq;
        a.idle += t.idle;
        return a;
      },
      { all: 0, idle: 0 },
    );
  const before = total();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = total();
  const all = after.all - before.all;
  return all > 0 ? Math.round((100 * (all - (after.idle - before.idle))) / all) : 0;
}
/** @type {import('./types').Log} */
const log = (msg) => {
  process.stdout.write(`${msg}\n`);
};

/** @param {import('./types').Report} report */
function renderSection(report) {
  const parts = [`### ${report.title}`, '', report.intro, ''];
  for (const t of report.tables) parts.push(markdownTable(t.headers, t.rows), '');
  return parts.join('\n');
}

/** @type {Record<string, (env: import('./types').BenchEnv) => Promise<import('./types').Report>>} */
const SECTION_RUNNERS = {
  uncontended: (env) => require('./sections/uncontended').run(env),
  contended: (env) => require('./sections/contended').run(env),
  scale: (env) => require('./sections/scale').run(env),
  heartbeat: (env) => require('./sections/heartbeat').run(env),
  memory: (env) => require('./sections/memory').memoryRun(env),
  soak: (env) => require('./sections/memory').soakRun(env),
  failover: (env) => require('./sections/failover').run(env),
  observability: (env) => require('./sections/observability').run(env),
  semaphore: (env) => require('./sections/semaphore').run(env),
};

/**
 * @typedef {object} Outcome
 * @property {import('./types').BenchDialect} dialect
 * @property {import('./types').ServerDescription} description
 * @property {import('./types').Report[]} reports
 * @property {boolean} embedded
 */

/**
 * @param {import('./types').BenchConfig} config
 * @param {import('./types').Library} lib
 * @param {string} dialectName
 * @returns {Promise<Outcome>}
 */
async function runDialect(config, lib, dialectName) {
  const { env, close } = await openDialect(config, lib, dialectName, log);
  const interrupted = () => {
    log('interrupted: dropping the scratch database');
    close().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  /** @type {import('./types').Report[]} */
  const reports = [];
  try {
    for (const name of config.sections) {
      const runner = SECTION_RUNNERS[name];
      if (!runner) throw new RangeError(`no section ${name}`);
      const t0 = performance.now();
      const report = await runner(env);
      report.seconds = (performance.now() - t0) / 1000;
      reports.push(report);
      log('');
      log(renderSection(report));
    }
    return { dialect: env.dialect, description: env.description, reports, embedded: env.embedded };
  } finally {
    await close();
    process.removeListener('SIGINT', interrupted);
  }
}

/**
 * @param {import('./types').BenchConfig} config
 * @param {ReturnType<typeof machine> & { loadStart: string, busyBefore: number }} m
 * @param {Date} started
 * @param {Outcome[]} outcomes
 * @param {number} totalSeconds
 */
function renderResults(config, m, started, outcomes, totalSeconds) {
  const lines = [
    '# Benchmark results',
    '',
    '<!-- Generated by `npm run bench` (bench/run.js); do not edit by hand. -->',
    '',
    `- Date: ${started.toISOString()}`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB.toFixed(1)} GiB RAM, ${m.os}`,
    `- Node ${m.node}; sequelize ${m.packages.sequelize}, pg ${m.packages.pg}, redlock ${m.packages.redlock}, ioredis ${m.packages.ioredis}`,
  ];
  for (const o of outcomes) {
    const s = o.description.settings;
    lines.push(
      `- ${o.description.product}${o.embedded ? ' (embedded, started by the bench)' : ''} on the same machine; ` +
        Object.entries(s).map(([k, v]) => `${k}=${v}`).join(', ') +
        `; ${o.description.otherConnections} other client connection(s) on the server at start`,
    );
  }
  lines.push(
    `- Load average (1/5/15 min) at start: ${m.loadStart}, at end: ${loadavg()} — the database server, the bench and anything else running share the cores`,
    `- Settings: ${config.runs} runs × ${config.cycles} cycles (warm-up ${config.warmup}); contended ${config.workers} workers × ` +
      `${config.contendedRuns} × ${config.contendedSeconds} s; scale sizes ${config.scaleSizes.join(', ')}; memory ${config.memoryCycles} cycles; ` +
      `soak ${config.soakRounds} rounds. Total ${Math.round(totalSeconds)} s (` +
      outcomes.flatMap((o) => o.reports.map((r) => `${(r.title.split(':')[0] ?? '').toLowerCase()} ${Math.round(r.seconds ?? NaN)} s`)).join(', ') +
      ').',
    `- Other work before the run: ${m.busyBefore}% of all CPU time was busy in the ${IDLE_PROBE_MS / 1000} s before it started ` +
      '(during the run, the load average counts the bench\'s own database server and worker processes)',
    ...(m.busyBefore > BUSY_WARNING_PERCENT
      ? ['', `**Other processes kept the machine ${m.busyBefore}% busy before this run: absolute times are inflated and noisy; compare rows by their ratios, and prefer a run on an otherwise idle machine.**`]
      : []),
    '',
    'Every timing is min / median / max over repeated runs; ratios use medians.',
    '',
    '## Targets',
    '',
  );
  const targets = outcomes.flatMap((o) => o.reports.flatMap((r) => r.targets || []));
  lines.push(
    markdownTable(
      ['target', 'measured', 'goal', ''],
      targets.map((t) => [t.name, t.fmt ? t.fmt(t.value) : String(t.value), t.target, t.pass ? 'met' : 'MISSED']),
    ),
    '',
  );
  for (const o of outcomes) {
    lines.push(`## ${o.dialect.label}`, '');
    for (const r of o.reports) lines.push(renderSection(r));
  }
  return lines.join('\n');
}

async function main() {
  const config = readConfig();
  const started = new Date();
  const t0 = performance.now();
  const lib = loadLibrary();
  const m = { ...machine(), loadStart: loadavg(), busyBefore: await busyPercent(IDLE_PROBE_MS) };
  log(`bench: ${m.cpu}, ${m.cores} cores, ${m.ramGiB.toFixed(1)} GiB, Node ${m.node}`);
  /** @type {Outcome[]} */
  const outcomes = [];
  for (const d of config.dialects) outcomes.push(await runDialect(config, lib, d));
  const md = renderResults(config, m, started, outcomes, (performance.now() - t0) / 1000);
  fs.writeFileSync(config.results, md);
  log('');
  log(md.slice(md.indexOf('## Targets'), outcomes[0] ? md.indexOf(`## ${outcomes[0].dialect.label}`) : undefined));
  log(`wrote ${path.relative(process.cwd(), config.results)}`);
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
