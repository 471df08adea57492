'use strict';
/**
 * A contended-section worker (forked by sections/contended.js). It waits for commands over IPC so the
 * parent forks the workers once and reuses them for every row:
 *   {type:'setup', dialect, url, variant, lockId, pollIntervalMs, sectionMs, thinkMs}  -> {type:'ready'}
 *   {type:'go', untilNs, baseNs}                                                        -> {type:'done', samples, errors}
 *   {type:'teardown'}                                                                   -> {type:'closed'}
 *   {type:'exit'}
 * Timestamps are process.hrtime.bigint(): CLOCK_MONOTONIC, one clock for every process on the
 * machine, so the parent can order sections of different workers on one time line.
 */
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');

let current = null;

function now() {
  return process.hrtime.bigint();
}

async function setup(msg) {
  const dialect = require(path.join(__dirname, 'dialects', `${msg.dialect}.js`));
  const variant = msg.variant;
  if (variant.kind === 'raw') {
    const raw = await dialect.contendedRaw(msg.url, variant.raw);
    return { run: (section) => raw.run(msg.lockId, section), close: () => raw.close() };
  }
  const lib = require(path.join(__dirname, '..', 'dist'));
  const sequelize = dialect.makeSequelize(msg.url, { pool: { max: 2 } });
  const mutex = lib.initDbMutex(sequelize, { setDefault: false, pollIntervalMs: variant.pollIntervalMs });
  for (const name of variant.patches || []) {
    // Bench-only prototypes of recommended library changes (see bench/dialects/<dialect>.js).
    if (!dialect.PROTOTYPES[name](mutex)) throw new Error(`prototype ${name} does not apply to this build`);
  }
  if (variant.listen === false) {
    // Bench-only approximation of a "no LISTEN" option: with no listener, waiters only poll.
    // Releases still send their notification (nobody hears it), so the release cost is unchanged.
    mutex.listener = null;
  }
  const options = { mutex, waitMs: 60_000, heartbeat: variant.heartbeat ?? true };
  return {
    run: (section) => lib.withDbMutex(msg.lockId, section, options),
    close: async () => {
      await mutex.close();
      await sequelize.close();
    },
  };
}

async function go(msg) {
  const until = BigInt(msg.untilNs);
  const base = BigInt(msg.baseNs);
  const ms = (t) => Number(t - base) / 1e6;
  const samples = [];
  const errors = [];
  const { sectionMs, thinkMs } = current.params;
  while (now() < until) {
    let start = 0n;
    let end = 0n;
    try {
      await current.run(async () => {
        start = now();
        await sleep(sectionMs);
        end = now();
      });
      samples.push([ms(start), ms(end), ms(now())]);
    } catch (error) {
      errors.push(String(error && error.message));
      if (errors.length > 20) break;
    }
    // Work outside the lock, so a waiter (not the releaser looping straight back) usually takes over.
    if (thinkMs > 0) await sleep(thinkMs);
  }
  return { samples, errors };
}

process.on('message', (msg) => {
  const reply = (m) => process.send(m);
  (async () => {
    if (msg.type === 'setup') {
      const handle = await setup(msg);
      current = { ...handle, params: { sectionMs: msg.sectionMs, thinkMs: msg.thinkMs } };
      reply({ type: 'ready' });
    } else if (msg.type === 'go') {
      reply({ type: 'done', pid: process.pid, ...(await go(msg)) });
    } else if (msg.type === 'teardown') {
      if (current) await current.close();
      current = null;
      reply({ type: 'closed' });
    } else if (msg.type === 'exit') {
      // Whatever a failed setup left open must not keep this process alive.
      process.exit(0);
    }
  })().catch((error) => {
    reply({ type: 'error', message: String(error && error.stack) });
  });
});
