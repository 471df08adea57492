/**
 * The dashboard's pure pieces, without a database: human durations, page cursors (including the
 * millisecond-window workaround), input parsing and signed messages.
 */
import { decodeCursor, EARLIEST_CURSOR_MS, encodeCursor, LATEST_CURSOR_MS, listWindow, rowHash, takePage } from '../src/admin/cursor';
import { Signer, checkSameOrigin, requestOrigins } from '../src/admin/csrf';
import { decodeFlash, encodeFlash } from '../src/admin/flash';
import { formatDuration, lockView } from '../src/admin/format';
import { AdminHttpError, asHttpError } from '../src/admin/http-error';
import { parseFencingToken, parseFilter, parseLimit, parseRefresh, queryOf, single } from '../src/admin/input';
import type { LockRow } from '../src';

function row(lockId: string, acquiredMs: number, extra: Partial<LockRow> = {}): LockRow {
  const now = new Date(acquiredMs + 60_000);
  return {
    lockId,
    fencingToken: 1,
    holder: 'h',
    hostname: 'host',
    pid: 1,
    acquiredAt: new Date(acquiredMs),
    expiresAt: new Date(acquiredMs + 120_000),
    deadlineAt: null,
    heartbeatAt: new Date(acquiredMs + 50_000),
    leaseSeconds: 60,
    dbNow: now,
    stale: false,
    kind: 'lock',
    semaphoreId: null,
    permit: null,
    limit: null,
    ...extra,
  };
}

/** The parsers throw; the router answers what they throw as `asHttpError` maps it (invalid input: a 400 naming the field). */
function expectHttpError(fn: () => unknown, status: number, code: string): void {
  try {
    fn();
  } catch (error) {
    const answer = asHttpError(error);
    expect(answer).toBeInstanceOf(AdminHttpError);
    expect(answer?.status).toBe(status);
    expect(answer?.code).toBe(code);
    return;
  }
  throw new Error('expected an error the router answers with a 4xx');
}

describe('formatDuration', () => {
  it('reads like an operator would say it, with at most two units', () => {
    expect(formatDuration(0)).toBe('< 1 s');
    expect(formatDuration(999)).toBe('< 1 s');
    expect(formatDuration(42_000)).toBe('42 s');
    expect(formatDuration(192_000)).toBe('3 min 12 s');
    expect(formatDuration(180_000)).toBe('3 min');
    expect(formatDuration(2 * 3_600_000 + 5 * 60_000 + 7_000)).toBe('2 h 5 min');
    expect(formatDuration(3 * 86_400_000 + 4 * 3_600_000)).toBe('3 d 4 h');
    expect(formatDuration(-5_000)).toBe('< 1 s');
    expect(formatDuration(Number.NaN)).toBe('< 1 s');
  });
});

describe('lockView', () => {
  it('measures age, expiry and heartbeat against the database clock on the row', () => {
    const view = lockView(row('a', 1_000_000));
    expect(view.age).toBe('1 min');
    expect(view.expiresIn).toBe('in 1 min');
    expect(view.heartbeat).toBe('10 s ago');
    expect(view.status).toBe('active');
  });

  it('explains why a lock is stale', () => {
    const expired = lockView(row('a', 0, { expiresAt: new Date(30_000), stale: true }));
    expect(expired.expiresIn).toBe('expired 30 s ago');
    expect(expired.statusDetail).toMatch(/^Expired/);
    const overdue = lockView(row('a', 0, { heartbeatAt: new Date(1_000), stale: true }));
    expect(overdue.statusDetail).toMatch(/^Heartbeat overdue: last renewal 59 s ago/);
    const noHeartbeat = lockView(row('a', 0, { leaseSeconds: null, expiresAt: null }));
    expect(noHeartbeat.heartbeat).toBe('off');
    expect(noHeartbeat.expiresIn).toBe('never');
  });
});

describe('page cursors', () => {
  it('round-trip through an opaque URL-safe string', () => {
    const cursor = { acquiredMs: 1_700_000_000_123, lockId: 'a/b c ü', seen: [rowHash('x')] };
    const encoded = encodeCursor(cursor);
    expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor(encoded)).toEqual(cursor);
    expect(decodeCursor(undefined)).toBeNull();
    expect(decodeCursor('')).toBeNull();
  });

  it('refuses anything that is not a cursor this router made', () => {
    const junk = [
      'abc!',
      'not-base64-json',
      Buffer.from('{"a":1}').toString('base64url'),
      Buffer.from('[1.5,"a",[]]').toString('base64url'),
      Buffer.from('[1,"",[]]').toString('base64url'),
      Buffer.from('[1,"a\\u0000",[]]').toString('base64url'),
      Buffer.from(`[1,"${'x'.repeat(256)}",[]]`).toString('base64url'),
      Buffer.from('[1,"a",["short"]]').toString('base64url'),
      Buffer.from('[1e400,"a",[]]').toString('base64url'),
      'A'.repeat(9000),
    ];
    for (const raw of junk) expectHttpError(() => decodeCursor(raw), 400, 'INVALID_CURSOR');
  });

  it('refuses times outside years 1000 to 9999, the range every supported database can compare', () => {
    const at = (ms: number) => encodeCursor({ acquiredMs: ms, lockId: 'a', seen: [] });
    expect(decodeCursor(at(EARLIEST_CURSOR_MS))?.acquiredMs).toBe(Date.parse('1000-01-01T00:00:00.000Z'));
    expect(decodeCursor(at(LATEST_CURSOR_MS))?.acquiredMs).toBe(Date.parse('9999-12-31T23:59:59.999Z'));
    for (const ms of [EARLIEST_CURSOR_MS - 1, LATEST_CURSOR_MS + 1, -210866803200001, 8.64e15, -8.64e15]) {
      expectHttpError(() => decodeCursor(at(ms)), 400, 'INVALID_CURSOR');
    }
  });

  it('pages through locks that share one millisecond without repeating or skipping any', () => {
    // The database keeps microseconds, a Date only milliseconds: `list({ after })` returns rows of
    // the cursor's millisecond again. Simulate it: every row below is in the same millisecond.
    const all = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((id) => row(id, 5_000));
    const listAfter = (cursor: ReturnType<typeof decodeCursor>, limit: number) =>
      // What the database does with a millisecond cursor: every row at or after that instant
      // (their real microseconds are later), ordered as stored.
      all.filter((r) => !cursor || r.acquiredAt.getTime() >= cursor.acquiredMs).slice(0, limit);
    const shown: string[] = [];
    let cursor: ReturnType<typeof decodeCursor> = null;
    for (let i = 0; i < 10; i++) {
      const { limit } = listWindow(cursor, 3);
      const { page, next } = takePage(listAfter(cursor, limit), cursor, 3);
      shown.push(...page.map((r) => r.lockId));
      if (!next) break;
      cursor = decodeCursor(encodeCursor(next));
    }
    expect(shown).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
  });

  it('says there is no next page when the last page is exactly full', () => {
    const rows = [row('a', 1), row('b', 2)];
    expect(takePage(rows, null, 2).next).toBeNull();
    expect(takePage([...rows, row('c', 3)], null, 2).next).toMatchObject({ acquiredMs: 2, lockId: 'b' });
  });
});

describe('input parsing', () => {
  it('accepts a positive whole fencing token as a number or digits', () => {
    expect(parseFencingToken(7, { required: true })).toBe(7);
    expect(parseFencingToken('42', { required: true })).toBe(42);
    expect(parseFencingToken(undefined, { required: false })).toBeNull();
  });

  it('refuses every other fencing token with a 400 that names it', () => {
    for (const bad of [-1, 0, 1.5, Infinity, Number.NaN, 2 ** 53, '-1', '1.5', 'abc', '1e3', '1e400', '', ' 1', '0', '99999999999999999', null, [1], {}]) {
      expectHttpError(() => parseFencingToken(bad, { required: false }), 400, 'INVALID_FENCING_TOKEN');
    }
    expectHttpError(() => parseFencingToken(undefined, { required: true }), 400, 'INVALID_FENCING_TOKEN');
  });

  it('reads the query string itself, refusing repeated parameters', () => {
    expect(single(queryOf('/x?filter=a%2Fb&y=1'), 'filter')).toBe('a/b');
    expect(single(queryOf('/x'), 'filter')).toBeUndefined();
    expectHttpError(() => single(queryOf('/x?filter=a&filter=b'), 'filter'), 400, 'INVALID_FILTER');
    expectHttpError(() => single({ filter: { $gt: '' } }, 'filter'), 400, 'INVALID_FILTER');
    // The router's own hidden fields are no field a user fills in.
    expectHttpError(() => single({ _csrf: ['a', 'b'] }, '_csrf'), 400, 'INVALID_PARAMETER');
  });

  it('refuses filters no lock id could match and junk limits or refresh periods', () => {
    expect(parseFilter('')).toBeNull();
    expectHttpError(() => parseFilter('a\0b'), 400, 'INVALID_FILTER');
    expectHttpError(() => parseFilter('x'.repeat(256)), 400, 'INVALID_FILTER');
    expectHttpError(() => parseLimit('0', 50, 500), 400, 'INVALID_LIMIT');
    expectHttpError(() => parseLimit('501', 50, 500), 400, 'INVALID_LIMIT');
    expectHttpError(() => parseLimit('1.5', 50, 500), 400, 'INVALID_LIMIT');
    expect(parseRefresh('30')).toBe(30);
    expectHttpError(() => parseRefresh('7'), 400, 'INVALID_REFRESH');
  });
});

describe('signing and origin checks', () => {
  it('shows a result message only when this router signed it', () => {
    const signer = new Signer(undefined);
    const flash = { kind: 'not-found' as const, lockId: 'a', fencingToken: 3 };
    const encoded = encodeFlash(signer, flash);
    expect(decodeFlash(signer, encoded)).toEqual(flash);
    expect(decodeFlash(new Signer(undefined), encoded)).toBeNull();
    const [data] = encoded.split('.');
    expect(decodeFlash(signer, `${data}.AAAA`)).toBeNull();
    expect(decodeFlash(signer, 'garbage')).toBeNull();
  });

  it('refuses a secret shorter than 32 bytes', () => {
    expect(() => new Signer('short')).toThrow(TypeError);
    expect(() => new Signer('x'.repeat(32))).not.toThrow();
  });

  it('tells same-origin requests from cross-site ones, by scheme and host', () => {
    const origins = requestOrigins('https', ['dash.example:8080', undefined, '', 'DASH.example:8080']);
    expect(origins).toEqual(['https://dash.example:8080']);
    expect(() => checkSameOrigin({}, origins)).not.toThrow();
    expect(() => checkSameOrigin({ origin: 'https://dash.example:8080', 'sec-fetch-site': 'same-origin' }, origins)).not.toThrow();
    expectHttpError(() => checkSameOrigin({ origin: 'http://dash.example:8080' }, origins), 403, 'CROSS_SITE_REQUEST');
    expectHttpError(() => checkSameOrigin({ origin: 'https://evil.example' }, origins), 403, 'CROSS_SITE_REQUEST');
    expectHttpError(() => checkSameOrigin({ origin: 'null' }, origins), 403, 'CROSS_SITE_REQUEST');
    expectHttpError(() => checkSameOrigin({ 'sec-fetch-site': 'same-site' }, origins), 403, 'CROSS_SITE_REQUEST');
    expectHttpError(() => checkSameOrigin({ 'sec-fetch-site': 'cross-site' }, origins), 403, 'CROSS_SITE_REQUEST');
    expect(requestOrigins('http', ['a.example:80', 'bad host'])).toEqual(['http://a.example']);
  });
});
