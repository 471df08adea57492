// @ts-check
'use strict';
/**
 * Section 2: N worker processes cycling one lock with waitMs. Every worker records, on the machine's
 * shared monotonic clock (CLOCK_MONOTONIC via process.hrtime.bigint()), when its critical section
 * started and ended. Sorted by start, consecutive sections give the hand-off: next start − previous
 * end, i.e. the release statement, the wake-up (notification or poll) and the next acquire statement:
 * the time during which nobody runs the section. A start before the previous end would be a mutual
 * exclusion failure and is counted (it must stay 0).
 */
const { fork } = require('node:child_process');
const path = require('node:path');
const { percentile, spread, fmt, fmtSpread, fmtRatio } = require('../lib/stats');
const probe = require('../lib/handoff-probe');

/** @typedef {import('../types').ContendedRow} ContendedRow */
/** @typedef {import('../types').WorkerReply} WorkerReply */
/** @typedef {import('node:child_process').ChildProcess} ChildProcess */

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/**
 * The next message of this `type` from a worker; rejects on its error message or its exit.
 * @template {WorkerReply['type']} K
 * @param {ChildProcess} child
 * @param {K} type
 * @returns {Promise<Extract<WorkerReply, { type: K }>>}
 */
function once(child, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (/** @type {WorkerReply} */ msg) => {
      if (msg.type === type) {
        cleanup();
        resolve(/** @type {Extract<WorkerReply, { type: K }>} */ (msg));
      } else if (msg.type === 'error') {
        cleanup();
        reject(new Error(`worker ${child.pid}: ${msg.message}`));
      }
    };
    const onExit = (/** @type {number | null} */ code) => {
      cleanup();
      reject(new Error(`worker ${child.pid} exited (${code}) while waiting for ${type}`));
    };
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/**
 * @template {WorkerReply['type']} K
 * @param {ChildProcess[]} children
 * @param {import('../types').WorkerCommand} message
 * @param {K} replyType
 */
async function all(children, message, replyType) {
  const replies = children.map((c) => once(c, replyType));
  for (const c of children) c.send(message);
  return Promise.all(replies);
}

/**
 * @param {Extract<WorkerReply, { type: 'done' }>[]} replies
 * @param {number} durationMs
 */
function analyse(replies, durationMs) {
  /** @type {{ start: number, end: number, worker: number }[]} */
  const sections = [];
  replies.forEach((reply, worker) => {
    for (const [start, end] of reply.samples) if (start < durationMs) sections.push({ start, end, worker });
  });
  sections.sort((a, b) => a.start - b.start);
  const gaps = [];
  const crossGaps = [];
  let overlaps = 0;
  for (let i = 1; i < sections.length; i++) {
    const prev = /** @type {(typeof sections)[number]} */ (sections[i - 1]);
    const next = /** @type {(typeof sections)[number]} */ (sections[i]);
    const gap = next.start - prev.end;
    if (gap < 0) overlaps++;
    gaps.push(gap);
    if (next.worker !== prev.worker) crossGaps.push(gap);
  }
  const perWorker = replies.map((_, w) => sections.filter((s) => s.worker === w).length);
  const sectionMs = sections.map((s) => s.end - s.start);
  return {
    probed: probe.breakdown(sections, replies.map((r) => r.probe)),
    throughput: sections.length / (durationMs / 1000),
    gaps,
    crossGaps,
    overlaps,
    perWorker,
    sectionMs,
    errors: replies.flatMap((r) => r.errors),
  };
}

/**
 * The default row with one adopted lever undone (and with all of them): what each lever is worth under contention.
 * @param {import('../types').BenchDialect} dialect
 * @returns {ContendedRow[]}
 */
function leverRows(dialect) {
  const levers = Object.entries(dialect.LEVERS_UNDONE || {});
  const pollIntervalMs = 500;
  /** @type {ContendedRow[]} */
  const rows = levers.map(([name, lever]) => ({ key: `undo-${name}`, kind: 'ours', label: `lever undone: ${lever.label}`, pollIntervalMs, patches: [name] }));
  if (levers.length > 1) {
    rows.push({ key: 'undo-all', kind: 'ours', label: 'every lever above undone (the library before them)', pollIntervalMs, patches: levers.map(([name]) => name) });
  }
  return rows;
}

/**
 * No waitMs: each worker tries, and when refused sleeps 1 ms and tries again, so the holder's lock
 * row sees a stream of refused attempts (the lock-per-job pattern with an eager retry).
 */
/**
 * @param {import('../types').BenchDialect} dialect
 * @returns {ContendedRow[]}
 */
function retryRows(dialect) {
  /** @type {ContendedRow[]} */
  const rows = [{ key: 'retry', kind: 'ours', label: 'ours: no waitMs, retry 1 ms after each refusal', retryMs: 1, pollIntervalMs: 500 }];
  for (const [name, lever] of Object.entries(dialect.LEVERS_UNDONE || {})) {
    if (!lever.affectsRefusal) continue;
    rows.push({ key: `retry-undo-${name}`, kind: 'ours', label: `lever undone: the same, ${lever.label}`, retryMs: 1, pollIntervalMs: 500, patches: [name] });
  }
  return rows;
}

/**
 * @param {import('../types').BenchDialect} dialect
 * @returns {ContendedRow[]}
 */
function rowsFor(dialect) {
  /** @type {ContendedRow[]} */
  const rows = [];
  // A dialect without LISTEN/NOTIFY (notifies: false) only polls: its default is the poll-500 row.
  if (dialect.notifies !== false) {
    rows.push(
      { key: 'notify', kind: 'ours', label: 'ours: waitMs, LISTEN/NOTIFY wake-up (default; poll fallback 500 ms)', pollIntervalMs: 500 },
      { key: 'notify-nohistory', kind: 'ours', label: 'ours: the same with history: false (no history row)', pollIntervalMs: 500, mutexOptions: { history: false } },
      // Through the bench's own PgBouncer (same server), transaction mode with the README's settings.
      { key: 'pgbouncer-transaction', kind: 'ours', label: 'ours: waitMs, through PgBouncer transaction mode (preparedStatements: false, listenUrl direct)', pollIntervalMs: 500, pooler: 'transaction' },
      { key: 'pgbouncer-session', kind: 'ours', label: 'ours: waitMs, through PgBouncer session mode (default options)', pollIntervalMs: 500, pooler: 'session' },
    );
  }
  rows.push(
    { key: 'poll-500', kind: 'ours', label: 'ours: polling only, pollIntervalMs 500 (listen: false)', pollIntervalMs: 500, listen: false },
    { key: 'poll-10', kind: 'ours', label: 'ours: polling only, pollIntervalMs 10 (listen: false)', pollIntervalMs: 10, listen: false },
    ...leverRows(dialect),
    ...retryRows(dialect),
    ...dialect.contendedRawVariants.map((v) => /** @type {ContendedRow} */ ({ key: v.key, kind: 'raw', raw: v.key, label: v.label })),
  );
  return rows;
}

/**
 * @param {import('../types').BenchEnv} env
 * @returns {Promise<import('../types').Report>}
 */
async function run(env) {
  const { config, log, dialect } = env;
  const n = config.workers;
  const durationMs = config.contendedSeconds * 1000;
  log(`contended: ${n} workers, ${config.contendedRuns} runs × ${config.contendedSeconds} s per row, section ${config.sectionMs} ms, think ${config.thinkMs} ms`);
  /** @type {ChildProcess[]} */
  const children = [];
  for (let i = 0; i < n; i++) {
    children.push(fork(path.join(__dirname, '..', 'worker.js'), [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }
  /** @type {({ row: ContendedRow, runs: ReturnType<typeof analyse>[], error?: undefined } | { row: ContendedRow, error: string, runs?: undefined })[]} */
  const out = [];
  try {
    // A database of its own: the workers' release notices must not wake the bench's other listeners.
    const url = await env.newDatabase();
    await env.mutexFor(env.sequelizeFor(url));
    const only = config.contendedRows;
    const blockingKey = dialect.contendedRawVariants[0]?.key;
    for (const row of rowsFor(dialect).filter((r) => only.length === 0 || only.includes(r.key) || r.key === blockingKey)) {
      const lockId = `bench:contended:${row.key}`;
      const go = async (/** @type {number} */ ms) => {
        const base = process.hrtime.bigint();
        const until = base + BigInt(Math.round(ms * 1e6));
        return all(children, { type: 'go', untilNs: String(until), baseNs: String(base) }, 'done');
      };
      try {
        let rowUrl = url;
        let variant = row;
        if (row.pooler) {
          const { mutexOptionsFor } = require('../lib/pgbouncer');
          rowUrl = (await env.pgbouncer(row.pooler))(url);
          variant = { ...row, mutexOptions: mutexOptionsFor(row.pooler, url) };
        }
        await all(
          children,
          { type: 'setup', dialect: dialect.name, url: rowUrl, variant, lockId, sectionMs: config.sectionMs, thinkMs: config.thinkMs },
          'ready',
        );
        await go(Math.min(1000, durationMs)); // warm-up: connections, listener, prepared statements
        const runs = [];
        for (let r = 0; r < config.contendedRuns; r++) runs.push(analyse(await go(durationMs), durationMs));
        out.push({ row, runs });
        const t = spread(runs.map((x) => x.throughput));
        log(`  ${row.key}: ${fmt(t.median)} sections/s, hand-off p50 ${fmt(percentile(runs.flatMap((x) => x.gaps), 50))} ms`);
      } catch (error) {
        out.push({ row, error: messageOf(error).split('\n')[0] ?? '' });
        log(`  ${row.key}: failed: ${messageOf(error)}`);
      }
      await all(children, { type: 'teardown' }, 'closed');
    }
  } finally {
    for (const c of children) if (c.connected) c.send({ type: 'exit' });
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((resolve) => c.once('exit', resolve)) : null)));
  }

  const stats = out.map(({ row, runs, error }) => {
    if (!runs) return { row, error, p50: NaN, p99: NaN, overlaps: 0, sectionMedian: NaN };
    const gaps = runs.flatMap((x) => x.gaps);
    return { row, runs, gaps, p50: percentile(gaps, 50), p99: percentile(gaps, 99), overlaps: runs.reduce((a, x) => a + x.overlaps, 0), sectionMedian: percentile(runs.flatMap((x) => x.sectionMs), 50) };
  });
  // The server's own blocking lock (PostgreSQL: pg_advisory_lock; MariaDB: GET_LOCK) wakes the next
  // waiter itself: the hand-off a lock built on rows is measured against.
  const blockingRaw = dialect.contendedRawVariants[0];
  const blocking = stats.find((r) => r.row.key === blockingRaw?.key && r.runs);
  const rows = stats.map(({ row, runs, gaps, p50, p99, overlaps, sectionMedian, error }) => {
    if (!runs || !gaps) return { key: row.key, cells: [row.label, `failed: ${error}`, '', '', '', '', '', ''], p50, p99, overlaps, sectionMedian };
    const cross = runs.flatMap((x) => x.crossGaps);
    const perWorker = runs.flatMap((x) => x.perWorker);
    const errors = runs.flatMap((x) => x.errors);
    return {
      key: row.key,
      cells: [
        row.label,
        fmtSpread(spread(runs.map((x) => x.throughput)), 0),
        `${fmt(p50)} / ${fmt(p99)}`,
        blocking ? `${fmtRatio(p50 / blocking.p50)} / ${fmtRatio(p99 / blocking.p99)}` : '–',
        `${fmt(percentile(cross, 50))} / ${fmt(percentile(cross, 99))}`,
        gaps.length ? `${Math.round((100 * cross.length) / gaps.length)} %` : '–',
        `${Math.min(...perWorker)}–${Math.max(...perWorker)}`,
        String(overlaps) + (errors.length ? ` (${errors.length} errors: ${errors[0]})` : ''),
      ],
      p50,
      p99,
      overlaps,
      sectionMedian,
    };
  });
  const notify = rows.find((r) => r.key === 'notify');
  const sectionMedian = (notify ?? rows.find((r) => Number.isFinite(r.sectionMedian)) ?? { sectionMedian: NaN }).sectionMedian;
  const overlapTarget = {
    name: `${dialect.label}: overlapping critical sections (all contended rows)`,
    value: rows.reduce((a, r) => a + r.overlaps, 0),
    target: '0',
    pass: rows.every((r) => r.overlaps === 0),
    fmt: (/** @type {number} */ v) => String(v),
  };
  const blockingName = blocking ? "the server's blocking lock" : 'blocking lock (none on this database)';
  /** @type {import('../types').Target<any>[]} */
  const targets = [];
  if (notify) {
    targets.push({ name: `${dialect.label}: contended hand-off p50 (LISTEN/NOTIFY)`, value: notify.p50, target: '≤ 5 ms', pass: notify.p50 <= 5, fmt: (/** @type {number} */ v) => `${fmt(v)} ms` });
  }
  // The library's default way of waiting on this database: LISTEN/NOTIFY where it has it, else polling.
  const defaultRow = notify ?? rows.find((r) => r.key === 'poll-500');
  if (blocking && blockingRaw && defaultRow) {
    const label = blockingRaw.short;
    /** @type {{ p50: number, p99: number, blockingP50: number, blockingP99: number }} */
    const value = { p50: defaultRow.p50, p99: defaultRow.p99, blockingP50: blocking.p50, blockingP99: blocking.p99 };
    targets.push({
      name: `${dialect.label}: contended hand-off p50, ${defaultRow.key} / ${label}`,
      value,
      target: '≤ 2.00×',
      pass: value.p50 / value.blockingP50 <= 2,
      fmt: (/** @type {typeof value} */ v) =>
        `${fmtRatio(v.p50 / v.blockingP50)} (p50 ${fmt(v.p50)} vs ${fmt(v.blockingP50)} ms; p99 ${fmt(v.p99)} vs ${fmt(v.blockingP99)} ms)`,
    });
  }
  // What a hand-off through a lease row and notices can cost at least (PostgreSQL's rows by hand), and
  // the library's distance from it in two steps: its own statements sent by hand, then the library.
  /** @param {string} key */
  const byKey = (key) => rows.find((r) => r.key === key && Number.isFinite(r.p50));
  /**
   * @param {string} name
   * @param {{ p50: number, p99: number } | undefined} a
   * @param {{ p50: number, p99: number } | undefined} b
   */
  const context = (name, a, b) => {
    if (!a || !b) return;
    targets.push({
      name: `${dialect.label}: contended hand-off p50, ${name}`,
      value: { a, b },
      target: '(context only, no goal)',
      pass: true,
      fmt: (/** @type {{ a: { p50: number, p99: number }, b: { p50: number, p99: number } }} */ v) =>
        `${fmtRatio(v.a.p50 / v.b.p50)} (p50 ${fmt(v.a.p50)} vs ${fmt(v.b.p50)} ms; p99 ${fmt(v.a.p99)} vs ${fmt(v.b.p99)} ms)`,
    });
  };
  const minimal = byKey('minimal-notify-durable');
  const ownByHand = byKey('own-notify');
  if (blockingRaw) context(`minimal durable lease with LISTEN/NOTIFY by hand / ${blockingRaw.short}`, minimal, blocking);
  context('its own statements with LISTEN/NOTIFY by hand / minimal durable lease with LISTEN/NOTIFY by hand', ownByHand, minimal);
  if (defaultRow) context(`${defaultRow.key} / its own statements with LISTEN/NOTIFY by hand`, defaultRow, ownByHand);
  targets.push(overlapTarget);
  const probedRows = stats.flatMap(({ row, runs }) => {
    if (!runs) return [];
    const handoffs = runs.reduce((a, x) => a + x.probed.handoffs, 0);
    if (handoffs === 0) return [];
    const byNotice = runs.reduce((a, x) => a + x.probed.byNotice, 0);
    // Without notices (the server's own blocking lock) only the release phase means the same thing: the
    // next holder's call was sent long before and waited inside the server.
    const p50s = probe.PHASES.map(([k]) => (byNotice > 0 || k === 'release' ? percentile(runs.flatMap((x) => x.probed.phases[k] ?? []), 50) : NaN));
    return [[row.label, String(handoffs), `${Math.round((100 * byNotice) / handoffs)} %`, ...p50s.map((v) => (Number.isFinite(v) ? fmt(v) : '–'))]];
  });
  const tables = [
    {
      headers: [
        'row',
        'sections/s min / median / max',
        'hand-off ms p50 / p99',
        `× ${blockingName} p50 / p99`,
        'cross-process ms p50 / p99',
        'cross share',
        'sections per worker',
        'overlaps',
      ],
      rows: rows.map((r) => r.cells),
    },
  ];
  if (probedRows.length > 0) {
    tables.push({
      headers: ['where a cross-process hand-off goes (ms, p50 of each phase)', 'hand-offs', 'woken by a notice', ...probe.PHASES.map(([, label]) => label)],
      rows: probedRows,
    });
  }
  return {
    title: `Contended: ${n} processes, one lock`,
    intro:
      `${n} worker processes (child_process.fork) each loop: acquire with waitMs (the "retry" rows: without waitMs, trying ` +
      `again 1 ms after each refusal), critical section (sleep ${config.sectionMs} ms; ` +
      `measured median ${fmt(sectionMedian)} ms), release, then a ${config.thinkMs} ms pause outside the lock (so that a waiter, ` +
      'not the releaser looping straight back, usually takes over). ' +
      `${config.contendedRuns} runs of ${config.contendedSeconds} s per row after a warm-up. Hand-off = next section's start − ` +
      'previous section\'s end on the shared monotonic clock (CLOCK_MONOTONIC, the same in every process), so it covers the ' +
      'release statement, the wake-up and the next acquire statement. "cross" = hand-offs to a different process. ' +
      `Percentiles pool every hand-off of all runs; "× ${blockingName}" divides them by the same percentiles of the ` +
      'server\'s own blocking lock, which wakes the next waiter inside the server. Overlaps = sections that started before the previous one ended (must be 0). ' +
      'The second table (PostgreSQL) splits each cross-process hand-off by stamps taken in the workers\' pg driver (bench/lib/handoff-probe.js): ' +
      'the holder sending its release, the release notice reaching the next holder\'s process, that process sending its winning attempt, ' +
      'the attempt\'s round trip (its commit included), and the rest until the section starts; each column is that phase\'s own p50, so ' +
      'the columns need not add up to the hand-off p50. "woken by a notice": hand-offs whose winning attempt followed a notice (the others ' +
      'were already under way, or polled).',
    tables,
    targets,
  };
}

module.exports = { run };
