/**
 * Each lock's history: one entry per acquisition that ended, how it ended and how long it was held.
 *
 * Entries come from two tables. The history table (created by the third migration, or sync()) gets a
 * row when a holder releases its lock (on PostgreSQL in the release statement itself), when a holder
 * learns that it lost its lock, and, on PostgreSQL, when an acquisition takes over an expired lock.
 * Operator actions (force-release, release-stale, purge-expired) are already in the audit table with
 * who did it and why; `history()` reads them from there rather than writing them twice. One
 * acquisition is one (lock id, fencing token): when both tables name it, the audit row wins (it says
 * who ended it).
 */
import type { EventRow, HistoryRow } from './dialects/types';

/** How an acquisition ended. */
export const HISTORY_OUTCOMES = ['released', 'lost', 'force-released', 'expired'] as const;
export type DbMutexHistoryOutcome = (typeof HISTORY_OUTCOMES)[number];

export interface DbMutexHistoryEntry {
  lockId: string;
  holder: string;
  hostname: string;
  pid: number;
  fencingToken: number;
  acquiredAt: Date;
  /** When it ended, by the database clock (for an expiry: when the lease ran out, if known). */
  endedAt: Date;
  heldMs: number;
  /**
   * - `released`: its holder released it.
   * - `lost`: its holder found it lost (detail: `expired`, `released by another` — a takeover or a
   *   removal —, or `unreachable`: renewals failed until it ran out).
   * - `force-released`: an operator released it (operator, detail: the reason given).
   * - `expired`: it ran out and another holder took it over (detail `taken over`), or an operator's
   *   release-stale / purge-expired removed it (operator, detail: the action).
   */
  outcome: DbMutexHistoryOutcome;
  detail: string | null;
  /** Who ended it, for operator actions; null otherwise. */
  operator: string | null;
}

/** Summary figures of a list of entries (the dashboard's lock page, the CLI's `history`). */
export interface DbMutexHistorySummary {
  count: number;
  byOutcome: Record<DbMutexHistoryOutcome, number>;
  /** Hold durations in milliseconds (nearest-rank percentiles); null when there is no entry. */
  heldMs: { p50: number; p95: number; max: number } | null;
}

export function summarizeHistory(entries: readonly DbMutexHistoryEntry[]): DbMutexHistorySummary {
  const byOutcome = Object.fromEntries(HISTORY_OUTCOMES.map((o) => [o, 0])) as Record<DbMutexHistoryOutcome, number>;
  for (const entry of entries) byOutcome[entry.outcome] += 1;
  if (entries.length === 0) return { count: 0, byOutcome, heldMs: null };
  const held = entries.map((e) => e.heldMs).sort((a, b) => a - b);
  const rank = (p: number) => held[Math.max(0, Math.ceil((p / 100) * held.length) - 1)]!;
  return { count: entries.length, byOutcome, heldMs: { p50: rank(50), p95: rank(95), max: held[held.length - 1]! } };
}

/** The audit actions that end an acquisition, as history outcomes. */
const AUDIT_OUTCOMES: Readonly<Record<string, DbMutexHistoryOutcome>> = {
  'force-release': 'force-released',
  'release-stale': 'expired',
  'purge-expired': 'expired',
};

/**
 * One lock's history from its history rows and its audit rows (each newest first, at most `limit`
 * of each): one entry per acquisition (the audit row wins over a history row of the same fencing
 * token), newest end first, at most `limit`.
 */
export function mergeHistory(rows: readonly HistoryRow[], events: readonly EventRow[], limit: number): DbMutexHistoryEntry[] {
  const byToken = new Map<number, DbMutexHistoryEntry>();
  for (const row of rows) {
    byToken.set(row.fencingToken, {
      lockId: row.lockId,
      holder: row.holder,
      hostname: row.hostname,
      pid: row.pid,
      fencingToken: row.fencingToken,
      acquiredAt: row.acquiredAt,
      endedAt: row.endedAt,
      heldMs: Math.max(0, row.endedAt.getTime() - row.acquiredAt.getTime()),
      outcome: row.outcome,
      detail: row.detail,
      operator: null,
    });
  }
  for (const event of events) {
    const outcome = AUDIT_OUTCOMES[event.action];
    if (!outcome) continue;
    byToken.set(event.fencingToken, {
      lockId: event.lockId,
      holder: event.holder,
      hostname: event.hostname,
      pid: event.pid,
      fencingToken: event.fencingToken,
      acquiredAt: event.acquiredAt,
      endedAt: event.createdAt,
      heldMs: Math.max(0, event.createdAt.getTime() - event.acquiredAt.getTime()),
      outcome,
      detail: outcome === 'force-released' ? event.reason : event.action,
      operator: event.operator,
    });
  }
  return [...byToken.values()].sort((a, b) => b.endedAt.getTime() - a.endedAt.getTime() || b.fencingToken - a.fencingToken).slice(0, limit);
}
