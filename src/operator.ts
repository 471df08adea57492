/**
 * The operator API: what the dashboard, the CLI and an operator's own script do to locks they do
 * not hold (list, counts, inspect, force-release, release-stale, purge, the audit trail, the
 * fencing floor). Every input is checked here, once, before any SQL, with the limits and defaults
 * of src/limits.ts; the store (src/dialects/) then runs the operation.
 *
 * `DbMutex`'s public methods of the same names delegate to one `LockOperator`; the admin router and
 * the CLI call those methods. The validators are exported for callers that check input before they
 * have a DbMutex (the router's and the CLI's own parsing).
 */
import type { EventRow, LockRow, LockStore } from './dialects/types';
import { mergeHistory, type DbMutexHistoryEntry } from './history';
import { DEFAULT_EVENTS_LIMIT, DEFAULT_HISTORY_LIMIT, MAX_EVENTS_LIMIT, MAX_HISTORY_LIMIT, MAX_LIST_LIMIT, MAX_REASON_LENGTH } from './limits';
import { optionKeys, rejectUnknownOptions, validateDays, validateHolder, validateLockId, validateOptionsObject } from './options';

export interface ListOptions {
  /** Only lock ids containing this text (plain substring, case-sensitive). */
  filter?: string | null;
  /** Only expired locks and locks whose heartbeat is overdue. */
  staleOnly?: boolean;
  /** At most this many rows; default: all. */
  limit?: number | null;
  /** Keyset cursor: the last row of the previous page. */
  after?: { acquiredAt: Date; lockId: string } | null;
}

export interface ForceReleaseOptions {
  lockId: string;
  /** Release only this exact acquisition; a re-acquired lock is left alone. */
  fencingToken?: number | null;
  /** Who did it, for the audit trail. */
  operator: string;
  reason?: string | null;
}

/** Options of `releaseStale` and `purgeExpired`. */
export interface AuditOptions {
  /** Who did it, for the audit trail. */
  operator: string;
  reason?: string | null;
}

/** Options of `events`. */
export interface EventsOptions {
  /** At most this many entries, newest first; default 50, at most 100000. */
  limit?: number;
  /** Only this lock id's entries. */
  lockId?: string | null;
}

/** Options of `history`. */
export interface HistoryOptions {
  lockId: string;
  /** At most this many entries, newest first; default 100, at most 10000. */
  limit?: number;
}

/** Options of `purgeHistory`. */
export interface PurgeHistoryOptions {
  /** Delete entries that ended more than this many days ago; default: the DbMutex's `historyRetentionDays`. */
  olderThanDays?: number;
}

/** Options of `semaphores`. */
export interface SemaphoresOptions {
  /** Only semaphore ids containing this text (plain substring, case-sensitive). */
  filter?: string | null;
  /** At most this many permits in all (rows), default and at most 1000000000. */
  limit?: number | null;
}

/** One counting semaphore as operators see it: one entry, its permits' holders below it. */
export interface SemaphoreEntry {
  semaphoreId: string;
  /** The limit its holders acquired it with (the largest, should they differ). */
  limit: number;
  /** Permits held and live (not expired) now, by the database clock. */
  used: number;
  /** One row per permit row (held, or expired and not yet taken over), by permit number. */
  holders: LockRow[];
}

export type ForceReleaseResult =
  | { status: 'released'; event: EventRow }
  | { status: 'not-found' }
  | { status: 'token-mismatch'; currentFencingToken: number };

const LIST_OPTION_KEYS = optionKeys<ListOptions>({ filter: true, staleOnly: true, limit: true, after: true });
const FORCE_RELEASE_OPTION_KEYS = optionKeys<ForceReleaseOptions>({ lockId: true, fencingToken: true, operator: true, reason: true });
const AUDIT_OPTION_KEYS = optionKeys<AuditOptions>({ operator: true, reason: true });
const EVENTS_OPTION_KEYS = optionKeys<EventsOptions>({ limit: true, lockId: true });
const SEMAPHORES_OPTION_KEYS = optionKeys<SemaphoresOptions>({ filter: true, limit: true });
const HISTORY_OPTION_KEYS = optionKeys<HistoryOptions>({ lockId: true, limit: true });
const PURGE_HISTORY_OPTION_KEYS = optionKeys<PurgeHistoryOptions>({ olderThanDays: true });

export class LockOperator {
  /**
   * `released`: told of the audit rows of every operator release, once it committed, so the
   * process that holds those locks through this store learns it at once.
   */
  constructor(
    private readonly store: LockStore,
    private readonly released: (events: EventRow[]) => void = () => undefined,
  ) {}

  /** Active locks (held, or expired and not yet taken over), oldest first. */
  list(options: ListOptions = {}): Promise<LockRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, LIST_OPTION_KEYS, 'mutex.list');
    const limit = options.limit ?? null;
    if (limit !== null && (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT)) {
      throw new RangeError(`limit must be a positive integer, got ${String(limit)}`);
    }
    const filter = validateFilter(options.filter ?? null);
    const after = options.after ?? null;
    if (after !== null) {
      if (!(after.acquiredAt instanceof Date) || Number.isNaN(after.acquiredAt.getTime())) {
        throw new TypeError('after.acquiredAt must be a valid Date');
      }
      validateLockId(after.lockId, 'after.lockId');
    }
    return this.store.list({ filter, staleOnly: options.staleOnly === true, limit: limit ?? MAX_LIST_LIMIT, after });
  }

  /** Number of active locks and how many of them are stale. */
  async counts(filter: string | null = null): Promise<{ total: number; stale: number; active: number }> {
    const c = await this.store.counts(validateFilter(filter));
    return { ...c, active: c.total - c.stale };
  }

  /**
   * Counting semaphores with permit rows, by semaphore id: each one entry with `used / limit` and its
   * holders (force-release one with `forceRelease({ lockId: holder.lockId, fencingToken })`).
   */
  async semaphores(options: SemaphoresOptions = {}): Promise<SemaphoreEntry[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, SEMAPHORES_OPTION_KEYS, 'mutex.semaphores');
    const limit = options.limit ?? MAX_LIST_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new RangeError(`limit must be a positive integer, got ${String(limit)}`);
    }
    const rows = await this.store.listPermits({ filter: validateFilter(options.filter ?? null), limit });
    const entries = new Map<string, SemaphoreEntry>();
    for (const row of rows) {
      const id = row.semaphoreId!;
      let entry = entries.get(id);
      if (!entry) entries.set(id, (entry = { semaphoreId: id, limit: 0, used: 0, holders: [] }));
      entry.holders.push(row);
      entry.limit = Math.max(entry.limit, row.limit ?? 0);
      if (row.expiresAt === null || row.expiresAt.getTime() > row.dbNow.getTime()) entry.used++;
    }
    return [...entries.values()];
  }

  /** The current row of one lock, or null when nobody holds it. */
  inspect(lockId: string): Promise<LockRow | null> {
    return this.store.inspect(validateLockId(lockId));
  }

  /**
   * Deletes the lock row (optionally only the exact acquisition named by its fencing token) and
   * records it in the audit table, atomically.
   */
  async forceRelease(options: ForceReleaseOptions): Promise<ForceReleaseResult> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, FORCE_RELEASE_OPTION_KEYS, 'mutex.forceRelease');
    const lockId = validateLockId(options.lockId);
    const fencingToken = validateFencingToken(options.fencingToken ?? null);
    const audit = validateAudit(options);
    const [event] = this.tell(await this.store.forceRelease({ lockId, fencingToken }, audit));
    if (event) return { status: 'released', event };
    const current = await this.store.inspect(lockId);
    if (!current) return { status: 'not-found' };
    return { status: 'token-mismatch', currentFencingToken: current.fencingToken };
  }

  /** Force-releases every stale lock (expired or heartbeat overdue), audited. */
  async releaseStale(options: AuditOptions): Promise<EventRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, AUDIT_OPTION_KEYS, 'mutex.releaseStale');
    return this.tell(await this.store.releaseStale(validateAudit(options)));
  }

  /** Deletes expired rows (nobody can be relying on them), audited as `purge-expired`. */
  async purgeExpired(options: AuditOptions): Promise<EventRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, AUDIT_OPTION_KEYS, 'mutex.purgeExpired');
    return this.tell(await this.store.purgeExpired(validateAudit(options)));
  }

  /** The audit trail, newest first. */
  events(options: EventsOptions = {}): Promise<EventRow[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, EVENTS_OPTION_KEYS, 'mutex.events');
    const limit = options.limit ?? DEFAULT_EVENTS_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_EVENTS_LIMIT) {
      throw new RangeError(`limit must be an integer between 1 and ${MAX_EVENTS_LIMIT}, got ${String(limit)}`);
    }
    const lockId = options.lockId == null ? null : validateLockId(options.lockId);
    return this.store.events(limit, lockId);
  }

  /**
   * How the recent acquisitions of one lock ended, newest first: from the history table and, for
   * operator actions, the audit trail (see src/history.ts).
   */
  async history(options: HistoryOptions): Promise<DbMutexHistoryEntry[]> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, HISTORY_OPTION_KEYS, 'mutex.history');
    const lockId = validateLockId(options.lockId);
    const limit = options.limit ?? DEFAULT_HISTORY_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_HISTORY_LIMIT) {
      throw new RangeError(`limit must be an integer between 1 and ${MAX_HISTORY_LIMIT}, got ${String(limit)}`);
    }
    const [rows, events] = await Promise.all([this.store.history(lockId, limit), this.store.events(limit, lockId)]);
    return mergeHistory(rows, events, limit);
  }

  /** Deletes history entries that ended more than `olderThanDays` ago (default `defaultDays`); how many. */
  async purgeHistory(options: PurgeHistoryOptions, defaultDays: number): Promise<number> {
    validateOptionsObject(options);
    rejectUnknownOptions(options, PURGE_HISTORY_OPTION_KEYS, 'mutex.purgeHistory');
    return this.store.purgeHistory(options.olderThanDays === undefined ? defaultDays : validateDays(options.olderThanDays, 'olderThanDays'));
  }

  /** Makes every fencing token handed out from now on greater than `floor` (see DbMutex.advanceFencingTokens). */
  async advanceFencingTokens(floor: number): Promise<void> {
    if (typeof floor !== 'number' || !Number.isSafeInteger(floor) || floor < 0) {
      throw new RangeError(`floor must be a non-negative safe integer, got ${typeof floor === 'number' ? floor : typeof floor}`);
    }
    await this.store.fencingFloor(floor);
  }

  private tell(events: EventRow[]): EventRow[] {
    this.released(events);
    return events;
  }
}

/** A lock-id filter: plain text; '' and null both mean "no filter" (null). */
export function validateFilter(value: unknown): string | null {
  if (value === null || value === '') return null;
  if (typeof value !== 'string') throw new TypeError('filter must be a string');
  if (value.includes('\0') || !value.isWellFormed()) throw new TypeError('filter must be well-formed text without NUL characters');
  return value;
}

export function validateFencingToken(value: unknown): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`fencingToken must be a positive integer, got ${typeof value === 'number' ? value : typeof value}`);
  }
  return value;
}

/** An audit reason: '' and null both mean none; at most MAX_REASON_LENGTH characters. */
export function validateReason(value: unknown): string | null {
  if (value === null || value === '') return null;
  if (typeof value !== 'string') throw new TypeError('reason must be a string');
  if (value.includes('\0') || !value.isWellFormed()) throw new TypeError('reason must be well-formed text without NUL characters');
  if ([...value].length > MAX_REASON_LENGTH) throw new RangeError(`reason must be at most ${MAX_REASON_LENGTH} characters`);
  return value;
}

function validateAudit(options: AuditOptions): { operator: string; reason: string | null } {
  return { operator: validateHolder(options.operator, 'operator'), reason: validateReason(options.reason ?? null) };
}
