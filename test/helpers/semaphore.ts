/**
 * The semaphore's counterpart of contention.ts: a multi-process run on one semaphore id and the checks
 * of what it logged. A semaphore with limit N may overlap up to N sections, so instead of "no two
 * sections overlap" the checks are: at no instant (database clock) more than N sections run, N is
 * reached (so it is not a mutex in disguise), no two sections of one permit overlap, no permit's
 * counter lost an update, and fencing tokens increase per permit in section order and across permits
 * in acquisition order.
 */
import { notifies } from './db';
import type { ChildGroup } from './children';
import { findLostUpdates, findOverlaps, findTokenOrderViolations, type Section, type WorkerReport } from './contention';
import type { SafetyDialect } from './safety-dialect';
import type { DbMutexOptions } from '../../src';

/** The most sections running at one instant, and the instant's sections. Touching end-to-start is not overlap. */
export function maxConcurrency(sections: readonly Section[]): { max: number; example: Section[] } {
  const events = sections.flatMap((s) => [
    { at: s.startUs, delta: 1, s },
    { at: s.endUs, delta: -1, s },
  ]);
  // Ends before starts at the same instant.
  events.sort((a, b) => a.at - b.at || a.delta - b.delta);
  const running = new Set<Section>();
  let max = 0;
  let example: Section[] = [];
  for (const e of events) {
    if (e.delta > 0) running.add(e.s);
    else running.delete(e.s);
    if (running.size > max) {
      max = running.size;
      example = [...running];
    }
  }
  return { max, example };
}

/**
 * Acquisitions whose token is not larger than that of an acquisition made earlier by the database
 * clock (equal times are not ordered). Section order is no measure across permits: a holder may start
 * its section after one that took a later permit has finished hers, and both rightly hold a permit.
 */
export function findAcquisitionOrderViolations(acquisitions: readonly [number, number][]): { earlier: [number, number]; later: [number, number] }[] {
  const sorted = [...acquisitions].sort((a, b) => a[1] - b[1]);
  const out: { earlier: [number, number]; later: [number, number] }[] = [];
  let before: [number, number] | null = null; // the largest token of all strictly earlier times
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j < sorted.length && sorted[j]![1] === sorted[i]![1]) j++;
    const group = sorted.slice(i, j);
    for (const a of group) if (before && before[0] >= a[0]) out.push({ earlier: before, later: a });
    for (const a of group) if (!before || a[0] > before[0]) before = a;
    i = j;
  }
  return out;
}

export interface SemaphoreRunOptions {
  url: string;
  workers: number;
  iterations: number;
  semaphoreId: string;
  limit: number;
  /** 0: refused when full and retried after a short random pause; > 0: wait for a permit. */
  waitMs: number;
  /** 'over-admits': the workers use limit + 1 (the checks must catch it). */
  impl?: 'library' | 'over-admits';
  timeoutMs: number;
  mutexOptions?: DbMutexOptions;
}

export interface SemaphoreWorkerReport extends WorkerReport {
  /** [fencing token, database-clock acquisition time in ms] of each permit held. */
  acquisitions: [number, number][];
}

export interface SemaphoreRunResult {
  sections: Section[];
  counters: Map<string, number>;
  reports: SemaphoreWorkerReport[];
  sectionsReported: number;
  elapsedMs: number;
}

export function permitKeys(semaphoreId: string, count: number): string[] {
  return Array.from({ length: count }, (_, n) => `${semaphoreId}/permit/${n}`);
}

export async function runSemaphoreContention(db: SafetyDialect, children: ChildGroup, o: SemaphoreRunOptions): Promise<SemaphoreRunResult> {
  // One counter per permit (and one more, for the over-admitting run's extra permit).
  await db.createProbeTables(permitKeys(o.semaphoreId, o.limit + 1));
  const workers = Array.from({ length: o.workers }, (_, worker) =>
    children.spawn(
      'semaphore-worker.js',
      {
        url: o.url,
        worker,
        semaphoreId: o.semaphoreId,
        limit: o.limit,
        iterations: o.iterations,
        waitMs: o.waitMs,
        impl: o.impl ?? 'library',
        sectionSleepMs: 2,
        // As in the lock's contention run: waiters poll briskly where releases are not notified.
        pollIntervalMs: notifies ? 500 : 25,
        sql: db.probeSql,
        mutexOptions: o.mutexOptions ?? {},
      },
      { name: `semaphore worker ${worker}` },
    ),
  );
  await Promise.all(workers.map((w) => w.waitForType('ready', 30_000)));
  const started = performance.now();
  for (const w of workers) w.tell('go');
  const done = await Promise.all(workers.map((w) => w.waitForType('done', o.timeoutMs)));
  const elapsedMs = performance.now() - started;
  await Promise.all(workers.map((w) => w.waitForExit(15_000)));
  const reports = done as unknown as SemaphoreWorkerReport[];
  return {
    sections: await db.readSections(),
    counters: await db.readCounters(),
    reports,
    sectionsReported: reports.reduce((n, r) => n + Object.values(r.sections).reduce((a, b) => a + b, 0), 0),
    elapsedMs,
  };
}

export type SemaphoreCheck = 'sections' | 'sectionsReported' | 'overLimit' | 'limitReached' | 'permitOverlaps' | 'lostUpdates' | 'tokenOrder' | 'lost';

/** Which checks a run fails, with what it found; {} for a run that kept to the limit. */
export function semaphoreViolations(r: SemaphoreRunResult, limit: number, expectedSections: number): Partial<Record<SemaphoreCheck, unknown>> {
  const out: Partial<Record<SemaphoreCheck, unknown>> = {};
  if (r.sections.length !== expectedSections) out.sections = { logged: r.sections.length, expected: expectedSections };
  if (r.sectionsReported !== expectedSections) out.sectionsReported = { reported: r.sectionsReported, expected: expectedSections };
  const { max, example } = maxConcurrency(r.sections);
  if (max > limit) out.overLimit = { max, limit, example };
  if (max < limit) out.limitReached = { max, limit };
  const overlaps = findOverlaps(r.sections);
  if (overlaps.length > 0) out.permitOverlaps = { count: overlaps.length, first: overlaps.slice(0, 3) };
  const lostUpdates = findLostUpdates(r.counters, r.sections);
  if (lostUpdates.length > 0) out.lostUpdates = lostUpdates;
  // Each permit is a lock of its own: its tokens increase in section order; across permits, in
  // acquisition order.
  const permitOrder = findTokenOrderViolations(r.sections);
  const acquisitionOrder = findAcquisitionOrderViolations(r.reports.flatMap((w) => w.acquisitions));
  if (permitOrder.length > 0 || acquisitionOrder.length > 0) {
    out.tokenOrder = { perPermit: permitOrder.slice(0, 3), acrossPermits: acquisitionOrder.slice(0, 3), count: permitOrder.length + acquisitionOrder.length };
  }
  const lost = r.reports.flatMap((w) => w.lost);
  if (lost.length > 0) out.lost = { count: lost.length, first: lost.slice(0, 3) };
  return out;
}

export function semaphoreRunLine(label: string, r: SemaphoreRunResult, limit: number): string {
  const perPermit = new Map<string, number>();
  for (const s of r.sections) perPermit.set(s.lockId, (perPermit.get(s.lockId) ?? 0) + 1);
  const refused = r.reports.reduce((n, w) => n + w.refused, 0);
  return (
    `${label}: ${r.sections.length} sections (${r.sectionsReported} reported), at most ${maxConcurrency(r.sections).max} at once ` +
    `(limit ${limit}), per permit ${[...perPermit].map(([k, n]) => `${k.slice(k.lastIndexOf('/') + 1)}:${n}`).join(' ')}, ` +
    `${findTokenOrderViolations(r.sections).length + findAcquisitionOrderViolations(r.reports.flatMap((w) => w.acquisitions)).length} ` +
    `token order violations, ${refused} refusals, in ${Math.round(r.elapsedMs)} ms`
  );
}
