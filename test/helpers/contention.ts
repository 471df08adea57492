/**
 * The mutual-exclusion detector and the multi-process contention run that feeds it.
 *
 * Each critical section logs [start, end] by the database clock and its fencing token, and
 * increments a per-lock counter with a non-atomic read -> sleep -> write. A correct lock yields
 * disjoint intervals per lock id, tokens that increase in interval order, and counters equal to the
 * number of sections. The detector is tested against a deliberately broken lock (broken-lock.test.ts),
 * so a green contention test means something.
 */
import { notifies } from './db';
import type { ChildGroup } from './children';
import type { SafetyDialect } from './safety-dialect';
import type { DbMutexOptions } from '../../src';

export interface Section {
  lockId: string;
  fencingToken: number;
  worker: number;
  /** Database clock, microseconds since the epoch. */
  startUs: number;
  endUs: number;
}

export interface Findings {
  sections: number;
  overlaps: { lockId: string; first: Section; second: Section }[];
  tokenOrderViolations: { lockId: string; earlier: Section; later: Section }[];
  lostUpdates: { lockId: string; counter: number; sections: number }[];
}

function byLockId(sections: readonly Section[]): Map<string, Section[]> {
  const groups = new Map<string, Section[]>();
  for (const s of sections) {
    const g = groups.get(s.lockId);
    if (g) g.push(s);
    else groups.set(s.lockId, [s]);
  }
  for (const g of groups.values()) g.sort((a, b) => a.startUs - b.startUs || a.endUs - b.endUs);
  return groups;
}

/** Pairs of sections of one lock id whose intervals intersect (touching end-to-start is fine). */
export function findOverlaps(sections: readonly Section[]): Findings['overlaps'] {
  const out: Findings['overlaps'] = [];
  for (const [lockId, group] of byLockId(sections)) {
    // Sweep in start order, remembering the section that reaches furthest: a section starting
    // before that end overlaps it, even when a shorter section lies in between.
    let furthest: Section | null = null;
    for (const s of group) {
      if (furthest && s.startUs < furthest.endUs) out.push({ lockId, first: furthest, second: s });
      if (!furthest || s.endUs > furthest.endUs) furthest = s;
    }
  }
  return out;
}

/** Consecutive sections (in start order) of one lock id whose fencing tokens do not increase. */
export function findTokenOrderViolations(sections: readonly Section[]): Findings['tokenOrderViolations'] {
  const out: Findings['tokenOrderViolations'] = [];
  for (const [lockId, group] of byLockId(sections)) {
    for (let i = 1; i < group.length; i++) {
      if (group[i]!.fencingToken <= group[i - 1]!.fencingToken) out.push({ lockId, earlier: group[i - 1]!, later: group[i]! });
    }
  }
  return out;
}

/** Lock ids whose counter is not the number of sections that ran on them. */
export function findLostUpdates(counters: ReadonlyMap<string, number>, sections: readonly Section[]): Findings['lostUpdates'] {
  const ran = new Map<string, number>();
  for (const s of sections) ran.set(s.lockId, (ran.get(s.lockId) ?? 0) + 1);
  const out: Findings['lostUpdates'] = [];
  for (const [lockId, counter] of counters) {
    const n = ran.get(lockId) ?? 0;
    if (counter !== n) out.push({ lockId, counter, sections: n });
  }
  return out;
}

export function analyse(sections: readonly Section[], counters: ReadonlyMap<string, number>): Findings {
  return {
    sections: sections.length,
    overlaps: findOverlaps(sections),
    tokenOrderViolations: findTokenOrderViolations(sections),
    lostUpdates: findLostUpdates(counters, sections),
  };
}

export type ContentionImpl = 'library' | 'broken' | 'early-token' | 'outlives-ttl' | 'under-reports';

export interface ContentionOptions {
  url: string;
  workers: number;
  iterations: number;
  lockIds: readonly string[];
  /** 0: refuse at once and retry after a short random pause; > 0: wait for the lock. */
  waitMs: number;
  /**
   * 'library' (default): withDbMutex. The rest are deliberately broken runs that the checks must catch
   * (broken-lock.test.ts): 'broken', a check-then-insert lock in raw SQL; 'early-token', the library's
   * lock but a fencing token drawn before the lock was won; 'outlives-ttl', sections that run past
   * the lock's TTL with no heartbeat; 'under-reports', a worker that reports one section fewer than it ran.
   */
  impl?: ContentionImpl;
  leaseSeconds?: number;
  sectionSleepMs?: number;
  /**
   * How often a waiting worker polls. Default: 25 ms where releases are not notified (MariaDB,
   * SQLite; the library's 500 ms default would leave the lock idle most of the run and starve the
   * probe of contention), the library's 500 ms on PostgreSQL (releases wake waiters at once; polling
   * is only the fallback).
   */
  pollIntervalMs?: number;
  /** Extra node arguments per worker index (e.g. a clock-offset preload). */
  nodeArgs?: (worker: number) => string[];
  env?: (worker: number) => NodeJS.ProcessEnv;
  timeoutMs: number;
  /** More initDbMutex options of the workers (e.g. what a transaction-mode pooler needs). */
  mutexOptions?: DbMutexOptions;
}

export interface WorkerReport {
  sections: Record<string, number>;
  refused: number;
  waitTimeouts: number;
  lost: { lockId: string; fencingToken: number; reason: string }[];
}

export interface ContentionResult {
  findings: Findings;
  reports: WorkerReport[];
  /** Sections the workers say they completed (must equal the sections logged). */
  sectionsReported: number;
  lost: WorkerReport['lost'];
  elapsedMs: number;
  /** Each worker's Date.now() when it was ready (shows a clock offset took effect). */
  workerClocks: number[];
}

/** Starts the workers together, waits for all of them, and analyses what they logged. */
export async function runContention(db: SafetyDialect, children: ChildGroup, o: ContentionOptions): Promise<ContentionResult> {
  await db.createProbeTables(o.lockIds);
  // The broken lock's tables also hold the token source of 'early-token'.
  if (o.impl !== undefined && o.impl !== 'library') await db.createBrokenLockTables();
  const workers = Array.from({ length: o.workers }, (_, worker) =>
    children.spawn(
      'contention-worker.js',
      {
        url: o.url,
        worker,
        lockIds: o.lockIds,
        iterations: o.iterations,
        waitMs: o.waitMs,
        impl: o.impl ?? 'library',
        leaseSeconds: o.leaseSeconds ?? 10,
        sectionSleepMs: o.sectionSleepMs ?? 2,
        pollIntervalMs: o.pollIntervalMs ?? (notifies ? 500 : 25),
        // The SQL of this database (see safety-dialect.ts): the fixture itself is dialect-free.
        sql: db.probeSql,
        mutexOptions: o.mutexOptions ?? {},
      },
      { name: `worker ${worker}`, nodeArgs: o.nodeArgs?.(worker), env: o.env?.(worker) },
    ),
  );
  const ready = await Promise.all(workers.map((w) => w.waitForType('ready', 30_000)));
  const started = performance.now();
  // All at once, so the first acquisitions already contend.
  for (const w of workers) w.tell('go');
  const done = await Promise.all(workers.map((w) => w.waitForType('done', o.timeoutMs)));
  const elapsedMs = performance.now() - started;
  await Promise.all(workers.map((w) => w.waitForExit(15_000)));
  const reports = done as unknown as WorkerReport[];
  const findings = analyse(await db.readSections(), await db.readCounters());
  const sectionsReported = reports.reduce((n, r) => n + Object.values(r.sections).reduce((a, b) => a + b, 0), 0);
  return {
    findings,
    reports,
    sectionsReported,
    lost: reports.flatMap((r) => r.lost),
    elapsedMs,
    workerClocks: ready.map((m) => m.dateNow as number),
  };
}

/**
 * Asserts that fencing tokens increased in section order, and returns a line for the report. (The soak
 * run once found violations here: see fencing-order.test.ts.)
 */
export function checkTokenOrder(violations: Findings['tokenOrderViolations']): string {
  expect(violations.slice(0, 3)).toEqual([]);
  return 'fencing tokens increased in section order';
}

/** The checks a contention run must pass; each is shown to fail on a deliberately broken run (broken-lock.test.ts). */
export type ContentionCheck = 'sections' | 'sectionsReported' | 'overlaps' | 'lostUpdates' | 'tokenOrder' | 'lost';

/**
 * Which checks a run fails, with what it found; {} for a run that shows mutual exclusion:
 * - sections: the sections logged in the database are the ones expected (none missing, none extra);
 * - sectionsReported: the workers report having completed exactly the sections expected;
 * - overlaps: no two sections of one lock id intersect (database clock);
 * - lostUpdates: every lock id's non-atomic counter equals the sections that ran on it;
 * - tokenOrder: fencing tokens increase in the order the sections ran;
 * - lost: no section ended with the lock lost or expired under it (DbMutexTimeoutError).
 */
export function contentionViolations(result: ContentionResult, expectedSections: number): Partial<Record<ContentionCheck, unknown>> {
  const { findings } = result;
  const out: Partial<Record<ContentionCheck, unknown>> = {};
  if (findings.sections !== expectedSections) out.sections = { logged: findings.sections, expected: expectedSections };
  if (result.sectionsReported !== expectedSections) out.sectionsReported = { reported: result.sectionsReported, expected: expectedSections };
  if (findings.overlaps.length > 0) out.overlaps = { count: findings.overlaps.length, first: findings.overlaps.slice(0, 3) };
  if (findings.lostUpdates.length > 0) out.lostUpdates = findings.lostUpdates.slice(0, 5);
  if (findings.tokenOrderViolations.length > 0) {
    out.tokenOrder = { count: findings.tokenOrderViolations.length, first: findings.tokenOrderViolations.slice(0, 3) };
  }
  if (result.lost.length > 0) out.lost = { count: result.lost.length, first: result.lost.slice(0, 3) };
  return out;
}

/** One line with the numbers the closing note quotes: sections, overlaps, lost updates (and the rest). */
export function runLine(label: string, result: ContentionResult): string {
  const f = result.findings;
  const lostIncrements = f.lostUpdates.reduce((n, u) => n + Math.abs(u.sections - u.counter), 0);
  return (
    `${label}: ${f.sections} sections logged (${result.sectionsReported} reported), ${f.overlaps.length} overlaps, ` +
    `${lostIncrements} lost updates (${f.lostUpdates.length} lock ids), ${f.tokenOrderViolations.length} token order violations, ` +
    `${result.lost.length} lost locks, in ${Math.round(result.elapsedMs)} ms`
  );
}
