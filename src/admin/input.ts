/**
 * Parsing of everything a request can carry into the admin router: query string, form or JSON body,
 * the lock id in the path. Every rejection is an InputError naming the field (the router answers it
 * with a 400, see input-error.ts) whose message says what was wrong; nothing here touches the
 * database, so rejected input never writes anything.
 */
import { checkInput, InputError, type InputField } from '../input-error';
import { validateLockId } from '../options';
import { AdminHttpError, quote } from './http-error';

/**
 * The query string, parsed here rather than through `req.query`: the host app's `query parser`
 * setting (simple, extended, or custom) must not change what this router accepts.
 */
export function queryOf(url: string): URLSearchParams {
  const at = url.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : url.slice(at + 1));
}

/** The field behind each parameter a user gives; the others (`_csrf`, `flash`) are written by the router itself. */
const PARAMETER_FIELDS: Readonly<Record<string, InputField>> = {
  lockId: 'lockId',
  fencingToken: 'fencingToken',
  filter: 'filter',
  reason: 'reason',
  limit: 'limit',
  after: 'cursor',
  stale: 'stale',
  refresh: 'refresh',
};

/** A parameter of the wrong shape: its field's error, or INVALID_PARAMETER for the router's own hidden ones. */
function badParameter(name: string, message: string): Error {
  const field = Object.prototype.hasOwnProperty.call(PARAMETER_FIELDS, name) ? PARAMETER_FIELDS[name] : undefined;
  return field ? new InputError(field, message) : new AdminHttpError(400, 'INVALID_PARAMETER', message);
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
  if (values.length > 1) throw badParameter(name, `Parameter "${name}" was given more than once.`);
  const v = values[0];
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v !== 'string') throw badParameter(name, `Parameter "${name}" must be text.`);
  return v;
}

/** A DELETE may name its options in the query string or a JSON body (not both). */
export function fromQueryOrBody(q: URLSearchParams, body: unknown, name: 'fencingToken' | 'reason'): unknown {
  const inQuery = single(q, name);
  const inBody =
    typeof body === 'object' && body !== null && Object.prototype.hasOwnProperty.call(body, name)
      ? (body as Record<string, unknown>)[name]
      : undefined;
  if (inQuery !== undefined && inBody !== undefined) {
    throw new InputError(name, `Give "${name}" in the query string or in the body, not both.`);
  }
  return inQuery ?? inBody;
}

export function parseLockId(raw: string | undefined, parameter = 'lockId'): string {
  if (raw === undefined) throw new InputError('lockId', `${parameter} is required.`);
  return checkInput('lockId', () => validateLockId(raw, parameter));
}

/** The lock id of `/api/locks/<id>`: the rest of the path, %-decoded exactly once. */
export function lockIdFromPath(rest: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    throw new InputError('lockId', 'The lock id in the URL is not valid %-encoding.');
  }
  return parseLockId(decoded);
}

/** The lock-id text filter: empty means none. A filter longer than any lock id could never match. */
export function parseFilter(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null;
  return checkInput('filter', () => validateLockId(raw, 'filter'));
}

const DIGITS = /^[0-9]{1,16}$/;

/**
 * A fencing token names one exact acquisition. Accepts a JSON number or decimal digits; refuses
 * -1, 1.5, 1e3, 'abc', 1e400 and anything beyond 2^53 rather than guessing.
 */
export function parseFencingToken(raw: unknown, { required }: { required: boolean }): number | null {
  if (raw === undefined) {
    if (required) throw new InputError('fencingToken', 'fencingToken is required.');
    return null;
  }
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && DIGITS.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    const shown = typeof raw === 'string' ? quote(raw) : typeof raw === 'number' ? String(raw) : typeof raw;
    throw new InputError('fencingToken', `fencingToken must be a positive whole number, got ${shown}.`);
  }
  return n;
}

/**
 * Free-text reason for the audit trail: text or nothing (a JSON body may send anything). The DbMutex
 * enforces its length and character rules.
 */
export function parseReason(raw: unknown): string | null {
  if (raw !== undefined && raw !== null && typeof raw !== 'string') throw new InputError('reason', '"reason" must be text.');
  const reason = typeof raw === 'string' ? raw.trim() : '';
  return reason === '' ? null : reason;
}

export function parseLimit(raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = DIGITS.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new InputError('limit', `limit must be a whole number from 1 to ${max}, got ${quote(raw)}.`);
  }
  return n;
}

/** The `stale` switch, the one yes/no parameter. */
export function parseStale(raw: string | undefined): boolean {
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new InputError('stale', `stale must be true or false, got ${quote(raw)}.`);
}

/** Auto-refresh choices offered by the page, in seconds (0 = off). */
export const REFRESH_CHOICES = [0, 5, 30] as const;
export type RefreshSeconds = (typeof REFRESH_CHOICES)[number];

export function parseRefresh(raw: string | undefined): RefreshSeconds {
  if (raw === undefined || raw === '') return 0;
  const found = REFRESH_CHOICES.find((choice) => String(choice) === raw);
  if (found === undefined) {
    throw new InputError('refresh', `refresh must be one of ${REFRESH_CHOICES.join(', ')} (seconds), got ${quote(raw)}.`);
  }
  return found;
}
