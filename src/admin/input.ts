/**
 * Parsing of everything a request can carry into the admin router: query string, form or JSON body,
 * the lock id in the path. Every rejection is an AdminHttpError (4xx) whose message says what was
 * wrong; nothing here touches the database, so rejected input never writes anything.
 */
import { validateLockId } from '../options';
import { AdminHttpError, quote, type AdminErrorCode } from './http-error';

/**
 * The query string, parsed here rather than through `req.query`: the host app's `query parser`
 * setting (simple, extended, or custom) must not change what this router accepts.
 */
export function queryOf(url: string): URLSearchParams {
  const at = url.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : url.slice(at + 1));
}

/** One named value of a query string or body: absent, or exactly one piece of text. */
export function single(source: URLSearchParams | unknown, name: string): string | undefined {
  let values: unknown[];
  if (source instanceof URLSearchParams) {
    values = source.getAll(name);
  } else if (typeof source === 'object' && source !== null && Object.prototype.hasOwnProperty.call(source, name)) {
    const v = (source as Record<string, unknown>)[name];
    values = Array.isArray(v) ? v : [v];
  } else {
    values = [];
  }
  if (values.length === 0 || (values.length === 1 && values[0] === undefined)) return undefined;
  if (values.length > 1) throw new AdminHttpError(400, 'INVALID_PARAMETER', `Parameter "${name}" was given more than once.`);
  const v = values[0];
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v !== 'string') throw new AdminHttpError(400, 'INVALID_PARAMETER', `Parameter "${name}" must be text.`);
  return v;
}

function checked<T>(code: AdminErrorCode, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) throw new AdminHttpError(400, code, error.message);
    throw error;
  }
}

export function parseLockId(raw: string | undefined, parameter = 'lockId'): string {
  if (raw === undefined) throw new AdminHttpError(400, 'INVALID_LOCK_ID', `${parameter} is required.`);
  return checked('INVALID_LOCK_ID', () => validateLockId(raw, parameter));
}

/** The lock-id text filter: empty means none. A filter longer than any lock id could never match. */
export function parseFilter(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null;
  return checked('INVALID_FILTER', () => validateLockId(raw, 'filter'));
}

const DIGITS = /^[0-9]{1,16}$/;

/**
 * A fencing token names one exact acquisition. Accepts a JSON number or decimal digits; refuses
 * -1, 1.5, 1e3, 'abc', 1e400 and anything beyond 2^53 rather than guessing.
 */
export function parseFencingToken(raw: unknown, { required }: { required: boolean }): number | null {
  if (raw === undefined) {
    if (required) throw new AdminHttpError(400, 'INVALID_FENCING_TOKEN', 'fencingToken is required.');
    return null;
  }
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && DIGITS.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    const shown = typeof raw === 'string' ? quote(raw) : typeof raw === 'number' ? String(raw) : typeof raw;
    throw new AdminHttpError(400, 'INVALID_FENCING_TOKEN', `fencingToken must be a positive whole number, got ${shown}.`);
  }
  return n;
}

/** Free-text reason for the audit trail; the DbMutex enforces its length and character rules. */
export function parseReason(raw: string | undefined): string | null {
  const reason = raw?.trim() ?? '';
  return reason === '' ? null : reason;
}

export function parseLimit(raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = DIGITS.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new AdminHttpError(400, 'INVALID_PARAMETER', `limit must be a whole number from 1 to ${max}, got ${quote(raw)}.`);
  }
  return n;
}

export function parseBoolean(raw: string | undefined, name: string): boolean {
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new AdminHttpError(400, 'INVALID_PARAMETER', `${name} must be true or false, got ${quote(raw)}.`);
}

/** Auto-refresh choices offered by the page, in seconds (0 = off). */
export const REFRESH_CHOICES = [0, 5, 30] as const;
export type RefreshSeconds = (typeof REFRESH_CHOICES)[number];

export function parseRefresh(raw: string | undefined): RefreshSeconds {
  if (raw === undefined || raw === '') return 0;
  const found = REFRESH_CHOICES.find((choice) => String(choice) === raw);
  if (found === undefined) {
    throw new AdminHttpError(400, 'INVALID_PARAMETER', `refresh must be one of ${REFRESH_CHOICES.join(', ')} (seconds), got ${quote(raw)}.`);
  }
  return found;
}
