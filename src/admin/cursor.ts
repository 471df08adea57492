/**
 * Keyset page cursors for the lock list: an opaque, URL-safe token naming the last row shown.
 *
 * Why the cursor carries more than (acquiredAt, lockId): `acquired_at` has microsecond precision
 * in the database but a JavaScript Date keeps whole milliseconds, so a cursor built from the last
 * row's Date sits slightly *before* that row and `mutex.list({ after })` returns it (and any
 * neighbour in the same millisecond) again. The cursor therefore also remembers short hashes of the
 * rows already shown within that last millisecond, and the next page skips exactly those. (If the
 * row times become millisecond-exact one day, the skip list simply never matches anything.)
 */
import { createHash } from 'node:crypto';
import type { LockRow } from '../dialects/types';
import { validateLockId } from '../options';
import { InputError } from '../input-error';

export interface PageCursor {
  /** Database-clock acquisition time of the last row shown, in whole milliseconds. */
  acquiredMs: number;
  lockId: string;
  /** Hashes of rows already shown whose acquisition falls in the millisecond `acquiredMs`. */
  seen: string[];
}

/** Bounds the cursor's length (it travels in URLs) even if very many locks share one millisecond. */
const MAX_SEEN = 200;
const MAX_CURSOR_LENGTH = 8192;
const HASH = /^[A-Za-z0-9_-]{11}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/**
 * The instants every supported database can compare a cursor with: MySQL/MariaDB DATETIME and SQLite's
 * date functions cover years 1000 (MariaDB: documented from 1000) to 9999; PostgreSQL covers far more.
 * A real row's time always lies inside, so only a crafted cursor can fall outside, and that must be a
 * 400 here rather than a database error (PostgreSQL) or a silently wrong page (the others).
 */
export const EARLIEST_CURSOR_MS = Date.UTC(1000, 0, 1);
export const LATEST_CURSOR_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

export function rowHash(lockId: string): string {
  return createHash('sha256').update(lockId).digest().subarray(0, 8).toString('base64url');
}

export function encodeCursor(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify([cursor.acquiredMs, cursor.lockId, cursor.seen])).toString('base64url');
}

export function decodeCursor(raw: string | undefined): PageCursor | null {
  if (raw === undefined || raw === '') return null;
  const invalid = () => new InputError('cursor', 'The page cursor ("after") is not valid; start again from the first page.');
  if (raw.length > MAX_CURSOR_LENGTH || !BASE64URL.test(raw)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed.length !== 3) throw invalid();
  const [acquiredMs, lockId, seen] = parsed as unknown[];
  if (typeof acquiredMs !== 'number' || !Number.isSafeInteger(acquiredMs)) throw invalid();
  if (acquiredMs < EARLIEST_CURSOR_MS || acquiredMs > LATEST_CURSOR_MS) throw invalid();
  try {
    validateLockId(lockId);
  } catch {
    throw invalid();
  }
  if (!Array.isArray(seen) || seen.length > MAX_SEEN || !seen.every((h) => typeof h === 'string' && HASH.test(h))) {
    throw invalid();
  }
  return { acquiredMs, lockId: lockId as string, seen: seen as string[] };
}

/** What `mutex.list` needs to fetch a page after `cursor` that still has `pageSize` rows once seen ones are skipped. */
export function listWindow(cursor: PageCursor | null, pageSize: number) {
  return {
    after: cursor ? { acquiredAt: new Date(cursor.acquiredMs), lockId: cursor.lockId } : null,
    // One extra row tells whether another page follows.
    limit: pageSize + 1 + (cursor ? cursor.seen.length : 0),
  };
}

/** Drops rows the previous page already showed, cuts the page, and builds the cursor of the next one. */
export function takePage(rows: LockRow[], cursor: PageCursor | null, pageSize: number): { page: LockRow[]; next: PageCursor | null } {
  const seen = new Set(cursor?.seen ?? []);
  const fresh = cursor
    ? rows.filter((row) => !(row.acquiredAt.getTime() === cursor.acquiredMs && seen.has(rowHash(row.lockId))))
    : rows;
  const page = fresh.slice(0, pageSize);
  const last = page[page.length - 1];
  if (fresh.length <= pageSize || !last) return { page, next: null };
  const lastMs = last.acquiredAt.getTime();
  // Rows of the last millisecond may span several pages: keep the earlier pages' hashes too.
  const carried = cursor && cursor.acquiredMs === lastMs ? cursor.seen : [];
  const shownHere = page.filter((row) => row.acquiredAt.getTime() === lastMs).map((row) => rowHash(row.lockId));
  return { page, next: { acquiredMs: lastMs, lockId: last.lockId, seen: [...carried, ...shownHere].slice(-MAX_SEEN) } };
}
