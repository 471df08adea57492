// @ts-check
'use strict';
/**
 * Section 3: does the lock slow down as the table fills? The table gets 10, 10 000, (100 000,)
 * 1 000 000 other live rows (bulk insert); at each size: acquire latency and full cycle of ours, the
 * raw floor and the original's algorithm (whose "delete every expired row" is a scan without an
 * index). At the dashboard size: mutex.list()/counts() time and memory, and the admin router's pages
 * when this build has one.
 */
const http = require('node:http');
const { measureInterleaved, gc } = require('../lib/measure');
const { spread, fmt, fmtSpread, fmtRatio, fmtBytes } = require('../lib/stats');

/** @typedef {import('../types').DbMutex} DbMutex */
/** @typedef {import('../types').Spread} Spread */

/**
 * @template T
 * @param {() => Promise<T>} fn
 * @param {number} times at least 1
 * @returns {Promise<{ ms: Spread, result: T }>}
 */
async function timeIt(fn, times) {
  /** @type {number[]} */
  const out = [];
  let result;
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    result = await fn();
    out.push(performance.now() - t0);
  }
  return { ms: spread(out), result: /** @type {T} */ (result) };
}

/** @param {DbMutex} mutex */
async function listMemory(mutex) {
  gc();
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  /** @type {unknown[] | null} */
  let rows = await mutex.list();
  const ms = performance.now() - t0;
  const peak = process.memoryUsage().heapUsed - before.heapUsed;
  gc();
  const retained = process.memoryUsage().heapUsed - before.heapUsed;
  const count = rows.length;
  rows = null;
  return { ms, count, peak, retained };
}

/**
 * @param {number} port
 * @param {string} pathname
 * @returns {Promise<{ status: number | undefined, bytes: number }>}
 */
function request(port, pathname) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathname, headers: { accept: pathname.includes('/api/') ? 'application/json' : 'text/html' } }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => {
        bytes += chunk.length;
      });
      res.on('end', () => resolve({ status: res.statusCode, bytes }));
    });
    req.on('error', reject);
  });
}

/**
 * @typedef {{ skipped: string, pages?: undefined } | { pages: Record<string, { ms: Spread, status: number | undefined, bytes: number }>, skipped?: undefined }} Dashboard
 */

/**
 * Times the admin router's HTML page and JSON API (a build without the admin router is reported as skipped).
 * @param {import('../types').Library} lib
 * @param {DbMutex} mutex
 * @param {number} times
 * @returns {Promise<Dashboard>}
 */
async function dashboard(lib, mutex, times) {
  /** @type {unknown} */
  const factory = lib.createDbMutexAdminRouter;
  if (typeof factory !== 'function') return { skipped: 'this build exports no createDbMutexAdminRouter' };
  /** @type {typeof import('express')} */
  let express;
  try {
    express = require('express');
  } catch {
    return { skipped: 'express not installed' };
  }
  const app = express();
  try {
    app.use('/admin', lib.createDbMutexAdminRouter({ mutex, authorize: () => true, operator: () => 'bench' }));
  } catch (error) {
    return { skipped: `createDbMutexAdminRouter threw: ${error instanceof Error ? error.message : String(error)}` };
  }
  /** @type {import('node:http').Server} */
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  try {
    const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
    /** @type {Record<string, { ms: Spread, status: number | undefined, bytes: number }>} */
    const pages = {};
    for (const p of ['/admin/', '/admin/api/locks']) {
      await request(port, p); // warm-up: views compiled, statements prepared
      const r = await timeIt(() => request(port, p), times);
      pages[p] = { ms: r.ms, status: r.result.status, bytes: r.result.bytes };
    }
    return { pages };
  } finally {
    await new Promise((resolve) => server.close(() => resolve(undefined)));
  }
}

/**
 * @typedef {object} SizeEntry
 * @property {number} size
 * @property {DbMutex} mutex
 * @property {string} url
 * @property {{ ours: string, floor: string, original: string }} keys
 */
/**
 * @typedef {object} SizeFigures
 * @property {number} size
 * @property {Spread} acquire mutex.acquire() alone, µs
 * @property {Record<'ours' | 'floor' | 'original', Spread>} wall cycle µs by row kind
 * @property {Record<'ours' | 'floor' | 'original', number>} cycles cycles measured by row kind
 */

/**
 * @param {import('../types').BenchEnv} env
 * @returns {Promise<import('../types').Report>}
 */
async function run(env) {
  const { config, log, dialect, lib } = env;
  const { fillOtherRows, dropTables, scaleBaselines } = dialect;
  if (!fillOtherRows || !dropTables || !scaleBaselines) {
    throw new Error(`the scale section needs fillOtherRows, dropTables and scaleBaselines in bench/dialects/${dialect.name}.js`);
  }
  const sizes = config.scaleSizes;
  if (sizes.length === 0) throw new RangeError('BENCH_SCALE_SIZES is empty');
  // One table per size, all filled first, then every row of every size measured interleaved, so
  // drift of a shared machine cannot masquerade as an effect of table size.
  /** @type {string[]} */
  const tables = [];
  /** @type {import('../types').Variant[]} */
  const variants = [];
  /** @type {SizeEntry[]} */
  const perSize = [];
  /** @type {SizeFigures[]} */
  const figures = [];
  /** @type {{ listing: Awaited<ReturnType<typeof listMemory>>, keyset: { counts: Spread, firstPage: Spread, deepPage: Spread | null }, board: Dashboard } | null} */
  let atDashboardSize = null;
  try {
    for (const [i, size] of sizes.entries()) {
      const table = `bench_scale_${i}`;
      const originalTable = `bench_scale_original_${i}`;
      tables.push(originalTable, table);
      const made = await env.extraMutex(table);
      if (!made) throw new Error(`a DbMutex for ${table} could not be made`);
      const { mutex, url } = made;
      const t0 = performance.now();
      await fillOtherRows(url, { table, originalTable, count: size });
      log(`scale: ${size.toLocaleString('en-US')} other rows in ${table} (${fmt((performance.now() - t0) / 1000)} s)`);
      let acquireSum = 0;
      let acquireN = 0;
      /** @type {SizeEntry} */
      const entry = { size, mutex, url, keys: { ours: `ours-${i}`, floor: `floor-${i}`, original: `original-${i}` } };
      perSize.push(entry);
      variants.push({
        key: entry.keys.ours,
        label: `ours at ${size}`,
        cycle: async (lockId) => {
          const t = performance.now();
          const lock = await mutex.acquire(lockId, { heartbeat: true });
          acquireSum += (performance.now() - t) * 1000;
          acquireN++;
          await lock.release();
        },
        endRun: () => {
          const out = { acquireUs: acquireSum / acquireN };
          acquireSum = 0;
          acquireN = 0;
          return out;
        },
      });
      for (const b of scaleBaselines({ url, track: env.track }, { table, originalTable })) {
        variants.push({ ...b, key: `${b.key}-${i}`, label: `${b.label} at ${size}` });
      }
    }
    log(`scale: ${variants.length} rows × ${config.scaleRuns} runs × up to ${config.scaleCycles} cycles`);
    const results = await measureInterleaved(variants, {
      cycles: config.scaleCycles,
      runs: config.scaleRuns,
      warmup: Math.min(30, config.scaleCycles),
      maxRunMs: config.scaleMaxRunMs,
      block: 10,
      lockIdPrefix: 'bench:scale',
      log,
    });
    const measured = (/** @type {string} */ key) => {
      const r = results.get(key);
      if (!r || r.skipped) throw new Error(`scale row ${key} was not measured: ${r?.skipped}`);
      return r;
    };
    for (const e of perSize) {
      const { ours, floor, original } = e.keys;
      figures.push({
        size: e.size,
        acquire: spread(measured(ours).runs.map((r) => Number(r.acquireUs))),
        wall: { ours: measured(ours).wallUs, floor: measured(floor).wallUs, original: measured(original).wallUs },
        cycles: { ours: measured(ours).cycles, floor: measured(floor).cycles, original: measured(original).cycles },
      });
      if (e.size === config.dashboardLocks) {
        const mutex = e.mutex;
        const listing = await listMemory(mutex);
        const counts = await timeIt(() => mutex.counts(), 5);
        const firstPage = await timeIt(() => mutex.list({ limit: 50 }), 5);
        const mid = (await mutex.list({ limit: Math.floor(e.size / 2) })).pop();
        const deepPage = mid ? await timeIt(() => mutex.list({ limit: 50, after: { acquiredAt: mid.acquiredAt, lockId: mid.lockId } }), 5) : null;
        const keyset = { counts: counts.ms, firstPage: firstPage.ms, deepPage: deepPage && deepPage.ms };
        atDashboardSize = { listing, keyset, board: await dashboard(lib, mutex, 5) };
      }
    }
  } finally {
    // The big tables go now, not at the end of the run, so later sections do not share the disk with them.
    for (const e of perSize) {
      await e.mutex.close().catch(() => undefined);
      await dropTables(e.url, tables);
    }
  }

  const base = figures[0];
  const last = figures[figures.length - 1];
  if (!base || !last) throw new Error('the scale section measured no table size');
  const rows = figures.map((e) => [
    e.size.toLocaleString('en-US'),
    fmtSpread(e.acquire, 0),
    fmtRatio(e.acquire.median / base.acquire.median),
    fmtSpread(e.wall.ours, 0),
    fmtSpread(e.wall.floor, 0),
    fmtRatio(e.wall.ours.median / e.wall.floor.median),
    `${fmtSpread(e.wall.original, 0)} (${e.cycles.original} cycles)`,
  ]);
  const tablesOut = [
    {
      headers: ['other rows', 'ours acquire µs min / median / max', `× at ${base.size.toLocaleString('en-US')}`, 'ours cycle µs', 'floor cycle µs', 'ours × floor', 'original cycle µs'],
      rows,
    },
  ];
  if (atDashboardSize) {
    const { listing, keyset, board } = atDashboardSize;
    const extra = [
      ['mutex.list() of all rows: time', `${fmt(listing.ms)} ms (${listing.count.toLocaleString('en-US')} rows)`],
      ['mutex.list() of all rows: heap retained by the result', `${fmtBytes(listing.retained)} (${fmt(listing.retained / listing.count)} B/row)`],
      ['mutex.list() of all rows: heap growth before GC (peak-ish)', fmtBytes(listing.peak)],
      ['mutex.counts(): ms min / median / max', fmtSpread(keyset.counts)],
      ['mutex.list({limit: 50}) first page: ms', fmtSpread(keyset.firstPage)],
      ['mutex.list({limit: 50, after}) page in the middle (keyset): ms', keyset.deepPage ? fmtSpread(keyset.deepPage) : '–'],
    ];
    if (board.pages === undefined) extra.push(['dashboard GET / and GET /api/locks', `skipped: ${board.skipped}`]);
    else for (const [p, r] of Object.entries(board.pages)) extra.push([`dashboard GET ${p}: ms (HTTP ${r.status}, ${fmtBytes(r.bytes)})`, fmtSpread(r.ms)]);
    tablesOut.push({ headers: [`with ${config.dashboardLocks.toLocaleString('en-US')} active locks`, 'figure'], rows: extra });
  }
  /** @type {import('../types').Target<number>[]} */
  const targets = [
    {
      name: `${dialect.label}: acquire latency at ${last.size.toLocaleString('en-US')} vs ${base.size.toLocaleString('en-US')} rows`,
      value: last.acquire.median / base.acquire.median,
      target: '≤ 1.20×',
      pass: last.acquire.median / base.acquire.median <= 1.2,
      fmt: fmtRatio,
    },
  ];
  if (atDashboardSize?.board.pages) {
    for (const [p, r] of Object.entries(atDashboardSize.board.pages)) {
      targets.push({ name: `${dialect.label}: dashboard GET ${p} with ${config.dashboardLocks.toLocaleString('en-US')} locks`, value: r.ms.median, target: '< 300 ms', pass: r.ms.median < 300, fmt: (v) => `${fmt(v)} ms` });
    }
  }
  return {
    title: 'Scale: other rows in the lock table',
    intro:
      'One lock table per size (made by sync()), filled with that many other live rows (distinct lock ids, unexpired; bulk insert, ' +
      'then VACUUM ANALYZE); the original algorithm gets as many rows in its own table. All rows of all sizes run interleaved ' +
      '(turns of 10 cycles): ' +
      `${config.scaleRuns} runs of up to ${config.scaleCycles} cycles each (a run stops after ${config.scaleMaxRunMs} ms). ` +
      '"ours acquire" is mutex.acquire() alone (mean per run; min / median / max over runs); cycle = acquire + release.',
    tables: tablesOut,
    targets,
  };
}

module.exports = { run };
