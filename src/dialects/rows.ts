/**
 * Row parsing shared by every dialect. Each dialect's SQL returns the same column aliases, with
 * instants as epoch milliseconds (numbers or numeric strings) and 64-bit integers as text, so no
 * type parser of the host app or of the driver (Date, BigInt, DECIMAL) ever touches lock data.
 */
import type { Acquisition, AcquisitionFields, CurrentHolder, EventRow, HistoryRow, LockRow, Rows, SemaphoreAcquireParams, SemaphoreAttempt } from './types';

export function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

export function date(v: unknown): Date {
  return new Date(num(v));
}

export function dateOrNull(v: unknown): Date | null {
  return v === null || v === undefined ? null : new Date(num(v));
}

/** SQL booleans arrive as true (PostgreSQL), 1 / 1n / '1' (MariaDB, SQLite) or NULL. */
export function truthy(v: unknown): boolean {
  return v !== null && v !== undefined && Number(v) === 1;
}

/**
 * Columns: won (absent where only a won acquisition returns a row), fencing_token, acquired_ms,
 * expires_ms; on a refusal, where the database reports it, holder and expires_ms of the live row.
 */
export function parseAcquisition(rows: Rows): Acquisition {
  const r = rows[0];
  if (!r || (r.won !== undefined && !truthy(r.won))) return { won: false, holder: parseHolderRow(rows) };
  return { won: true, fencingToken: num(r.fencing_token), acquiredAt: date(r.acquired_ms), expiresAt: dateOrNull(r.expires_ms) };
}

/** Column: expired (of the row our release removed); no row: it was not ours any more. */
export function parseRelease(rows: Rows): { expired: boolean } | null {
  const r = rows[0];
  return r ? { expired: truthy(r.expired) } : null;
}

/** Column: owner_token (renew, classify). */
export function parseOwnerTokens(rows: Rows): Set<string> {
  return new Set(rows.map((r) => String(r.owner_token)));
}

/** Columns: expires_ms, deadline_ms (the extended row); no row: not extended. */
export function parseExtend(rows: Rows): { expiresAt: Date | null; deadlineAt: Date | null } | null {
  const r = rows[0];
  return r ? { expiresAt: dateOrNull(r.expires_ms), deadlineAt: dateOrNull(r.deadline_ms) } : null;
}

/** Columns: total, stale. */
export function parseCounts(rows: Rows): { total: number; stale: number } {
  const r = rows[0] ?? {};
  return { total: num(r.total ?? 0), stale: num(r.stale ?? 0) };
}

/** Columns: holder, expires_ms (the first row), as a refused acquire statement returns them. */
export function parseHolderRow(rows: Rows): CurrentHolder | null {
  const r = rows[0];
  if (!r || typeof r.holder !== 'string') return null;
  return { holder: r.holder, expiresAt: dateOrNull(r.expires_ms) };
}

/** Columns: lock_id, fencing_token, holder, hostname, pid, acquired_ms (of lock rows and audit rows alike). */
function acquisitionFields(r: Record<string, unknown>): AcquisitionFields {
  return {
    lockId: String(r.lock_id),
    fencingToken: num(r.fencing_token),
    holder: String(r.holder),
    hostname: String(r.hostname),
    pid: num(r.pid),
    acquiredAt: date(r.acquired_ms),
  };
}

/**
 * Columns: lock_id, holder, hostname, pid, fencing_token, acquired_ms, expires_ms, deadline_ms,
 * heartbeat_ms, lease_seconds, now_ms, stale, kind, semaphore_id, permit, permit_limit.
 */
export function parseLockRows(rows: Rows): LockRow[] {
  return rows.map((r) => ({
    ...acquisitionFields(r),
    expiresAt: dateOrNull(r.expires_ms),
    deadlineAt: dateOrNull(r.deadline_ms),
    heartbeatAt: date(r.heartbeat_ms),
    leaseSeconds: r.lease_seconds === null || r.lease_seconds === undefined ? null : num(r.lease_seconds),
    dbNow: date(r.now_ms),
    stale: truthy(r.stale),
    kind: typeof r.kind === 'string' ? r.kind : 'lock',
    semaphoreId: typeof r.semaphore_id === 'string' ? r.semaphore_id : null,
    permit: r.permit === null || r.permit === undefined ? null : num(r.permit),
    limit: r.permit_limit === null || r.permit_limit === undefined ? null : num(r.permit_limit),
  }));
}

/** Columns: lock_id, fencing_token, holder, hostname, pid, acquired_ms, ended_ms, outcome, detail. */
export function parseHistoryRows(rows: Rows): HistoryRow[] {
  return rows.map((r) => ({
    ...acquisitionFields(r),
    endedAt: date(r.ended_ms),
    outcome: r.outcome === 'lost' || r.outcome === 'expired' ? r.outcome : 'released',
    detail: typeof r.detail === 'string' ? r.detail : null,
  }));
}

/** Column: n (a count, as a number or numeric text). */
export function parseCount(rows: Rows): number {
  return rows[0] ? num(rows[0].n) : 0;
}

/**
 * Columns: id, action, lock_id, fencing_token, holder, hostname, pid, acquired_ms, age_seconds,
 * operator, reason, created_ms.
 */
export function parseEventRows(rows: Rows): EventRow[] {
  return rows.map((r) => ({
    id: num(r.id),
    action: String(r.action),
    ...acquisitionFields(r),
    ageSeconds: num(r.age_seconds),
    operator: String(r.operator),
    reason: typeof r.reason === 'string' ? r.reason : null,
    createdAt: date(r.created_ms),
  }));
}

/**
 * Where an audited release returns each event as one JSON text column (`event`): the dialects whose
 * DELETE … RETURNING can only reach the audit row through a scalar subquery.
 */
export function parseJsonEventRows(rows: Rows): EventRow[] {
  // Some drivers (the mariadb connector) already decode JSON-typed columns.
  return parseEventRows(
    rows.map((r) => (typeof r.event === 'string' ? JSON.parse(r.event) : r.event) as Record<string, unknown>),
  );
}

/** The row key of permit `permit` of semaphore `semaphoreId` (see src/semaphore.ts for why this shape). */
export function permitKey(semaphoreId: string, permit: number): string {
  return `${semaphoreId}/permit/${permit}`;
}

/**
 * Columns of a semaphore acquisition: outcome ('won' …), fencing_token, acquired_ms, expires_ms, permit
 * (won); used, current_limit, holder, expires_ms (refused). A dialect whose statement returns its row
 * only when it won passes `outcome` undefined and gets 'won'.
 */
export function parseSemaphoreRow(rows: Rows, p: SemaphoreAcquireParams): SemaphoreAttempt | null {
  const r = rows[0];
  if (!r) return null;
  const outcome = typeof r.outcome === 'string' ? r.outcome : 'won';
  if (outcome === 'won') {
    const permit = num(r.permit);
    return {
      outcome: 'won',
      permit,
      lockId: permitKey(p.semaphoreId, permit),
      fencingToken: num(r.fencing_token),
      acquiredAt: date(r.acquired_ms),
      expiresAt: dateOrNull(r.expires_ms),
    };
  }
  if (outcome !== 'full' && outcome !== 'mismatch' && outcome !== 'raced') throw new Error(`unexpected semaphore outcome ${outcome}`);
  return {
    outcome,
    used: num(r.used ?? 0),
    currentLimit: r.current_limit === null || r.current_limit === undefined ? p.limit : num(r.current_limit),
    holder: typeof r.holder === 'string' ? { holder: r.holder, expiresAt: dateOrNull(r.expires_ms) } : null,
  };
}

/**
 * Columns of `semaphoreState`: used, min_limit, max_limit, holder, expires_ms. Read after a statement
 * that took no permit, to say why: another limit among the live permits is a mismatch, else it was full.
 */
export function parseSemaphoreState(rows: Rows, p: SemaphoreAcquireParams): SemaphoreAttempt {
  const r = rows[0] ?? {};
  const limits = [r.min_limit, r.max_limit].filter((v) => v !== null && v !== undefined).map(num);
  const other = limits.find((l) => l !== p.limit);
  return {
    outcome: other === undefined ? 'full' : 'mismatch',
    used: num(r.used ?? 0),
    currentLimit: other ?? p.limit,
    holder: typeof r.holder === 'string' ? { holder: r.holder, expiresAt: dateOrNull(r.expires_ms) } : null,
  };
}
