/**
 * How the dashboard and its JSON API present locks and audit events. Every age and countdown is
 * measured against the database clock carried on the row (`dbNow`), never this process's clock, so
 * a web server whose clock is off still shows the truth an acquirer will act on.
 */
import type { EventRow, LockRow } from '../dialects/types';

/**
 * A duration the way an operator reads it: "42 s", "3 min 12 s", "2 h 5 min", "3 d 4 h".
 * Two units at most; sub-second durations read "< 1 s". Negative input is treated as zero.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 1000) return '< 1 s';
  const totalSeconds = Math.floor(ms / 1000);
  const days = Math.floor(totalSeconds / 86_400);
  const hours = Math.floor((totalSeconds % 86_400) / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  if (days > 0) return hours > 0 ? `${days} d ${hours} h` : `${days} d`;
  if (hours > 0) return minutes > 0 ? `${hours} h ${minutes} min` : `${hours} h`;
  if (minutes > 0) return seconds > 0 ? `${minutes} min ${seconds} s` : `${minutes} min`;
  return `${seconds} s`;
}

/** "2026-11-26 23:25:26 UTC": unambiguous for operators in several time zones. */
export function formatUtc(date: Date): string {
  return `${formatUtcBare(date)} UTC`;
}

/** "2026-11-26 23:25:26", for table columns whose heading already says UTC. */
export function formatUtcBare(date: Date): string {
  return date.toISOString().slice(0, 19).replace('T', ' ');
}

export type LockStatus = 'active' | 'stale';

/** Who holds a lock, as stored: the same on the page, in the JSON API and in the CLI. */
type LockHolder = Pick<LockRow, 'lockId' | 'fencingToken' | 'holder' | 'hostname' | 'pid'>;

function lockHolder(row: LockRow): LockHolder {
  const { lockId, fencingToken, holder, hostname, pid } = row;
  return { lockId, fencingToken, holder, hostname, pid };
}

/** A lock row prepared for the HTML table: every cell already a display string. */
export interface LockView extends LockHolder {
  acquiredUtc: string;
  acquiredText: string;
  acquiredIso: string;
  age: string;
  expiresIn: string;
  expiresIso: string | null;
  heartbeat: string;
  heartbeatIso: string | null;
  status: LockStatus;
  /** Why a stale lock is stale (tooltip of the badge), or what keeps an active one alive. */
  statusDetail: string;
  /** What else the row is, as a short mark beside its id: `permit 1 of exports (limit 3)`, `election`; null for a plain lock. */
  kindMark: string | null;
}

export function lockView(row: LockRow): LockView {
  const now = row.dbNow.getTime();
  return {
    ...lockHolder(row),
    acquiredUtc: formatUtc(row.acquiredAt),
    acquiredText: formatUtcBare(row.acquiredAt),
    acquiredIso: row.acquiredAt.toISOString(),
    age: formatDuration(now - row.acquiredAt.getTime()),
    expiresIn: describeExpiry(row),
    expiresIso: row.expiresAt ? row.expiresAt.toISOString() : null,
    heartbeat: row.leaseSeconds === null ? 'off' : `${formatDuration(now - row.heartbeatAt.getTime())} ago`,
    heartbeatIso: row.leaseSeconds === null ? null : row.heartbeatAt.toISOString(),
    status: row.stale ? 'stale' : 'active',
    statusDetail: describeStatus(row),
    kindMark:
      row.kind === 'semaphore' && row.semaphoreId !== null
        ? `permit ${row.permit ?? '?'} of ${row.semaphoreId} (limit ${row.limit ?? '?'})`
        : row.kind === 'lock'
          ? null
          : row.kind,
  };
}

function describeExpiry(row: LockRow): string {
  if (row.expiresAt === null) return 'never';
  const left = row.expiresAt.getTime() - row.dbNow.getTime();
  return left > 0 ? `in ${formatDuration(left)}` : `expired ${formatDuration(-left)} ago`;
}

function describeStatus(row: LockRow): string {
  const now = row.dbNow.getTime();
  if (row.expiresAt !== null && row.expiresAt.getTime() <= now) {
    return 'Expired: the next acquirer takes it over; nobody is protected by it any more.';
  }
  if (row.stale) {
    // The only other way a row is stale: its heartbeat is overdue (see the dialect's STALE condition).
    return `Heartbeat overdue: last renewal ${formatDuration(now - row.heartbeatAt.getTime())} ago, ` +
      `lease ${row.leaseSeconds ?? '?'} s. The holder may have crashed or lost its database connection.`;
  }
  if (row.leaseSeconds === null) return 'Held without heartbeat until its TTL.';
  return `Heartbeat every ${formatDuration((row.leaseSeconds * 1000) / 3)} (lease ${row.leaseSeconds} s).`;
}

/** What an audit event shows as stored, on the page and in the JSON API alike. */
type EventIdentity = Pick<EventRow, 'id' | 'action' | 'lockId' | 'fencingToken' | 'holder' | 'hostname' | 'pid'>;

function eventIdentity(event: EventRow): EventIdentity {
  const { id, action, lockId, fencingToken, holder, hostname, pid } = event;
  return { id, action, lockId, fencingToken, holder, hostname, pid };
}

/** An audit event prepared for the HTML table. */
export interface EventView extends EventIdentity {
  heldFor: string;
  operator: string;
  reason: string | null;
  createdUtc: string;
  createdText: string;
  createdIso: string;
}

export function eventView(event: EventRow): EventView {
  return {
    ...eventIdentity(event),
    heldFor: formatDuration(event.ageSeconds * 1000),
    operator: event.operator,
    reason: event.reason,
    createdUtc: formatUtc(event.createdAt),
    createdText: formatUtcBare(event.createdAt),
    createdIso: event.createdAt.toISOString(),
  };
}

/** A lock row in the JSON API: ISO timestamps plus the derived numbers the page shows. */
export function lockJson(row: LockRow) {
  const now = row.dbNow.getTime();
  return {
    ...lockHolder(row),
    status: row.stale ? ('stale' as const) : ('active' as const),
    stale: row.stale,
    acquiredAt: row.acquiredAt.toISOString(),
    expiresAt: row.expiresAt ? row.expiresAt.toISOString() : null,
    deadlineAt: row.deadlineAt ? row.deadlineAt.toISOString() : null,
    heartbeatAt: row.heartbeatAt.toISOString(),
    leaseSeconds: row.leaseSeconds,
    ageSeconds: (now - row.acquiredAt.getTime()) / 1000,
    expiresInSeconds: row.expiresAt ? (row.expiresAt.getTime() - now) / 1000 : null,
    dbNow: row.dbNow.toISOString(),
    kind: row.kind,
    semaphoreId: row.semaphoreId,
    permit: row.permit,
    limit: row.limit,
  };
}

/** An audit event in the JSON API (and the CLI's --json): ISO timestamps, the age in seconds. */
export function eventJson(event: EventRow) {
  return {
    ...eventIdentity(event),
    acquiredAt: event.acquiredAt.toISOString(),
    ageSeconds: event.ageSeconds,
    operator: event.operator,
    reason: event.reason,
    createdAt: event.createdAt.toISOString(),
  };
}
