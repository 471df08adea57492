/**
 * Claim 5 for the dashboard: junk in any part of a request to the admin router (query strings, lock
 * ids in the path with broken %-escapes, JSON and form bodies, methods, content types) gets a 4xx
 * with a clear message, never a 500 and never a stack trace, and writes nothing: afterwards the lock
 * table holds exactly what it held plus what valid requests did, and the audit trail only those.
 */
import type { Server } from 'node:http';
import express from 'express';
import fc from 'fast-check';
import request from 'supertest';
import { createDbMutexAdminRouter, type DbMutex } from '../../src';
import { TestContext } from '../helpers/db';
import { note } from '../helpers/report';
import { scaled, timeoutMs } from '../helpers/soak';

let ctx: TestContext;
let mutex: DbMutex;
let holders: DbMutex;
let server: Server;
const unexpected: unknown[] = [];
const FIXTURE_IDS = ['keep/a', 'keep b', 'ünï/🔒/c', "o'brien; --"];

/** Text that looks like a leaked stack trace or server path. */
const LEAK = /\n\s+at [^\n]*:\d+:\d+|node_modules|\/work\/|[A-Z]:\\\\|\bat (?:async )?\w+ \(/;

const junkText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom(
    '', ' ', '-1', '0', '1.5', '1e3', '1e400', 'NaN', '9007199254740993', '99999999999999999999', 'true', 'null', '[]', '{}',
    "'; DROP TABLE db_mutex_locks; --", '<script>alert(1)</script>', '../../etc/passwd', '%00', '\u0000', '\uD800',
    'x'.repeat(300), 'x'.repeat(5_000), '🔒'.repeat(256), 'keep/a',
  ),
);
/** Raw (already %-encoded, possibly wrongly) path text for /api/locks/<here>. */
const junkPath = fc.oneof(
  junkText.map((t) => encodeURIComponent(t.isWellFormed() ? t : 'x')),
  fc.constantFrom('%', '%zz', '%00', '%C0%80', '%ED%A0%80', '%FF', 'a%2', '..%2F..%2Fetc', '%2F', '%252F', 'keep%2Fa', 'a/b/c', '%20'),
);
const queryKey = fc.constantFrom('filter', 'stale', 'limit', 'after', 'refresh', 'flash', 'lockId', 'fencingToken', 'reason', 'x', '__proto__');
const junkQuery = fc
  .array(fc.tuple(queryKey, junkText), { maxLength: 5 })
  .map((pairs) => pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v.isWellFormed() ? v : 'x')}`).join('&'));
const junkJson = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc
    .record({ fencingToken: fc.oneof(fc.jsonValue(), junkText), reason: fc.oneof(fc.jsonValue(), junkText) }, { requiredKeys: [] })
    .map((v) => JSON.stringify(v)),
  fc.constantFrom('{', '{"reason":', 'null', '"text"', '[1,2]', '{"__proto__":{"x":1}}', `{"reason":"${'r'.repeat(20_000)}"}`),
);

/**
 * Page cursors that decode (base64url of [ms, id, seen]) with times anywhere JavaScript allows, most of
 * them outside what some database can store, and the bounds around what all of them can.
 */
const junkCursor = fc
  .tuple(
    fc.oneof(
      fc.integer({ min: -8.64e15, max: 8.64e15 }),
      fc.constantFrom(-210866803200001, -62167219200000, Date.UTC(1000, 0, 1) - 1, Date.UTC(1000, 0, 1), Date.UTC(9999, 11, 31, 23, 59, 59, 999), 253402300800000),
      fc.double(),
    ),
    fc.oneof(fc.constantFrom('keep/a', 'a', ''), fc.string({ maxLength: 10 })),
    fc.oneof(fc.constant([]), fc.array(fc.string(), { maxLength: 3 })),
  )
  .map((cursor) => Buffer.from(JSON.stringify(cursor)).toString('base64url'));
/** What an API action may be sent with: JSON, none, and what a cross-site form or a no-cors fetch can send. */
const apiContentType = fc.option(
  fc.constantFrom(
    'application/json',
    'application/json; charset=latin1',
    'text/plain',
    'text/plain;charset=UTF-8',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
  ),
  { nil: undefined },
);
const isJsonType = (type: string | undefined) => type !== undefined && /^application\/json\b/i.test(type);

interface Junk {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH';
  path: string;
  contentType?: string;
  body?: string;
}

const junkRequest: fc.Arbitrary<Junk> = fc.oneof(
  junkQuery.map((q) => ({ method: 'GET' as const, path: `/?${q}` })),
  junkQuery.map((q) => ({ method: 'GET' as const, path: `/api/locks?${q}` })),
  junkQuery.map((q) => ({ method: 'GET' as const, path: `/api/events?${q}` })),
  junkQuery.map((q) => ({ method: 'GET' as const, path: `/confirm-release?${q}` })),
  junkPath.map((p) => ({ method: 'GET' as const, path: `/api/locks/${p}` })),
  junkCursor.map((after) => ({ method: 'GET' as const, path: `/?after=${after}` })),
  junkCursor.map((after) => ({ method: 'GET' as const, path: `/api/locks?after=${after}` })),
  fc.tuple(junkPath, junkQuery, fc.option(junkJson, { nil: undefined }), apiContentType).map(([p, q, body, contentType]) => ({
    method: 'DELETE' as const,
    path: `/api/locks/${p}?${q}`,
    body,
    contentType,
  })),
  fc.tuple(fc.constantFrom('PUT' as const, 'PATCH' as const, 'POST' as const), junkPath).map(([method, p]) => ({ method, path: `/api/locks/${p}` })),
  fc.tuple(fc.option(junkJson, { nil: undefined }), apiContentType).map(([body, contentType]) => ({
    method: 'POST' as const,
    path: '/api/locks/release-stale',
    body,
    contentType,
  })),
  junkQuery.map((q) => ({ method: 'POST' as const, path: '/release', body: q, contentType: 'application/x-www-form-urlencoded' })),
  junkQuery.map((q) => ({ method: 'POST' as const, path: '/release-stale', body: q, contentType: 'application/x-www-form-urlencoded' })),
  junkPath.map((p) => ({ method: 'GET' as const, path: `/static/${p}` })),
  junkPath.map((p) => ({ method: 'GET' as const, path: `/${p}` })),
);

async function send(j: Junk) {
  const agent = request(server);
  const url = `/admin${j.path}`;
  let req =
    j.method === 'GET' ? agent.get(url) : j.method === 'POST' ? agent.post(url) : j.method === 'DELETE' ? agent.delete(url) : j.method === 'PUT' ? agent.put(url) : agent.patch(url);
  if (j.contentType) req = req.set('Content-Type', j.contentType);
  if (j.body !== undefined) req = req.send(j.body);
  return req.ok(() => true);
}

async function lockTable(): Promise<Record<string, number>> {
  return Object.fromEntries((await ctx.sql.lockRows()).map((r) => [r.lock_id, r.fencing_token]));
}

describe('admin router fuzzing', () => {
  beforeAll(async () => {
    ctx = await TestContext.create();
    mutex = await ctx.mutex();
    holders = await ctx.mutex({ holder: 'fixture', heartbeat: false, ttlSeconds: 600 });
    for (const id of FIXTURE_IDS) await holders.acquire(id);
    const app = express();
    app.use(
      '/admin',
      createDbMutexAdminRouter({
        mutex,
        authorize: () => true,
        operator: () => 'fuzzer',
        onError: (error) => void unexpected.push(error),
      }),
    );
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await ctx?.cleanup();
  });

  it(
    'answers junk requests with a clear 4xx, never a 500 or a stack trace, and writes nothing',
    async () => {
      const expected = await lockTable();
      const eventsBefore = (await mutex.events({ limit: 1000 })).length;
      let validReleases = 0;
      const statuses: Record<number, number> = {};
      await fc.assert(
        fc.asyncProperty(junkRequest, async (j) => {
          const res = await send(j);
          statuses[res.status] = (statuses[res.status] ?? 0) + 1;
          expect({ request: j, status: res.status < 500 }).toEqual({ request: j, status: true });
          expect(res.text).not.toMatch(LEAK);
          // 431: Node's own HTTP parser refuses oversized headers before any router runs.
          if (res.status >= 400 && res.status !== 431 && j.path.startsWith('/api/')) {
            expect(res.headers['content-type']).toMatch(/json/);
            expect(res.body).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
          }
          // A form or text content type never gets an API action through, with or without a body.
          if (j.path.startsWith('/api/locks/') && (j.method === 'DELETE' || j.method === 'POST') && j.contentType !== undefined && !isJsonType(j.contentType)) {
            expect({ request: j, refused: res.status >= 400 }).toEqual({ request: j, refused: true });
          }
          // A valid DELETE of a fixture lock is the one thing that may change the table.
          if (j.method === 'DELETE' && res.status === 200) {
            const released = (res.body as { event: { lockId: string } }).event.lockId;
            delete expected[released];
            validReleases++;
          }
        }),
        { numRuns: scaled(250) },
      );
      expect(unexpected).toEqual([]);
      expect(await lockTable()).toEqual(expected);
      expect((await mutex.events({ limit: 1000 })).length).toBe(eventsBefore + validReleases);
      note(`admin router: ${JSON.stringify(statuses)} (status: count), ${validReleases} valid releases, no 5xx, no stack trace`);
    },
    timeoutMs(90_000),
  );
});
