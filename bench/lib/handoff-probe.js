// @ts-check
'use strict';
/**
 * Where a contended hand-off's time goes (PostgreSQL rows). Installed in a contended worker process, it
 * wraps `pg`'s Client so that every named acquire and release statement (the library's, and the raw
 * rows' by hand) and every notification delivered to the process is stamped on the machine's shared
 * monotonic clock. The parent lines the stamps up with the sections (`breakdown`) to split each hand-off
 * into: the holder's release being sent, the notice reaching the next holder, that process waking up and
 * sending its winning attempt, the attempt's own round trip, and what runs after it before the section.
 *
 * The wrappers add a closure and an array push per statement (well under a microsecond), on every row
 * alike. Statements without a name (a transaction-mode pooler's) are not stamped: no breakdown there.
 */
const { EventEmitter } = require('node:events');

/** @typedef {import('../types').ProbeEvent} ProbeEvent */

/** @type {{ kind: 'acquire' | 'release' | 'notice', t0: bigint, t1: bigint, won: boolean }[]} */
let events = [];
let installed = false;

/** @param {string | undefined} name */
function kindOf(name) {
  if (!name) return null;
  if (/(_acquire(_plain)?|_acquire_async|_adv_lock)$/.test(name)) return 'acquire';
  if (/(_release(_plain)?|_release_notify|_adv_unlock)$/.test(name)) return 'release';
  return null;
}

/** @param {{ rows?: Record<string, unknown>[] } | undefined} result */
function wonBy(result) {
  const row = result?.rows?.[0];
  // The library's acquire answers a refusal with a row too (won = false); the raw rows answer none.
  return row !== undefined && row.won !== false;
}

/** Wraps `pg`'s Client (once per process). */
function install() {
  if (installed) return;
  installed = true;
  const { Client } = require('pg');
  const query = Client.prototype.query;
  /** @this {import('pg').Client} @param {any[]} args */
  Client.prototype.query = function (...args) {
    const config = args[0];
    const kind = config && typeof config === 'object' ? kindOf(config.name) : null;
    const promise = /** @type {any} */ (query).apply(this, args);
    if (kind && promise && typeof promise.then === 'function') {
      const t0 = process.hrtime.bigint();
      // Registered before the caller's own await, so the stamp comes before the caller goes on.
      promise.then(
        (/** @type {any} */ result) => events.push({ kind, t0, t1: process.hrtime.bigint(), won: kind === 'acquire' && wonBy(result) }),
        () => undefined,
      );
    }
    return promise;
  };
  const emit = Client.prototype.emit;
  /** @this {EventEmitter} @param {string | symbol} name @param {any[]} rest */
  Client.prototype.emit = function (name, ...rest) {
    if (name === 'notification') {
      const t = process.hrtime.bigint();
      events.push({ kind: 'notice', t0: t, t1: t, won: false });
    }
    return (emit ?? EventEmitter.prototype.emit).call(this, name, ...rest);
  };
}

/**
 * The stamps since the last call, in ms since `base`.
 * @param {bigint} base
 * @returns {ProbeEvent[]}
 */
function take(base) {
  const ms = (/** @type {bigint} */ t) => Number(t - base) / 1e6;
  // Pushed when answered; ordered by when sent.
  const out = events.sort((a, b) => (a.t0 < b.t0 ? -1 : a.t0 > b.t0 ? 1 : 0)).map((e) => /** @type {ProbeEvent} */ ([e.kind, ms(e.t0), ms(e.t1), e.won]));
  events = [];
  return out;
}

/** The phases of a hand-off, in order. */
const PHASES = /** @type {const} */ ([
  ['release', 'section end → release sent'],
  ['notice', 'release sent → notice at the next holder'],
  ['wake', 'notice → winning attempt sent'],
  ['attempt', 'winning attempt (round trip, commit included)'],
  ['after', 'attempt answered → section start'],
]);

/**
 * Splits each cross-process hand-off into PHASES. A hand-off whose winning attempt went out before any
 * notice reached its process (an attempt already under way, a poll) has no notice phases: it counts as
 * not woken by a notice.
 * @param {{ start: number, end: number, worker: number }[]} sections sorted by start
 * @param {ProbeEvent[][]} byWorker
 */
function breakdown(sections, byWorker) {
  /** @type {Record<string, number[]>} */
  const phases = Object.fromEntries(PHASES.map(([k]) => [k, []]));
  let handoffs = 0;
  let byNotice = 0;
  const first = (/** @type {ProbeEvent[]} */ list, /** @type {(e: ProbeEvent) => boolean} */ ok) => list.find(ok);
  for (let i = 1; i < sections.length; i++) {
    const prev = /** @type {(typeof sections)[number]} */ (sections[i - 1]);
    const next = /** @type {(typeof sections)[number]} */ (sections[i]);
    if (prev.worker === next.worker) continue;
    const release = first(byWorker[prev.worker] ?? [], (e) => e[0] === 'release' && e[1] >= prev.end);
    const attempts = (byWorker[next.worker] ?? []).filter((e) => e[0] === 'acquire' && e[3] && e[2] <= next.start);
    const attempt = attempts[attempts.length - 1];
    if (!release || !attempt || attempt[2] < prev.end) continue;
    handoffs++;
    phases.release?.push(release[1] - prev.end);
    phases.attempt?.push(attempt[2] - attempt[1]);
    phases.after?.push(next.start - attempt[2]);
    const notice = first(byWorker[next.worker] ?? [], (e) => e[0] === 'notice' && e[1] >= release[1] && e[1] <= attempt[1]);
    if (notice) {
      byNotice++;
      phases.notice?.push(notice[1] - release[1]);
      phases.wake?.push(attempt[1] - notice[1]);
    }
  }
  return { handoffs, byNotice, phases };
}

module.exports = { install, take, breakdown, PHASES };
