/**
 * The edges of the admin router's request handling that a sloppy or hostile client finds: content types
 * with and without a body, JSON bodies that are not objects, page cursors outside what the database can
 * store, and the same-origin check (scheme, `trust proxy`, `allowedOrigins`). On a real database.
 */
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import request from 'supertest';
import { createDbMutexAdminRouter, type DbMutex, type DbMutexAdminRouterOptions, type DbMutexHeldLock } from '../src';
import { TestContext } from './helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
let holders: DbMutex;
const held: DbMutexHeldLock[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
  holders = await ctx.mutex({ holder: 'worker-a', heartbeat: false, ttlSeconds: 600 });
});

afterEach(async () => {
  for (const lock of held.splice(0)) await lock.release().catch(() => undefined);
  await ctx.exec('DELETE FROM db_mutex_locks');
  await ctx.sql.resetEvents();
});

afterAll(async () => {
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
  await ctx.cleanup();
});

async function hold(lockId: string): Promise<DbMutexHeldLock> {
  const lock = await holders.acquire(lockId);
  held.push(lock);
  return lock;
}

function app(options: Partial<DbMutexAdminRouterOptions> = {}, setup: (a: Express) => void = () => undefined): Express {
  const a = express();
  setup(a);
  a.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true, operator: () => 'alice', ...options }));
  return a;
}

interface RawAnswer {
  status: number;
  body: { error?: { code: string; message: string }; status?: string; released?: number };
}

/**
 * One request with exactly the headers given: supertest (like most clients) adds `Content-Length` on
 * its own, and the point here is what the router does when a header is there or not.
 */
async function raw(a: Express, method: string, path: string, headers: Record<string, string>, body?: string): Promise<RawAnswer> {
  const server = a.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as RawAnswer['body']) : {} }));
    });
    req.on('error', reject);
    // Node sends no Content-Length and no Transfer-Encoding for a DELETE ended without data.
    req.end(body);
  });
}

async function stale(lockId: string): Promise<DbMutexHeldLock> {
  const lock = await hold(lockId);
  await ctx.sql.setSecondsAgo(lockId, { expires_at: 60 });
  return lock;
}

describe('content types of the JSON API actions', () => {
  it('accepts Content-Type: application/json without a body on DELETE, exactly like a bodiless request', async () => {
    const lock = await hold('json-no-body');
    const res = await raw(app(), 'DELETE', '/admin/locks/api/locks/json-no-body', { 'Content-Type': 'application/json' });
    expect([res.status, res.body.status]).toEqual([200, 'released']);
    await hold('json-empty-body');
    const empty = await raw(app(), 'DELETE', '/admin/locks/api/locks/json-empty-body', { 'Content-Type': 'application/json', 'Content-Length': '0' });
    expect([empty.status, empty.body.status]).toEqual([200, 'released']);
    const withToken = await raw(app(), 'DELETE', `/admin/locks/api/locks/json-no-body?fencingToken=${lock.fencingToken}`, {
      'Content-Type': 'application/json; charset=utf-8',
    });
    // Released above already: the bodiless request got as far as the lookup, not a 415.
    expect([withToken.status, withToken.body.error?.code]).toEqual([404, 'LOCK_NOT_FOUND']);
  });

  it('refuses the content types a cross-site form can send on every API action, even with an empty body', async () => {
    await stale('form-target');
    const a = app();
    const formTypes = ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'TEXT/PLAIN'];
    for (const type of formTypes) {
      for (const [method, path] of [
        ['POST', '/admin/locks/api/locks/release-stale'],
        ['DELETE', '/admin/locks/api/locks/form-target'],
      ] as const) {
        for (const headers of [{ 'Content-Type': type, 'Content-Length': '0' }, { 'Content-Type': type }] as Record<string, string>[]) {
          const res = await raw(a, method, path, headers);
          expect([type, method, headers, res.status, res.body.error?.code]).toEqual([type, method, headers, 415, 'UNSUPPORTED_MEDIA_TYPE']);
        }
      }
    }
    // Any other non-JSON type too: the API speaks JSON or nothing.
    const xml = await raw(a, 'POST', '/admin/locks/api/locks/release-stale', { 'Content-Type': 'application/xml', 'Content-Length': '0' });
    expect(xml.status).toBe(415);
    expect(await ctx.sql.countHeldLocks()).toBe(1);
    expect(await mutex.events()).toEqual([]);
    // Without a Content-Type, or with JSON, the same requests work.
    const ok = await raw(a, 'POST', '/admin/locks/api/locks/release-stale', { 'Content-Length': '0' });
    expect([ok.status, ok.body.released]).toEqual([200, 1]);
  });

  it('answers a JSON body that is not an object with 400 and releases nothing', async () => {
    const lock = await stale('array-target');
    const a = app();
    for (const body of ['[1,2]', `[{"fencingToken":${lock.fencingToken + 1}}]`, '"x"', 'null', '1', 'true', '[]']) {
      for (const path of ['/admin/locks/api/locks/array-target', '/admin/locks/api/locks/release-stale']) {
        const method = path.endsWith('release-stale') ? 'post' : 'delete';
        const res = await request(a)[method](path).set('Content-Type', 'application/json').send(body);
        expect([body, path, res.status, res.body.error?.code]).toEqual([body, path, 400, 'INVALID_BODY']);
        expect(res.body.error.message).toContain('JSON object');
      }
    }
    expect(lock.isHeld()).toBe(true);
    expect(await ctx.sql.countHeldLocks()).toBe(1);
    expect(await mutex.events()).toEqual([]);
    // An object is still fine, and its fencing token is checked.
    const mismatch = await request(a).delete('/admin/locks/api/locks/array-target').send({ fencingToken: lock.fencingToken + 1 });
    expect(mismatch.status).toBe(409);
  });
});

describe('page cursors', () => {
  const cursor = (ms: number, lockId = 'a') => Buffer.from(JSON.stringify([ms, lockId, []])).toString('base64url');
  /** The instants every supported database can compare with (MySQL/MariaDB DATETIME and SQLite's date functions). */
  const earliest = Date.UTC(1000, 0, 1);
  const latest = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

  it('answers a cursor whose time is outside what the databases can store with 400, on the page and the API', async () => {
    await hold('cursor/one');
    const a = app();
    const outside = [
      -210866803200001, // one millisecond before PostgreSQL's earliest timestamp (4714-11-24 BC)
      -8.64e15, // JavaScript's earliest Date
      Date.parse('0000-01-01T00:00:00Z'), // year 0: still PostgreSQL's range, not MySQL's
      earliest - 1,
      latest + 1,
      Date.UTC(10000, 0, 1),
      8.64e15, // JavaScript's latest Date
    ];
    for (const ms of outside) {
      for (const path of ['/admin/locks/', '/admin/locks/api/locks']) {
        const res = await request(a).get(`${path}?after=${cursor(ms)}`);
        expect([ms, path, res.status]).toEqual([ms, path, 400]);
        if (path.includes('api')) expect(res.body.error.code).toBe('INVALID_CURSOR');
        else expect(res.text).toContain('The page cursor (&#34;after&#34;) is not valid');
      }
    }
  });

  it('accepts the earliest and latest cursor times on every database', async () => {
    await hold('cursor/two');
    const a = app();
    const first = await request(a).get(`/admin/locks/api/locks?after=${cursor(earliest)}`);
    expect([first.status, first.body.locks.map((l: { lockId: string }) => l.lockId)]).toEqual([200, ['cursor/two']]);
    const last = await request(a).get(`/admin/locks/api/locks?after=${cursor(latest)}`);
    expect([last.status, last.body.locks]).toEqual([200, []]);
    for (const ms of [earliest, latest]) expect((await request(a).get(`/admin/locks/?after=${cursor(ms)}`)).status).toBe(200);
  });
});

describe('the same-origin check', () => {
  /** An action that succeeds whenever the origin check lets it through: there is nothing stale to release. */
  const releaseStale = (a: Express, headers: Record<string, string>) => {
    let req = request(a).post('/admin/locks/api/locks/release-stale');
    for (const [name, value] of Object.entries(headers)) req = req.set(name, value);
    return req;
  };

  it('compares the scheme of Origin with the request, not only the host', async () => {
    const a = app();
    const http = await releaseStale(a, { Host: 'dash.example:8080', Origin: 'http://dash.example:8080' });
    expect(http.status).toBe(200);
    const https = await releaseStale(a, { Host: 'dash.example:8080', Origin: 'https://dash.example:8080' });
    expect([https.status, https.body.error.code]).toEqual([403, 'CROSS_SITE_REQUEST']);
    expect(https.body.error.message).toContain('https://dash.example:8080');
    // Default ports are the same origin written two ways.
    expect((await releaseStale(a, { Host: 'dash.example', Origin: 'http://dash.example:80' })).status).toBe(200);
    expect((await releaseStale(a, { Host: 'DASH.example', Origin: 'http://dash.EXAMPLE' })).status).toBe(200);
  });

  it('takes the scheme from X-Forwarded-Proto only when the host app trusts its proxy', async () => {
    const viaProxy = { Host: 'ops.example.com', 'X-Forwarded-Proto': 'https' };
    const untrusted = app();
    expect((await releaseStale(untrusted, { ...viaProxy, Origin: 'https://ops.example.com' })).status).toBe(403);
    expect((await releaseStale(untrusted, { ...viaProxy, Origin: 'http://ops.example.com' })).status).toBe(200);
    const trusted = app({}, (host) => host.set('trust proxy', 'loopback'));
    expect((await releaseStale(trusted, { ...viaProxy, Origin: 'https://ops.example.com' })).status).toBe(200);
    expect((await releaseStale(trusted, { ...viaProxy, Origin: 'http://ops.example.com' })).status).toBe(403);
  });

  it('accepts the origins listed in allowedOrigins, for proxies that rewrite Host', async () => {
    const lock = await hold('behind-proxy');
    const rewritten = { Host: 'backend.internal:3000', Origin: 'https://ops.example.com' };
    expect((await request(app()).delete('/admin/locks/api/locks/behind-proxy').set(rewritten)).status).toBe(403);
    const allowing = app({ allowedOrigins: ['https://ops.example.com', 'https://ops-backup.example.com:8443/'] });
    expect((await request(allowing).delete('/admin/locks/api/locks/behind-proxy').set({ ...rewritten, Origin: 'http://ops.example.com' })).status).toBe(403);
    expect((await request(allowing).delete('/admin/locks/api/locks/behind-proxy').set({ ...rewritten, Origin: 'https://evil.example' })).status).toBe(403);
    expect(lock.isHeld()).toBe(true);
    const ok = await request(allowing).delete('/admin/locks/api/locks/behind-proxy').set({ ...rewritten, Origin: 'https://OPS.example.com' });
    expect([ok.status, ok.body.status]).toEqual([200, 'released']);
    expect((await releaseStale(allowing, { ...rewritten, Origin: 'https://ops-backup.example.com:8443' })).status).toBe(200);
    // A listed origin does not excuse a request the browser itself marks as cross-site.
    expect((await releaseStale(allowing, { ...rewritten, 'Sec-Fetch-Site': 'cross-site' })).status).toBe(403);
  });

  it('refuses allowedOrigins that are not a list of origins with a TypeError naming the option', () => {
    const authorize = () => true;
    const bad: unknown[] = [
      'https://ops.example.com',
      [42],
      ['*'],
      ['ops.example.com'],
      ['https://ops.example.com/admin'],
      ['https://ops.example.com?x=1'],
      ['https://user:pw@ops.example.com'],
      ['ftp://ops.example.com'],
      ['null'],
      [''],
      {},
    ];
    for (const allowedOrigins of bad) {
      expect(() => createDbMutexAdminRouter({ authorize, allowedOrigins: allowedOrigins as string[] })).toThrow(TypeError);
      expect(() => createDbMutexAdminRouter({ authorize, allowedOrigins: allowedOrigins as string[] })).toThrow(/allowedOrigins/);
    }
    expect(() => createDbMutexAdminRouter({ authorize, allowedOrigins: [] })).not.toThrow();
    expect(() => createDbMutexAdminRouter({ authorize, allowedOrigins: ['http://[::1]:3000', 'https://xn--bcher-kva.example'] })).not.toThrow();
  });
});
