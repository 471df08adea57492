/**
 * The admin router over HTTP (supertest) against a real database (whichever DATABASE_URL names): every route, auth,
 * CSRF and the same-origin check, escaping, error codes, the edges a sloppy or hostile client finds (content types
 * with and without a body, non-object JSON, page cursors outside what a database can store), and a host app whose
 * own settings must survive the mount.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express, { type Express, type Request } from 'express';
import request from 'supertest';
import { createDbMutexAdminRouter, initDbMutex, type DbMutex, type DbMutexAdminRouterOptions, type DbMutexHeldLock } from '../src';
import { holderLoses, unescapeHtml } from './helpers/dashboard';
import { TestContext } from './helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
/** A second DbMutex plays the job processes that hold the locks. */
let holders: DbMutex;
const held: DbMutexHeldLock[] = [];
const afterCleanup: (() => void)[] = [];

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
  holders = await ctx.mutex({ holder: 'worker-a', heartbeat: false, ttlSeconds: 600 });
});

afterEach(async () => {
  for (const lock of held.splice(0)) await lock.release().catch(() => undefined);
  await ctx.exec('DELETE FROM db_mutex_locks');
  // Restarting the ids keeps each test's audit trail independent of the ones before it.
  await ctx.sql.resetEvents();
});

afterAll(async () => {
  for (const fn of afterCleanup) fn();
  await ctx.cleanup();
});

async function hold(lockId: string, options: Parameters<DbMutex['acquire']>[1] = {}): Promise<DbMutexHeldLock> {
  const lock = await holders.acquire(lockId, options);
  held.push(lock);
  return lock;
}

async function makeExpired(lockId: string): Promise<void> {
  await ctx.sql.setSecondsAgo(lockId, { expires_at: 60 });
}

async function rowCount(): Promise<number> {
  return ctx.sql.countHeldLocks();
}

function app(options: Partial<DbMutexAdminRouterOptions> = {}, user: unknown = { username: 'alice' }): Express {
  const a = express();
  a.use((req, _res, next) => {
    (req as { user?: unknown }).user = user;
    next();
  });
  a.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true, ...options }));
  return a;
}

function csrfOf(html: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!m?.[1]) throw new Error('no CSRF token in page');
  return m[1];
}

function hrefsOf(html: string, pattern: RegExp): string[] {
  return [...html.matchAll(/href="([^"]*)"/g)].map((m) => unescapeHtml(m[1]!)).filter((h) => pattern.test(h));
}

/** Loads the confirmation page like a browser would, then posts its form. */
async function releaseThroughForm(a: Express, lockId: string, fencingToken: number, reason = '') {
  const agent = request.agent(a);
  const confirm = await agent.get(`/admin/locks/confirm-release?lockId=${encodeURIComponent(lockId)}&fencingToken=${fencingToken}`);
  expect(confirm.status).toBe(200);
  const post = await agent
    .post('/admin/locks/release')
    .type('form')
    .send({ _csrf: csrfOf(confirm.text), lockId, fencingToken: String(fencingToken), reason });
  expect(post.status).toBe(303);
  const page = await agent.get(post.headers.location!);
  expect(page.status).toBe(200);
  return { confirm, post, page };
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
  afterCleanup.push(() => server.close());
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

describe('creating the router', () => {
  it('refuses to exist without authorize', () => {
    expect(() => createDbMutexAdminRouter(undefined as unknown as DbMutexAdminRouterOptions)).toThrow(TypeError);
    expect(() => createDbMutexAdminRouter({ mutex } as unknown as DbMutexAdminRouterOptions)).toThrow(/authorize.*required/);
    expect(() => createDbMutexAdminRouter({ mutex, authorize: true } as unknown as DbMutexAdminRouterOptions)).toThrow(TypeError);
  });

  it('refuses bad options with errors that name them', () => {
    const authorize = () => true;
    expect(() => createDbMutexAdminRouter({ authorize, pageSize: 0 })).toThrow(/pageSize/);
    expect(() => createDbMutexAdminRouter({ authorize, pageSize: 501 })).toThrow(RangeError);
    expect(() => createDbMutexAdminRouter({ authorize, pageSize: 1.5 })).toThrow(RangeError);
    expect(() => createDbMutexAdminRouter({ authorize, secret: 'short' })).toThrow(/secret/);
    expect(() => createDbMutexAdminRouter({ authorize, readOnly: 'yes' as unknown as boolean })).toThrow(/readOnly/);
    expect(() => createDbMutexAdminRouter({ authorize, mutex: {} as DbMutex })).toThrow(/mutex/);
  });
});

describe('authorization', () => {
  const routes: [string, string][] = [
    ['get', '/admin/locks/'],
    ['get', '/admin/locks/confirm-release?lockId=a&fencingToken=1'],
    ['get', '/admin/locks/confirm-release-stale'],
    ['post', '/admin/locks/release'],
    ['post', '/admin/locks/release-stale'],
    ['get', '/admin/locks/static/dashboard.css'],
    ['get', '/admin/locks/api/locks'],
    ['get', '/admin/locks/api/locks/a'],
    ['delete', '/admin/locks/api/locks/a'],
    ['post', '/admin/locks/api/locks/release-stale'],
    ['get', '/admin/locks/api/events'],
    ['get', '/admin/locks/no-such-page'],
  ];

  it('answers 403 on every route, in HTML or JSON, when authorize says no, and changes nothing', async () => {
    const lock = await hold('guarded');
    const denied = app({ authorize: () => false });
    for (const [method, path] of routes) {
      const res = await (request(denied) as unknown as Record<string, (p: string) => request.Test>)[method]!(path);
      expect([method, path, res.status]).toEqual([method, path, 403]);
      if (path.includes('/api/')) {
        expect(res.body).toEqual({ error: { code: 'FORBIDDEN', message: expect.any(String) } });
      } else {
        expect(res.type).toBe('text/html');
        expect(res.text).toContain('not allowed');
      }
      expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    }
    expect(lock.isHeld()).toBe(true);
    expect(await rowCount()).toBe(1);
  });

  it('lets a request through only when authorize returns exactly true, awaiting a promise', async () => {
    expect((await request(app({ authorize: () => 'yes' as unknown as boolean })).get('/admin/locks/api/locks')).status).toBe(403);
    expect((await request(app({ authorize: async () => true })).get('/admin/locks/api/locks')).status).toBe(200);
    const seen: unknown[] = [];
    const spy = app({ authorize: (req) => (seen.push((req as { user?: unknown }).user), true) });
    await request(spy).get('/admin/locks/api/locks');
    expect(seen).toEqual([{ username: 'alice' }]);
  });

  it('answers 500 without a stack trace when authorize throws, and reports the error to onError', async () => {
    const reported: unknown[] = [];
    const a = app({
      authorize: () => {
        throw new Error('session store down');
      },
      onError: (error) => reported.push(error),
    });
    const json = await request(a).get('/admin/locks/api/locks');
    expect(json.status).toBe(500);
    expect(json.body.error.code).toBe('INTERNAL');
    expect(JSON.stringify(json.body)).not.toMatch(/session store|at .*\.ts/);
    const html = await request(a).get('/admin/locks/');
    expect(html.status).toBe(500);
    expect(html.text).not.toMatch(/session store down|\.ts:\d+/);
    expect(reported).toHaveLength(2);
  });
});

describe('the page', () => {
  it('lists held locks oldest first with holder, acquisition time, age, expiry, heartbeat, token and status', async () => {
    const first = await hold('jobs/first', { holder: 'importer' });
    await hold('jobs/second', { heartbeat: true, leaseSeconds: 300 });
    await ctx.sql.setSecondsAgo('jobs/first', { acquired_at: 3 * 60 + 12 });
    const res = await request(app()).get('/admin/locks/');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const html = res.text;
    expect(html.indexOf('jobs/first')).toBeLessThan(html.indexOf('jobs/second'));
    expect(html).toContain('importer');
    expect(html).toContain(`pid ${process.pid}`);
    expect(html).toMatch(/3 min 1[2-9] s/);
    expect(html).toContain(`title="${first.acquiredAt.toISOString().slice(0, 10)}`);
    expect(html).toMatch(/in (9|10) min/);
    expect(html).toContain('title="Heartbeat disabled');
    expect(html).toMatch(/< 1 s ago|[0-9] s ago/);
    expect(html).toContain(`>${first.fencingToken}</td>`);
    expect(html).toContain('badge badge-active');
    expect(html).toContain('Signed in as <strong>alice</strong>');
  });

  it('counts held, active and stale locks and marks expired and heartbeat-overdue locks stale', async () => {
    await hold('fresh');
    await hold('expired');
    await hold('silent', { heartbeat: true, leaseSeconds: 300 });
    await makeExpired('expired');
    await ctx.sql.setSecondsAgo('silent', { heartbeat_at: 4 * 60 });
    const html = (await request(app()).get('/admin/locks/')).text;
    const count = (label: string) => new RegExp(`${label}</span>\\s*<span class="stat-value">(\\d+)<`).exec(html)?.[1];
    expect([count('Held'), count('Active'), count('Stale')]).toEqual(['3', '1', '2']);
    expect(html.match(/badge badge-stale/g)).toHaveLength(2);
    expect(html).toContain('Heartbeat overdue');
    expect(html).toContain('Expired: the next acquirer');
    const staleOnly = (await request(app()).get('/admin/locks/?stale=1')).text;
    expect(staleOnly).not.toContain('>fresh<');
    expect(staleOnly).toContain('>expired<');
  });

  it('filters by lock-id text, keeps the filter in its links, and says clearly when nothing matches', async () => {
    await hold('billing/run');
    await hold('reports/run');
    const html = (await request(app()).get('/admin/locks/?filter=billing')).text;
    expect(html).toContain('billing/run');
    expect(html).not.toContain('reports/run');
    expect(hrefsOf(html, /confirm-release\?/)[0]).toContain('filter=billing');
    const none = (await request(app()).get('/admin/locks/?filter=nothing-like-this')).text;
    expect(none).toContain('No lock id contains “nothing-like-this”');
    await ctx.exec('DELETE FROM db_mutex_locks');
    expect((await request(app()).get('/admin/locks/')).text).toContain('No locks are held right now.');
  });

  it('pages with a keyset cursor through every lock exactly once, oldest first', async () => {
    const ids = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7'];
    for (const id of ids) await hold(id);
    const a = app({ pageSize: 3 });
    const seen: string[] = [];
    let url: string | undefined = '/admin/locks/';
    for (let i = 0; url && i < 5; i++) {
      const html: string = (await request(a).get(url)).text;
      seen.push(...[...html.matchAll(/<code class="lock-id">([^<]+)<\/code>/g)].map((m) => m[1]!));
      const next = /<a [^>]*href="([^"]+)" rel="next"/.exec(html)?.[1];
      url = next === undefined ? undefined : unescapeHtml(next);
    }
    expect(seen).toEqual(ids);

    const api: string[] = [];
    let after: string | null = null;
    do {
      const res: request.Response = await request(a).get(`/admin/locks/api/locks?limit=2${after ? `&after=${after}` : ''}`);
      api.push(...(res.body.locks as { lockId: string }[]).map((l) => l.lockId));
      after = res.body.nextCursor as string | null;
    } while (after);
    expect(api).toEqual(ids);
  });

  it('offers auto-refresh off, 5 s and 30 s without any inline script', async () => {
    const html = (await request(app()).get('/admin/locks/?refresh=5&filter=x')).text;
    expect(html).toMatch(/<noscript><meta http-equiv="refresh" content="5; url=\/admin\/locks\/\?filter=x&amp;refresh=5"><\/noscript>/);
    expect(html).toContain('data-refresh-seconds="5"');
    expect(hrefsOf(html, /refresh=30/)).toHaveLength(1);
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect((await request(app()).get('/admin/locks/')).text).not.toContain('http-equiv="refresh"');
  });

  it('forbids inline script with its Content-Security-Policy and serves its own CSS and JS', async () => {
    const res = await request(app()).get('/admin/locks/');
    const csp = res.headers['content-security-policy'] as string;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.headers['x-frame-options']).toBe('DENY');
    const [css] = hrefsOf(res.text, /dashboard\.css/);
    const cssRes = await request(app()).get(css!);
    expect(cssRes.status).toBe(200);
    expect(cssRes.type).toBe('text/css');
    expect(cssRes.headers['cache-control']).toContain('immutable');
    const js = /<script src="([^"]+)"/.exec(res.text)![1]!;
    const jsRes = await request(app()).get(unescapeHtml(js));
    expect(jsRes.status).toBe(200);
    expect(jsRes.type).toBe('text/javascript');
    expect((await request(app()).get('/admin/locks/static/nope.css')).status).toBe(404);
    expect((await request(app()).get('/admin/locks/static/..%2Fdashboard.ejs')).status).toBe(404);
  });

  it('renders a lock named <script>alert(1)</script> as text everywhere', async () => {
    const evil = '<script>alert(1)</script>';
    const lock = await hold(evil, { holder: '<img src=x onerror=alert(2)>' });
    const a = app({}, { username: '<b>mallory</b>' });
    const pages = [(await request(a).get('/admin/locks/')).text];
    const { confirm, page } = await releaseThroughForm(a, evil, lock.fencingToken, '<i>reason</i>');
    pages.push(confirm.text, page.text, (await request(a).get(`/admin/locks/?filter=${encodeURIComponent(evil)}`)).text);
    for (const html of pages) {
      expect(html).not.toContain('<script>alert');
      expect(html).not.toContain('<img src=x');
      expect(html).not.toContain('<b>mallory');
      expect(html).not.toContain('<i>reason');
    }
    expect(pages[0]).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page.text).toContain('Released “&lt;script&gt;alert(1)&lt;/script&gt;”');
    expect(page.text).toContain('&lt;i&gt;reason&lt;/i&gt;');
    expect(page.text).toContain('&lt;b&gt;mallory&lt;/b&gt;');
  });
});

describe('force-release from the page', () => {
  it('releases the named acquisition after a confirmation page, aborts the holder and records the audit entry', async () => {
    const lock = await hold('nightly/export', { holder: 'report-runner' });
    const { confirm, post, page } = await releaseThroughForm(app(), 'nightly/export', lock.fencingToken, 'worker hung');
    expect(confirm.text).toContain('Force-release this lock?');
    expect(confirm.text).toContain(`Force-release token ${lock.fencingToken}`);
    expect(confirm.headers['set-cookie']?.[0]).toMatch(/^dbm_admin_csrf=[^;]+; Path=\/admin\/locks; HttpOnly; SameSite=Lax$/);
    expect(post.headers.location).toMatch(/^\/admin\/locks\/\?flash=/);
    expect(page.text).toContain(`Released “nightly/export” (fencing token ${lock.fencingToken})`);
    expect(page.text).toContain('worker hung');
    expect(page.text).toContain('>force-release<');
    await holderLoses(lock, 'the holder to lose the lock');
    expect(lock.isHeld()).toBe(false);
    expect(await rowCount()).toBe(0);
    const [event] = await mutex.events({ limit: 1 });
    expect(event).toMatchObject({ action: 'force-release', lockId: 'nightly/export', fencingToken: lock.fencingToken, operator: 'alice', reason: 'worker hung', holder: 'report-runner' });
  });

  it('releases nothing when the lock was re-acquired meanwhile, and says so', async () => {
    const a = app();
    const first = await hold('reacquired');
    const agent = request.agent(a);
    const confirm = await agent.get(`/admin/locks/confirm-release?lockId=reacquired&fencingToken=${first.fencingToken}`);
    await first.release();
    const second = await hold('reacquired');
    const post = await agent
      .post('/admin/locks/release')
      .type('form')
      .send({ _csrf: csrfOf(confirm.text), lockId: 'reacquired', fencingToken: String(first.fencingToken) });
    expect(post.status).toBe(303);
    const page = await agent.get(post.headers.location!);
    expect(page.text).toContain('Nothing released: “reacquired” was re-acquired meanwhile.');
    expect(page.text).toContain(`now held with token ${second.fencingToken}`);
    expect(second.isHeld()).toBe(true);
    expect(await mutex.events()).toEqual([]);
    const stale = await agent.get(`/admin/locks/confirm-release?lockId=reacquired&fencingToken=${first.fencingToken}`);
    expect(stale.status).toBe(409);
    expect(stale.text).toContain('is now held by a new acquisition');
    expect(stale.text).not.toContain('name="_csrf"');
  });

  it('says so when the lock is no longer held at all', async () => {
    const a = app();
    const lock = await hold('gone');
    const agent = request.agent(a);
    const confirm = await agent.get(`/admin/locks/confirm-release?lockId=gone&fencingToken=${lock.fencingToken}`);
    await lock.release();
    const post = await agent
      .post('/admin/locks/release')
      .type('form')
      .send({ _csrf: csrfOf(confirm.text), lockId: 'gone', fencingToken: String(lock.fencingToken) });
    expect((await agent.get(post.headers.location!)).text).toContain('Nothing released: “gone” is no longer held.');
    const notFound = await agent.get(`/admin/locks/confirm-release?lockId=gone&fencingToken=${lock.fencingToken}`);
    expect(notFound.status).toBe(404);
    expect(notFound.text).toContain('is not held any more');
  });

  it('releases all stale locks in one confirmed action and leaves active ones', async () => {
    const active = await hold('active-one');
    await hold('stale-one');
    await hold('stale-two');
    await makeExpired('stale-one');
    await makeExpired('stale-two');
    const agent = request.agent(app());
    const dashboard = (await agent.get('/admin/locks/')).text;
    const [confirmUrl] = hrefsOf(dashboard, /confirm-release-stale/);
    expect(dashboard).toContain('Release all stale (2)…');
    const confirm = await agent.get(confirmUrl!);
    expect(confirm.text).toContain('2 locks are stale right now');
    const post = await agent.post('/admin/locks/release-stale').type('form').send({ _csrf: csrfOf(confirm.text), reason: 'cleanup' });
    expect(post.status).toBe(303);
    const page = (await agent.get(post.headers.location!)).text;
    expect(page).toContain('Released 2 stale locks.');
    expect(active.isHeld()).toBe(true);
    expect((await mutex.list()).map((r) => r.lockId)).toEqual(['active-one']);
    expect((await mutex.events()).map((e) => [e.action, e.reason])).toEqual([
      ['release-stale', 'cleanup'],
      ['release-stale', 'cleanup'],
    ]);
    const again = await agent.post('/admin/locks/release-stale').type('form').send({ _csrf: csrfOf(confirm.text) });
    expect((await agent.get(again.headers.location!)).text).toContain('No stale locks to release.');
  });

  it('records the operator from req.user, from the operator option, or as anonymous', async () => {
    const cases: [Express, string][] = [
      [app({}, { name: 'Bob Ops' }), 'Bob Ops'],
      [app({}, { id: 42 }), '42'],
      [app({}, { email: 'carol@example.com' }), 'carol@example.com'],
      [app({}, null), 'anonymous'],
      [app({}, { username: '' }), 'anonymous'],
      [app({ operator: (req: Request) => `sso:${String(req.headers['x-user'])}` }, null), 'sso:undefined'],
    ];
    for (const [a, expected] of cases) {
      const lock = await hold('who');
      await releaseThroughForm(a, 'who', lock.fencingToken);
      expect((await mutex.events({ limit: 1 }))[0]!.operator).toBe(expected);
    }
  });

  it('shows the newest audit entries first, also past the tenth one', async () => {
    for (let i = 1; i <= 12; i++) {
      await hold(`audit-${i}`);
      await mutex.forceRelease({ lockId: `audit-${i}`, operator: 'alice' });
    }
    const html = (await request(app()).get('/admin/locks/')).text;
    const audit = html.slice(html.indexOf('Audit trail'));
    const shown = [...audit.matchAll(/<code class="lock-id">([^<]+)<\/code>/g)].map((m) => m[1]);
    expect(shown.slice(0, 4)).toEqual(['audit-12', 'audit-11', 'audit-10', 'audit-9']);
    const api = await request(app()).get('/admin/locks/api/events?limit=3');
    expect(api.body.events.map((e: { lockId: string }) => e.lockId)).toEqual(['audit-12', 'audit-11', 'audit-10']);
  });

  it('offers and accepts no action in read-only mode', async () => {
    const lock = await hold('look-only');
    await hold('stale-but-readonly');
    await makeExpired('stale-but-readonly');
    const a = app({ readOnly: true });
    const html = (await request(a).get('/admin/locks/')).text;
    expect(html).toContain('read-only');
    expect(html).not.toContain('confirm-release');
    expect(html).not.toContain('Release');
    expect((await request(a).get(`/admin/locks/confirm-release?lockId=look-only&fencingToken=${lock.fencingToken}`)).status).toBe(403);
    expect((await request(a).get('/admin/locks/confirm-release-stale')).status).toBe(403);
    const post = await request(a).post('/admin/locks/release').type('form').send({ lockId: 'look-only', fencingToken: String(lock.fencingToken) });
    expect(post.status).toBe(403);
    const del = await request(a).delete('/admin/locks/api/locks/look-only');
    expect([del.status, del.body.error.code]).toEqual([403, 'READ_ONLY']);
    expect((await request(a).post('/admin/locks/api/locks/release-stale')).status).toBe(403);
    expect((await request(a).get('/admin/locks/api/locks')).body.locks).toHaveLength(2);
    expect(await rowCount()).toBe(2);
  });
});

describe('cross-site request forgery', () => {
  it('refuses a forged cross-site POST and releases nothing', async () => {
    const lock = await hold('target');
    const a = app();
    // What a hostile page's auto-submitting form sends: the victim's cookies, but no token it could read.
    const forged = await request(a)
      .post('/admin/locks/release')
      .set('Origin', 'https://evil.example')
      .set('Sec-Fetch-Site', 'cross-site')
      .type('form')
      .send({ lockId: 'target', fencingToken: String(lock.fencingToken) });
    expect(forged.status).toBe(403);
    expect(forged.text).toContain('cross-site');
    // Even with a token stolen from elsewhere, the browser's cross-site marks are enough to refuse.
    const agent = request.agent(a);
    const confirm = await agent.get(`/admin/locks/confirm-release?lockId=target&fencingToken=${lock.fencingToken}`);
    const withToken = await agent
      .post('/admin/locks/release')
      .set('Origin', 'https://evil.example')
      .type('form')
      .send({ _csrf: csrfOf(confirm.text), lockId: 'target', fencingToken: String(lock.fencingToken) });
    expect(withToken.status).toBe(403);
    for (const res of [
      await request(a).post('/admin/locks/release-stale').set('Sec-Fetch-Site', 'same-site').type('form').send({}),
      await request(a).delete('/admin/locks/api/locks/target').set('Origin', 'https://evil.example'),
      await request(a).post('/admin/locks/api/locks/release-stale').set('Sec-Fetch-Site', 'cross-site'),
    ]) {
      expect(res.status).toBe(403);
    }
    expect(lock.isHeld()).toBe(true);
    expect(await mutex.events()).toEqual([]);
  });

  it('refuses a same-origin form POST without a valid token for its cookie', async () => {
    const lock = await hold('target2');
    const a = app();
    const agent = request.agent(a);
    const confirm = await agent.get(`/admin/locks/confirm-release?lockId=target2&fencingToken=${lock.fencingToken}`);
    const body = { lockId: 'target2', fencingToken: String(lock.fencingToken) };
    const sameOrigin = (r: request.Test) => r.set('Sec-Fetch-Site', 'same-origin').type('form');
    expect((await sameOrigin(agent.post('/admin/locks/release')).send(body)).status).toBe(403);
    expect((await sameOrigin(agent.post('/admin/locks/release')).send({ ...body, _csrf: 'x'.repeat(43) })).status).toBe(403);
    // A valid token, but for another browser's cookie.
    const other = await request(a).post('/admin/locks/release').type('form').send({ ...body, _csrf: csrfOf(confirm.text) });
    expect([other.status, other.text.includes('security token')]).toEqual([403, true]);
    expect(lock.isHeld()).toBe(true);
    const ok = await sameOrigin(agent.post('/admin/locks/release')).send({ ...body, _csrf: csrfOf(confirm.text) });
    expect(ok.status).toBe(303);
  });

  it('accepts a form rendered by another router only when both share the secret', async () => {
    const secret = 's'.repeat(32);
    const lock = await hold('shared');
    const one = request.agent(app({ secret }));
    const confirm = await one.get(`/admin/locks/confirm-release?lockId=shared&fencingToken=${lock.fencingToken}`);
    const cookie = String(confirm.headers['set-cookie']![0]).split(';')[0]!;
    const body = { _csrf: csrfOf(confirm.text), lockId: 'shared', fencingToken: String(lock.fencingToken) };
    const foreign = await request(app()).post('/admin/locks/release').set('Cookie', cookie).type('form').send(body);
    expect(foreign.status).toBe(403);
    const sibling = await request(app({ secret })).post('/admin/locks/release').set('Cookie', cookie).type('form').send(body);
    expect(sibling.status).toBe(303);
  });

  it('shows no result message that this router did not sign', async () => {
    const fake = Buffer.from(JSON.stringify({ kind: 'stale-released', count: 99, lockIds: ['x'] })).toString('base64url');
    const html = (await request(app()).get(`/admin/locks/?flash=${fake}.AAAA`)).text;
    expect(html).not.toContain('Released 99');
    expect(html).not.toContain('class="flash');
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
    const trusted = express();
    trusted.set('trust proxy', 'loopback');
    trusted.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true }));
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

describe('JSON API', () => {
  it('GET api/locks returns locks, nextCursor and counts, with the page filters', async () => {
    await hold('api/one', { holder: 'w1' });
    await hold('api/two');
    await hold('other');
    await makeExpired('api/two');
    const res = await request(app()).get('/admin/locks/api/locks?filter=api/');
    expect(res.status).toBe(200);
    expect(res.body.counts).toEqual({ total: 2, stale: 1, active: 1 });
    expect(res.body.nextCursor).toBeNull();
    expect(res.body.locks.map((l: { lockId: string }) => l.lockId)).toEqual(['api/one', 'api/two']);
    expect(res.body.locks[0]).toMatchObject({ holder: 'w1', status: 'active', stale: false, pid: process.pid, leaseSeconds: null });
    expect(typeof res.body.locks[0].ageSeconds).toBe('number');
    expect(res.body.locks[0].acquiredAt).toMatch(/Z$/);
    const stale = await request(app()).get('/admin/locks/api/locks?stale=true');
    expect(stale.body.locks.map((l: { lockId: string }) => l.lockId)).toEqual(['api/two']);
  });

  it('GET api/locks/:lockId returns one lock and 404 for an unknown one', async () => {
    const lock = await hold('one/lock');
    const res = await request(app()).get('/admin/locks/api/locks/one%2Flock');
    expect(res.body.lock).toMatchObject({ lockId: 'one/lock', fencingToken: lock.fencingToken });
    const missing = await request(app()).get('/admin/locks/api/locks/nope');
    expect([missing.status, missing.body.error.code, missing.body.error.lockId]).toEqual([404, 'LOCK_NOT_FOUND', 'nope']);
  });

  it('DELETE api/locks/:lockId releases ids with slashes, spaces, percent signs and unicode', async () => {
    for (const id of ['a/b c/ü', 'trailing/', 'x//y', '100% done', 'λ 🔒', 'release-stale']) {
      const lock = await hold(id);
      const res = await request(app()).delete(`/admin/locks/api/locks/${encodeURIComponent(id)}`);
      expect([id, res.status, res.body.status, res.body.event?.lockId]).toEqual([id, 200, 'released', id]);
      expect(res.body.event).toMatchObject({ fencingToken: lock.fencingToken, operator: 'alice', action: 'force-release' });
      await holderLoses(lock, `holder of ${id} to lose it`);
    }
    // Unencoded slashes name the same id as %2F.
    await hold('p/q');
    expect((await request(app()).delete('/admin/locks/api/locks/p/q')).body.event.lockId).toBe('p/q');
    // A leading slash too, on Express 4 as on 5: `//lead` names "/lead", never its neighbour "lead".
    const neighbour = await hold('lead');
    await hold('/lead');
    expect((await request(app()).get('/admin/locks/api/locks//lead')).body.lock?.lockId).toBe('/lead');
    expect((await request(app()).delete('/admin/locks/api/locks//lead')).body.event?.lockId).toBe('/lead');
    expect(neighbour.isHeld()).toBe(true);
  });

  it('DELETE api/locks/:lockId answers 404 for an unknown lock and 409 when the fencing token no longer matches', async () => {
    const lock = await hold('tokened');
    const missing = await request(app()).delete('/admin/locks/api/locks/never-held');
    expect([missing.status, missing.body.error.code]).toEqual([404, 'LOCK_NOT_FOUND']);
    const mismatch = await request(app()).delete(`/admin/locks/api/locks/tokened?fencingToken=${lock.fencingToken + 100}`);
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error).toMatchObject({ code: 'FENCING_TOKEN_MISMATCH', currentFencingToken: lock.fencingToken, fencingToken: lock.fencingToken + 100 });
    expect(lock.isHeld()).toBe(true);
    const ok = await request(app())
      .delete('/admin/locks/api/locks/tokened')
      .send({ fencingToken: lock.fencingToken, reason: 'via api' });
    expect([ok.status, ok.body.event.reason]).toEqual([200, 'via api']);
  });

  it('POST api/locks/release-stale releases only stale locks and returns their audit events', async () => {
    await hold('keep');
    await hold('drop');
    await makeExpired('drop');
    const res = await request(app()).post('/admin/locks/api/locks/release-stale').send({ reason: 'sweep' });
    expect(res.status).toBe(200);
    expect(res.body.released).toBe(1);
    expect(res.body.events[0]).toMatchObject({ lockId: 'drop', action: 'release-stale', reason: 'sweep', operator: 'alice' });
    expect((await mutex.list()).map((r) => r.lockId)).toEqual(['keep']);
    const none = await request(app()).post('/admin/locks/api/locks/release-stale');
    expect(none.body).toEqual({ released: 0, events: [] });
  });

  it('GET api/events returns the audit trail, newest first, optionally for one lock', async () => {
    for (const id of ['e1', 'e2', 'e1']) {
      await hold(id);
      await request(app()).delete(`/admin/locks/api/locks/${id}`);
    }
    const all = await request(app()).get('/admin/locks/api/events');
    expect(all.body.events.map((e: { lockId: string }) => e.lockId)).toEqual(['e1', 'e2', 'e1']);
    const one = await request(app()).get('/admin/locks/api/events?lockId=e2&limit=5');
    expect(one.body.events).toHaveLength(1);
    expect(one.body.events[0]).toMatchObject({ lockId: 'e2', operator: 'alice', createdAt: expect.stringMatching(/Z$/) });
  });
});

describe('junk input', () => {
  const tooLong = 'x'.repeat(256);

  it('answers bad fencing tokens with 400 and a clear message, releasing nothing', async () => {
    const lock = await hold('junk-target');
    const a = app();
    for (const token of ['-1', '1.5', 'abc', '1e400', '0', '', '9007199254740993']) {
      const res = await request(a).delete(`/admin/locks/api/locks/junk-target?fencingToken=${encodeURIComponent(token)}`);
      expect([token, res.status, res.body.error.code]).toEqual([token, 400, 'INVALID_FENCING_TOKEN']);
      expect(res.body.error.message).toMatch(/fencingToken must be a positive whole number/);
    }
    for (const body of ['{"fencingToken": 1e400}', '{"fencingToken": -1}', '{"fencingToken": 1.5}', '{"fencingToken": "abc"}', '{"fencingToken": [1]}']) {
      const res = await request(a).delete('/admin/locks/api/locks/junk-target').set('Content-Type', 'application/json').send(body);
      expect([body, res.status, res.body.error.code]).toEqual([body, 400, 'INVALID_FENCING_TOKEN']);
    }
    const both = await request(a).delete(`/admin/locks/api/locks/junk-target?fencingToken=${lock.fencingToken}`).send({ fencingToken: lock.fencingToken });
    expect([both.status, both.body.error.code]).toEqual([400, 'INVALID_FENCING_TOKEN']);
    const page = await request(a).get('/admin/locks/confirm-release?lockId=junk-target&fencingToken=-1');
    expect([page.status, page.type]).toEqual([400, 'text/html']);
    expect(page.text).toContain('fencingToken must be a positive whole number, got &#34;-1&#34;');
    expect(lock.isHeld()).toBe(true);
  });

  it('answers over-long ids, NUL characters and broken %-escapes with 400', async () => {
    const a = app();
    for (const path of [`/api/locks/${tooLong}`, '/api/locks/a%00b', '/api/locks/%E0%A4%A', '/api/locks/%ZZ', '/api/events?lockId=%00']) {
      const res = await request(a).get(`/admin/locks${path}`);
      expect([path, res.status, res.body.error.code]).toEqual([path, 400, 'INVALID_LOCK_ID']);
      expect(res.body.error.message).toEqual(expect.any(String));
      expect(JSON.stringify(res.body)).not.toMatch(/\.ts:|node_modules/);
    }
    const del = await request(a).delete('/admin/locks/api/locks/%E0%A4%A');
    expect(del.status).toBe(400);
    const html = await request(a).get(`/admin/locks/confirm-release?lockId=${tooLong}&fencingToken=1`);
    expect([html.status, html.type]).toEqual([400, 'text/html']);
    expect(html.text).toContain('lockId must be at most 255 characters');
  });

  it('answers junk query parameters and page cursors with 400 and a code naming the parameter, never 500', async () => {
    const a = app();
    const junk: [string, string][] = [
      ['after=abc!', 'INVALID_CURSOR'],
      ['after=eyJ4IjoxfQ', 'INVALID_CURSOR'],
      ['after=a&after=b', 'INVALID_CURSOR'],
      ['filter=a%00b', 'INVALID_FILTER'],
      [`filter=${tooLong}`, 'INVALID_FILTER'],
      ['filter=a&filter=b', 'INVALID_FILTER'],
      ['refresh=7', 'INVALID_REFRESH'],
      ['stale=maybe', 'INVALID_STALE'],
      ['limit=0', 'INVALID_LIMIT'],
      ['limit=abc', 'INVALID_LIMIT'],
      ['limit=501', 'INVALID_LIMIT'],
    ];
    for (const [qs, code] of junk) {
      for (const path of ['/admin/locks/', '/admin/locks/api/locks']) {
        // The page has no limit (it uses pageSize); the API has no auto-refresh.
        if ((path === '/admin/locks/' && qs.startsWith('limit')) || (path.includes('api') && qs.startsWith('refresh'))) continue;
        const res = await request(a).get(`${path}?${qs}`);
        expect([path, qs, res.status]).toEqual([path, qs, 400]);
        if (path.includes('api')) expect([qs, res.body.error]).toEqual([qs, { code, message: expect.any(String) }]);
        else expect([qs, res.text]).toEqual([qs, expect.stringContaining(`<code>${code}</code>`)]);
      }
    }
    for (const [qs, code] of [['limit=0', 'INVALID_LIMIT'], ['lockId=%00', 'INVALID_LOCK_ID'], ['lockId=a&lockId=b', 'INVALID_LOCK_ID']]) {
      const res = await request(a).get(`/admin/locks/api/events?${qs}`);
      expect([qs, res.status, res.body.error.code]).toEqual([qs, 400, code]);
    }
    const cursor = await request(a).get('/admin/locks/?after=abc');
    expect(cursor.text).toContain('The page cursor (&#34;after&#34;) is not valid');
  });

  it('answers malformed or oversized bodies and form-encoded API posts with 4xx', async () => {
    await hold('body-target');
    const a = app();
    const badJson = await request(a).delete('/admin/locks/api/locks/body-target').set('Content-Type', 'application/json').send('{"fencingToken":');
    expect([badJson.status, badJson.body.error.code]).toEqual([400, 'INVALID_BODY']);
    const huge = await request(a).post('/admin/locks/api/locks/release-stale').send({ reason: 'x'.repeat(20_000) });
    expect([huge.status, huge.body.error.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    const form = await request(a).post('/admin/locks/api/locks/release-stale').type('form').send({ reason: 'x' });
    expect([form.status, form.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const longReason = await request(a).post('/admin/locks/api/locks/release-stale').send({ reason: 'x'.repeat(1001) });
    expect([longReason.status, longReason.body.error.code]).toEqual([400, 'INVALID_REASON']);
    const nulReason = await request(a).post('/admin/locks/api/locks/release-stale').send({ reason: 'a\u0000b' });
    expect([nulReason.status, nulReason.body.error.code]).toEqual([400, 'INVALID_REASON']);
    const objectReason = await request(a).post('/admin/locks/api/locks/release-stale').send({ reason: { a: 1 } });
    expect([objectReason.status, objectReason.body.error.code]).toEqual([400, 'INVALID_REASON']);
    const objectDeleteReason = await request(a).delete('/admin/locks/api/locks/body-target').send({ reason: { a: 1 } });
    expect([objectDeleteReason.status, objectDeleteReason.body.error.code]).toEqual([400, 'INVALID_REASON']);
    const wrongMethod = await request(a).put('/admin/locks/api/locks/body-target');
    expect([wrongMethod.status, wrongMethod.headers.allow]).toEqual([405, 'GET, HEAD, DELETE']);
    expect(await rowCount()).toBe(1);
  });

  it('answers unknown paths inside its mount with its own 404', async () => {
    const html = await request(app()).get('/admin/locks/nope');
    expect([html.status, html.type]).toEqual([404, 'text/html']);
    const json = await request(app()).get('/admin/locks/api/nope');
    expect(json.body.error.code).toBe('NOT_FOUND');
  });
});

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
    await hold('form-target');
    await makeExpired('form-target');
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
    expect(await rowCount()).toBe(1);
    expect(await mutex.events()).toEqual([]);
    // Without a Content-Type, or with JSON, the same requests work.
    const ok = await raw(a, 'POST', '/admin/locks/api/locks/release-stale', { 'Content-Length': '0' });
    expect([ok.status, ok.body.released]).toEqual([200, 1]);
  });

  it('answers a JSON body that is not an object with 400 and releases nothing', async () => {
    const lock = await hold('array-target');
    await makeExpired('array-target');
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
    expect(await rowCount()).toBe(1);
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

describe('mounting in a host app', () => {
  it('leaves the host view engine, views folder and error handler alone', async () => {
    const viewsDir = mkdtempSync(path.join(tmpdir(), 'dbm-host-views-'));
    writeFileSync(path.join(viewsDir, 'home.fake'), 'unused');
    afterCleanup.push(() => rmSync(viewsDir, { recursive: true, force: true }));
    const host = express();
    host.engine('fake', (file, options, callback) => callback(null, `fake:${String(file).split('/').pop()}:${String((options as { who: string }).who)}`));
    host.set('view engine', 'fake');
    host.set('views', viewsDir);
    const hostErrors: unknown[] = [];
    host.get('/', (_req, res) => res.render('home', { who: 'host' }));
    host.use('/ops/locks', createDbMutexAdminRouter({ mutex, authorize: () => true }));
    host.use((error: unknown, _req: Request, res: express.Response, _next: express.NextFunction) => {
      hostErrors.push(error);
      res.status(599).send('host handler');
    });
    await hold('<host-check>');
    expect((await request(host).get('/')).text).toBe('fake:home.fake:host');
    const page = await request(host).get('/ops/locks/');
    expect(page.status).toBe(200);
    expect(page.text).toContain('&lt;host-check&gt;');
    expect(hrefsOf(page.text, /dashboard\.css/)[0]).toMatch(/^\/ops\/locks\/static\/dashboard\.css\?v=/);
    expect((await request(host).get('/ops/locks/api/locks?limit=-1')).status).toBe(400);
    expect((await request(host).get('/ops/locks/api/locks/%ZZ')).status).toBe(400);
    expect((await request(host).get('/')).text).toBe('fake:home.fake:host');
    expect(host.get('view engine')).toBe('fake');
    expect(host.get('views')).toBe(viewsDir);
    expect(hostErrors).toEqual([]);
  });

  it('works behind host body parsers and at a nested mount path', async () => {
    const host = express();
    host.use(express.json());
    host.use(express.urlencoded({ extended: true }));
    const outer = express.Router();
    outer.use('/locks', createDbMutexAdminRouter({ mutex, authorize: () => true }));
    host.use('/tools', outer);
    const lock = await hold('nested');
    const agent = request.agent(host);
    const dashboard = await agent.get('/tools/locks');
    const [confirmUrl] = hrefsOf(dashboard.text, /confirm-release\?/);
    expect(confirmUrl).toMatch(/^\/tools\/locks\/confirm-release\?lockId=nested&fencingToken=\d+$/);
    const confirm = await agent.get(confirmUrl!);
    expect(confirm.text).toContain('action="/tools/locks/release"');
    const post = await agent.post('/tools/locks/release').type('form').send({ _csrf: csrfOf(confirm.text), lockId: 'nested', fencingToken: String(lock.fencingToken) });
    expect(post.status).toBe(303);
    expect(post.headers.location).toMatch(/^\/tools\/locks\/\?flash=/);
    const del = await agent.delete('/tools/locks/api/locks/nested').send({});
    expect(del.status).toBe(404);
  });

  it('uses the default DbMutex, looked up when a request arrives', async () => {
    const host = express();
    const reported: unknown[] = [];
    host.use('/locks', createDbMutexAdminRouter({ authorize: () => true, onError: (error) => reported.push(error) }));
    const before = await request(host).get('/locks/api/locks');
    expect([before.status, before.body.error.code]).toEqual([500, 'NOT_CONFIGURED']);
    expect(before.body.error.message).toContain('initDbMutex');
    expect(reported).toHaveLength(1);
    const defaultMutex = initDbMutex(ctx.sequelize(), {});
    try {
      await hold('via-default');
      const after = await request(host).get('/locks/api/locks');
      expect(after.body.locks.map((l: { lockId: string }) => l.lockId)).toEqual(['via-default']);
    } finally {
      await defaultMutex.close();
    }
  });

  it('answers a database failure with a 500 that carries no details', async () => {
    const broken = ctx.sequelize();
    const brokenMutex = initDbMutex(broken, { setDefault: false });
    await broken.close();
    const reported: unknown[] = [];
    const a = app({ mutex: brokenMutex, onError: (error) => reported.push(error) });
    const json = await request(a).get('/admin/locks/api/locks');
    expect(json.status).toBe(500);
    expect(json.body).toEqual({ error: { code: 'INTERNAL', message: expect.any(String) } });
    const html = await request(a).get('/admin/locks/');
    expect(html.status).toBe(500);
    expect(html.text).toContain('Something went wrong on the server');
    expect(reported.length).toBe(2);
  });
});
