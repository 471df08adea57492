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

async function timeIt(fn, times) {
  const out = [];
  let result;
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    result = await fn();
    out.push(performance.now() - t0);
  }
  return { ms: spread(out), result };
}

async function listMemory(mutex) {
  gc();
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  let rows = await mutex.list();
  const ms = performance.now() - t0;
  const peak = process.memoryUsage().heapUsed - before.heapUsed;
  gc();
  const retained = process.memoryUsage().heapUsed - before.heapUsed;
  const count = rows.length;
  rows = null;
  return { ms, count, peak, retained };
}

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

/** Times the admin router's HTML page and JSON API, if this build exports one (issue 4). */
async function dashboard(lib, mutex, times) {
  const factory = lib.createDbMutexAdminRouter;
  if (typeof factory !== 'function') return { skipped: 'this build exports no createDbMutexAdminRouter (issue 4 not merged yet)' };
  let express;
  try {
    express = require('express');
  } catch {
    return { skipped: 'express not installed' };
  }
  const app = express();
  try {
    app.use('/admin', factory({ mutex, authorize: () => true, operator: () => 'bench' }));
  } catch (error) {
    return { skipped: `createDbMutexAdminRouter threw: ${error.message}` };
  }
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  try {
    const { port } = server.address();
    const pages = {};
    for (const p of ['/admin/', '/admin/api/locks']) {
      await request(port, p); // warm-up: views compiled, statements prepared
      const r = await timeIt(() => request(port, p), times);
      pages[p] = { ms: r.ms, status: r.result.status, bytes: r.result.bytes };
    }
    return { pages };
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

async function run(env) {
  const { config, log, dialect, lib } = env;
  const sizes = config.scaleSizes;
  // One table per size, all filled first, then every row of every size measured interleaved, so
  // drift of a shared machine cannot masquerade as an effect of table size.
  const tables = [];
  const variants = [];
  const perSize = [];
  let listing = null;
  let board = null;
  let keyset = null;
  try {
    for (const [i, size] of sizes.entries()) {
      const table = `bench_scale_${i}`;
      const originalTable = `bench_scale_original_${i}`;
      tables.push(originalTable, table);
      const { mutex, url } = await env.extraMutex(table);
      const t0 = performance.now();
      await dialect.fillOtherRows(url, { table, originalTable, count: size });
      log(`scale: ${size.toLocaleString('en-US')} other rows in ${table} (${fmt((performance.now() - t0) / 1000)} s)`);
      let acquireSum = 0;
      let acquireN = 0;
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
      for (const b of dialect.scaleBaselines({ url, track: env.track }, { table, originalTable })) {
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
    for (const e of perSize) {
      e.acquire = spread(results.get(e.keys.ours).runs.map((r) => r.acquireUs));
      e.wall = Object.fromEntries(Object.entries(e.keys).map(([k, key]) => [k, results.get(key).wallUs]));
      e.cycles = Object.fromEntries(Object.entries(e.keys).map(([k, key]) => [k, results.get(key).cycles]));
      if (e.size === config.dashboardLocks) {
        const mutex = e.mutex;
        listing = await listMemory(mutex);
        const counts = await timeIt(() => mutex.counts(), 5);
        const firstPage = await timeIt(() => mutex.list({ limit: 50 }), 5);
        const mid = (await mutex.list({ limit: Math.floor(e.size / 2) })).pop();
        const deepPage = mid ? await timeIt(() => mutex.list({ limit: 50, after: { acquiredAt: mid.acquiredAt, lockId: mid.lockId } }), 5) : null;
        keyset = { counts: counts.ms, firstPage: firstPage.ms, deepPage: deepPage && deepPage.ms };
        board = await dashboard(lib, mutex, 5);
      }
    }
  } finally {
    // The big tables go now, not at the end of the run, so later sections do not share the disk with them.
    for (const e of perSize) {
      await e.mutex.close().catch(() => undefined);
      await dialect.dropTables(e.url, tables);
    }
  }

  const base = perSize[0];
  const rows = perSize.map((e) => [
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
  if (listing) {
    const extra = [
      ['mutex.list() of all rows: time', `${fmt(listing.ms)} ms (${listing.count.toLocaleString('en-US')} rows)`],
      ['mutex.list() of all rows: heap retained by the result', `${fmtBytes(listing.retained)} (${fmt(listing.retained / listing.count)} B/row)`],
      ['mutex.list() of all rows: heap growth before GC (peak-ish)', fmtBytes(listing.peak)],
      ['mutex.counts(): ms min / median / max', fmtSpread(keyset.counts)],
      ['mutex.list({limit: 50}) first page: ms', fmtSpread(keyset.firstPage)],
      ['mutex.list({limit: 50, after}) page in the middle (keyset): ms', keyset.deepPage ? fmtSpread(keyset.deepPage) : '–'],
    ];
    if (board.skipped) extra.push(['dashboard GET / and GET /api/locks', `skipped: ${board.skipped}`]);
    else for (const [p, r] of Object.entries(board.pages)) extra.push([`dashboard GET ${p}: ms (HTTP ${r.status}, ${fmtBytes(r.bytes)})`, fmtSpread(r.ms)]);
    tablesOut.push({ headers: [`with ${config.dashboardLocks.toLocaleString('en-US')} active locks`, 'figure'], rows: extra });
  }
  const last = perSize[perSize.length - 1];
  const targets = [
    {
      name: `${dialect.label}: acquire latency at ${last.size.toLocaleString('en-US')} vs ${base.size.toLocaleString('en-US')} rows`,
      value: last.acquire.median / base.acquire.median,
      target: '≤ 1.20×',
      pass: last.acquire.median / base.acquire.median <= 1.2,
      fmt: fmtRatio,
    },
  ];
  if (board && board.pages) {
    for (const [p, r] of Object.entries(board.pages)) {
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
