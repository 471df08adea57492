'use strict';
/**
 * Failover of leader election (`mutex.lead()`): three candidate processes (this same file, run as a
 * child) campaign for one election; the leader is killed with SIGKILL, again and again, and the time
 * until the next leader's election is read by the database clock: from the clock just before the kill
 * (the observer's `inspect()` reads it with the lock row) to the new lock's `acquiredAt`. The claim is
 * one lease plus one poll interval; the split shows what the lease costs (the dead leader's row
 * running out) and what the campaign's polling adds after it.
 *
 *   BENCH_FAILOVER_KILLS=12 BENCH_FAILOVER_LEASE_SECONDS=1.5 BENCH_FAILOVER_POLL_MS=500
 */
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const { fmt, percentile, spread } = require('../lib/stats');

const CANDIDATES = 3;

function setting(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

/** A candidate process: its `elected` lines, and a way to wait for the next one. */
function spawnCandidate(config) {
  const child = spawn(process.execPath, [path.join(__dirname, 'failover.js'), JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const elections = [];
  const waiting = new Set();
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let m;
    try {
      m = JSON.parse(line);
    } catch {
      return;
    }
    if (m.type !== 'elected') return;
    elections.push(m);
    for (const w of waiting) w(m);
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return {
    child,
    exited,
    elections,
    /** The first election above `epoch`, already seen or still to come. */
    electedAfter(epoch) {
      const seen = elections.find((m) => m.epoch > epoch);
      if (seen) return { promise: Promise.resolve(seen), cancel: () => undefined };
      let w;
      const promise = new Promise((resolve) => {
        w = (m) => {
          if (m.epoch > epoch) {
            waiting.delete(w);
            resolve(m);
          }
        };
        waiting.add(w);
      });
      return { promise, cancel: () => waiting.delete(w) };
    },
  };
}

/** The next leader after `epoch` among `candidates`, or an error after `ms` (a hang guard). */
async function nextLeader(candidates, epoch, ms) {
  const waits = candidates.map((c) => ({ c, w: c.electedAfter(epoch) }));
  let timer;
  try {
    return await Promise.race([
      ...waits.map(({ c, w }) => w.promise.then((message) => ({ candidate: c, message }))),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`failover: no leader after epoch ${epoch} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    for (const { w } of waits) w.cancel();
  }
}

async function run(env) {
  const { log, dialect } = env;
  const kills = Math.round(setting('BENCH_FAILOVER_KILLS', 12));
  const leaseSeconds = setting('BENCH_FAILOVER_LEASE_SECONDS', 1.5);
  const pollIntervalMs = setting('BENCH_FAILOVER_POLL_MS', 500);
  const url = await env.newDatabase();
  const observer = await env.mutexFor(env.sequelizeFor(url));
  const electionId = 'bench:failover';
  const config = { dialect: dialect.name, url, electionId, leaseSeconds, pollIntervalMs };
  const alive = new Set();
  const failover = [];
  const afterExpiry = [];
  log(`failover: ${CANDIDATES} candidates, lease ${leaseSeconds} s, poll ${pollIntervalMs} ms, ${kills} kills of the leader`);
  try {
    for (let i = 0; i < CANDIDATES; i++) alive.add(spawnCandidate(config));
    let leader = await nextLeader([...alive], 0, 60_000);
    for (let k = 0; k < kills; k++) {
      const epoch = leader.message.epoch;
      // Let the leader renew at least once, so a renewed lease is the one that has to run out.
      await new Promise((resolve) => setTimeout(resolve, (leaseSeconds * 1000) / 2));
      const before = await observer.inspect(electionId);
      if (!before || before.fencingToken !== epoch) throw new Error(`failover: epoch ${epoch} is not the lock's holder (${JSON.stringify(before)})`);
      leader.candidate.child.kill('SIGKILL');
      await leader.candidate.exited;
      alive.delete(leader.candidate);
      // The dead leader's row as it was left (a renewal in flight at the kill may have moved its expiry).
      const left = await observer.inspect(electionId);
      alive.add(spawnCandidate(config));
      leader = await nextLeader([...alive], epoch, 60_000);
      failover.push(leader.message.acquiredAtMs - before.dbNow.getTime());
      if (left && left.fencingToken === epoch && left.expiresAt) afterExpiry.push(leader.message.acquiredAtMs - left.expiresAt.getTime());
      log(`  kill ${k + 1}: new leader after ${fmt(failover[failover.length - 1], 0)} ms`);
    }
  } finally {
    for (const c of alive) c.child.kill('SIGKILL');
    await Promise.all([...alive].map((c) => c.exited));
  }
  const boundMs = leaseSeconds * 1000 + pollIntervalMs;
  const s = spread(failover);
  const p50 = percentile(failover, 50);
  const e = spread(afterExpiry);
  return {
    title: 'Failover: leader election after a SIGKILLed leader',
    intro:
      `${CANDIDATES} candidate processes campaign with \`mutex.lead()\` (leaseSeconds ${leaseSeconds}, pollIntervalMs ${pollIntervalMs}); ` +
      `the leader is killed with SIGKILL ${kills} times. Failover = the new leader's acquiredAt minus the database clock read just before ` +
      'the kill; "after expiry" = minus the dead leader\'s row expiry (what the campaign\'s polling adds once the lease has run out). ' +
      'All times by the database clock.',
    tables: [
      {
        headers: ['kills', 'failover p50 (ms)', 'failover min / median / max (ms)', 'after expiry min / median / max (ms)', 'lease + poll (ms)'],
        rows: [[String(s.n), fmt(p50, 0), `${fmt(s.min, 0)} / ${fmt(s.median, 0)} / ${fmt(s.max, 0)}`, `${fmt(e.min, 0)} / ${fmt(e.median, 0)} / ${fmt(e.max, 0)}`, fmt(boundMs, 0)]],
      },
    ],
    targets: [
      {
        name: `${dialect.label}: failover after a SIGKILLed leader, max of ${s.n}`,
        value: s.max,
        target: `<= lease + poll (${fmt(boundMs, 0)} ms; jitter stretches one poll to 1.5×)`,
        pass: s.max <= leaseSeconds * 1000 + 1.5 * pollIntervalMs,
        fmt: (v) => `${fmt(v, 0)} ms`,
      },
    ],
  };
}

/** The child: one candidate, reporting each election on stdout until it is killed. */
async function candidate(config) {
  const dialect = require(path.join(__dirname, '..', 'dialects', `${config.dialect}.js`));
  const lib = require(path.join(__dirname, '..', '..', 'dist'));
  const sequelize = dialect.makeSequelize(config.url, { logging: false, pool: { max: 3 } });
  const mutex = lib.initDbMutex(sequelize, { setDefault: false, leaseSeconds: config.leaseSeconds, pollIntervalMs: config.pollIntervalMs });
  const leadership = mutex.lead(config.electionId, {
    onElected: (lock) => {
      process.stdout.write(`${JSON.stringify({ type: 'elected', epoch: lock.fencingToken, acquiredAtMs: lock.acquiredAt.getTime() })}\n`);
    },
  });
  leadership.on('error', (error) => process.stderr.write(`failover candidate: ${error && error.message}\n`));
  // The parent kills it; a parent that died closes stdin, which ends the candidate too.
  process.stdin.on('end', () => {
    void leadership.stop().then(() => mutex.close()).then(() => sequelize.close());
  });
  process.stdin.resume();
}

if (require.main === module) {
  candidate(JSON.parse(process.argv[2])).catch((error) => {
    process.stderr.write(`${error && error.stack}\n`);
    process.exitCode = 1;
  });
}

module.exports = { run };
