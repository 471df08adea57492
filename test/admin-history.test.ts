/**
 * The dashboard's lock page and its history JSON over HTTP (supertest) against a real database: the
 * current holder and its Release button, the history table, the summary figures and chart after a
 * scripted run, links from the list, escaping, and the 400s and 405s of junk input.
 */
import express, { type Express } from 'express';
import request from 'supertest';
import { createDbMutexAdminRouter, type DbMutex, type DbMutexAdminRouterOptions, type DbMutexHeldLock } from '../src';
import { holderLoses, unescapeHtml } from './helpers/dashboard';
import { TestContext } from './helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
/** A second DbMutex plays the job processes that hold the locks. */
let holders: DbMutex;
const held: DbMutexHeldLock[] = [];

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
  holders = await ctx.mutex({ holder: 'worker-a', heartbeat: false, ttlSeconds: 600 });
});

afterEach(async () => {
  for (const lock of held.splice(0)) await lock.release().catch(() => undefined);
});

afterAll(async () => {
  await ctx.cleanup();
});

function app(options: Partial<DbMutexAdminRouterOptions> = {}, user: unknown = { username: 'alice' }): Express {
  const a = express();
  a.use((req, _res, next) => {
    (req as { user?: unknown }).user = user;
    next();
  });
  a.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true, ...options }));
  return a;
}

async function hold(lockId: string, options: Parameters<DbMutex['acquire']>[1] = {}, by = holders): Promise<DbMutexHeldLock> {
  const lock = await by.acquire(lockId, options);
  held.push(lock);
  return lock;
}

/**
 * One acquisition, released, then laid out in the past: held for exactly `seconds`, ended `endedAgo`
 * seconds ago by the database clock (both times moved in one statement, so the hold is exact).
 */
async function heldFor(lockId: string, seconds: number, options: Parameters<DbMutex['acquire']>[1] = {}, endedAgo = 0): Promise<DbMutexHeldLock> {
  const lock = await hold(lockId, options);
  await lock.release();
  await ctx.sql.setEndedSecondsAgo(lockId, lock.fencingToken, { acquired_at: endedAgo + seconds, ended_at: endedAgo });
  return lock;
}

/** Three releases (held 10, 20, 30 s) and a force-release after 40 s, then a fourth holder who still holds it. */
async function scriptedRun(lockId: string, a: Express) {
  for (const [i, seconds] of [10, 20, 30].entries()) await heldFor(lockId, seconds, {}, 100 - 10 * i);
  const forced = await hold(lockId, { holder: 'stuck-worker' });
  const res = await request(a).delete(`/admin/locks/api/locks/${encodeURIComponent(lockId)}`).send({ reason: 'worker hung' });
  expect(res.status).toBe(200);
  // Its end is the audit entry's, which says who ended it.
  await ctx.sql.setEndedSecondsAgo(lockId, forced.fencingToken, { acquired_at: 40, created_at: 0 }, 'db_mutex_events');
  await holderLoses(forced, 'the force-released holder to lose its lock');
  const current = await hold(lockId, { holder: 'worker-now' });
  return { forced, current };
}

function hrefsOf(html: string, pattern: RegExp): string[] {
  return [...html.matchAll(/href="([^"]*)"/g)].map((m) => unescapeHtml(m[1]!)).filter((h) => pattern.test(h));
}

/** A value of the page's summary cards, by label. */
function statOf(html: string, label: string): string | undefined {
  return new RegExp(`${label}</span><span class="stat-value">([^<]*)<`).exec(html)?.[1];
}


describe('the history JSON', () => {
  it('answers the current holder, the counts by outcome, p50/p95/max and the entries newest first after a scripted run', async () => {
    const a = app();
    const { current } = await scriptedRun('json/run', a);
    const res = await request(a).get('/admin/locks/api/locks/json%2Frun/history');
    expect(res.status).toBe(200);
    expect(res.body.lockId).toBe('json/run');
    expect(res.body.current).toMatchObject({ lockId: 'json/run', holder: 'worker-now', fencingToken: current.fencingToken, status: 'active' });
    expect(res.body.summary.count).toBe(4);
    expect(res.body.summary.byOutcome).toEqual({ released: 3, lost: 0, 'force-released': 1, expired: 0 });
    // Nearest rank over [10, 20, 30, 40] s: p50 is the second, p95 and max the fourth.
    expect(res.body.summary.heldMs).toEqual({ p50: 20_000, p95: 40_000, max: 40_000 });
    const entries = res.body.entries as { outcome: string; heldMs: number; holder: string; operator: string | null; detail: string | null; endedAt: string }[];
    expect(entries.map((e) => e.outcome)).toEqual(['force-released', 'released', 'released', 'released']);
    expect(entries.map((e) => e.heldMs)).toEqual([40_000, 30_000, 20_000, 10_000]);
    expect(entries[0]).toMatchObject({ holder: 'stuck-worker', operator: 'alice', detail: 'worker hung', lockId: 'json/run', pid: process.pid });
    expect(entries[0]!.endedAt).toMatch(/Z$/);
    expect(typeof (res.body.entries[0] as { fencingToken: unknown }).fencingToken).toBe('number');
  });

  it('answers current null and empty figures for a lock that was never held', async () => {
    const res = await request(app()).get('/admin/locks/api/locks/never/history');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      lockId: 'never',
      current: null,
      summary: { count: 0, byOutcome: { released: 0, lost: 0, 'force-released': 0, expired: 0 }, heldMs: null },
      entries: [],
    });
  });

  it('returns the newest ?limit entries, and the figures of those', async () => {
    for (const [i, seconds] of [10, 20, 30].entries()) await heldFor('limited', seconds, {}, 100 - 10 * i);
    const res = await request(app()).get('/admin/locks/api/locks/limited/history?limit=2');
    expect(res.body.entries.map((e: { heldMs: number }) => e.heldMs)).toEqual([30_000, 20_000]);
    expect(res.body.summary).toMatchObject({ count: 2, heldMs: { p50: 20_000, max: 30_000 } });
  });

  it('answers a bad limit with 400 INVALID_LIMIT in the API error shape', async () => {
    for (const limit of ['0', '10001', 'abc', '-1', '1.5', '']) {
      const res = await request(app()).get(`/admin/locks/api/locks/x/history?limit=${limit}`);
      expect([limit, res.status, res.body]).toEqual([limit, 400, { error: { code: 'INVALID_LIMIT', message: expect.any(String) } }]);
    }
    const twice = await request(app()).get('/admin/locks/api/locks/x/history?limit=1&limit=2');
    expect([twice.status, twice.body.error.code]).toEqual([400, 'INVALID_LIMIT']);
    expect((await request(app()).get('/admin/locks/api/locks/x/history?limit=10000')).status).toBe(200);
  });

  it('answers over-long ids, NUL characters and broken %-escapes with 400 INVALID_LOCK_ID, never 500', async () => {
    for (const id of ['x'.repeat(256), 'a%00b', '%E0%A4%A', '%ZZ', '%ED%A0%80']) {
      const res = await request(app()).get(`/admin/locks/api/locks/${id}/history`);
      expect([id, res.status, res.body.error?.code]).toEqual([id, 400, 'INVALID_LOCK_ID']);
    }
  });

  it('reads a path ending in /history as the history route, and an encoded %2Fhistory as part of the id', async () => {
    await hold('a/history');
    const lock = await request(app()).get('/admin/locks/api/locks/a%2Fhistory');
    expect(lock.body.lock?.lockId).toBe('a/history');
    const history = await request(app()).get('/admin/locks/api/locks/a%2Fhistory/history');
    expect(history.body).toMatchObject({ lockId: 'a/history', current: { lockId: 'a/history' } });
    // An unencoded slash in the id works as on the other lock routes.
    expect((await request(app()).get('/admin/locks/api/locks/a/history/history')).body.lockId).toBe('a/history');
  });

  it('refuses every method but GET on the history route with 405, releasing nothing', async () => {
    const lock = await hold('keep-me');
    for (const method of ['delete', 'post', 'put'] as const) {
      const res = await request(app())[method]('/admin/locks/api/locks/keep-me/history');
      expect([method, res.status, res.headers.allow, res.body.error?.code]).toEqual([method, 405, 'GET, HEAD', 'METHOD_NOT_ALLOWED']);
    }
    expect(lock.isHeld()).toBe(true);
    expect(await mutex.inspect('keep-me')).not.toBeNull();
  });
});

describe('the lock page', () => {
  it('shows the current holder with its Release button, the history table, the figures and a chart of every entry', async () => {
    const a = app();
    const { current } = await scriptedRun('page/run', a);
    const res = await request(a).get('/admin/locks/locks/page%2Frun');
    expect(res.status).toBe(200);
    const html = res.text;
    expect(html).toContain('<code class="lock-id">page/run</code>');
    expect(html).toContain('worker-now');
    expect(statOf(html, 'Acquisitions')).toBe('4');
    expect(statOf(html, 'Held p50')).toBe('20 s');
    expect(statOf(html, 'Held p95')).toBe('40 s');
    expect(statOf(html, 'Held max')).toBe('40 s');
    expect(html).toMatch(/badge-released">released<\/span> <strong>3</);
    expect(html).toMatch(/badge-force-released">force-released<\/span> <strong>1</);
    expect(html).toMatch(/badge-lost">lost<\/span> <strong>0</);
    expect(html).toContain('worker hung (by alice)');
    expect(html.match(/<tr>\s*<td data-label="Holder">/g)).toHaveLength(4);
    // The chart: one point per entry, drawn by the server, with a tooltip each.
    const svg = /<svg class="hold-chart"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? '';
    expect(svg.match(/<circle /g)).toHaveLength(4);
    expect(svg.match(/class="chart-point chart-force-released"/g)).toHaveLength(1);
    expect(svg).toContain('class="chart-median"');
    expect(svg).toMatch(/<title>[^<]*force-released, held 40 s, token/);

    // The Release button goes through the existing confirmation of exactly this acquisition.
    const [release] = hrefsOf(html, /confirm-release\?/);
    expect(release).toBe(`/admin/locks/confirm-release?lockId=page%2Frun&fencingToken=${current.fencingToken}`);
    const confirm = await request(a).get(release!);
    expect([confirm.status, confirm.text.includes(`Force-release token ${current.fencingToken}`)]).toEqual([200, true]);
    expect(hrefsOf(html, /\/history$/)).toEqual(['/admin/locks/api/locks/page%2Frun/history']);
  });

  it('says a free lock is free and has no history yet, without a chart or a Release button', async () => {
    const html = (await request(app()).get('/admin/locks/locks/nobody-yet')).text;
    expect(html).toContain('Nobody holds this lock right now.');
    expect(html).toContain('Nothing yet');
    expect(html).not.toContain('<svg');
    expect(hrefsOf(html, /confirm-release/)).toEqual([]);
    expect(statOf(html, 'Held p50')).toBe('—');
  });

  it('is linked from every lock row and every audit entry of the list', async () => {
    await hold('list/linked one');
    await hold('to-release');
    await request(app()).delete('/admin/locks/api/locks/to-release');
    const html = (await request(app()).get('/admin/locks/')).text;
    expect(hrefsOf(html, /\/locks\/locks\//)).toEqual(expect.arrayContaining(['/admin/locks/locks/list%2Flinked%20one', '/admin/locks/locks/to-release']));
    for (const href of hrefsOf(html, /\/locks\/locks\//)) expect((await request(app()).get(href)).status).toBe(200);
  });

  it('offers no Release button in read-only mode', async () => {
    await hold('read-only/page');
    const html = (await request(app({ readOnly: true })).get('/admin/locks/locks/read-only%2Fpage')).text;
    expect(html).toContain('worker-a');
    expect(hrefsOf(html, /confirm-release/)).toEqual([]);
  });

  it('renders ids, holders, hosts and reasons with <script> and quotes as text, in the table, the chart and the title', async () => {
    const evil = `<script>alert("id")</script>'`;
    const holder = `<img src=x onerror=alert(1)>"`;
    await heldFor(evil, 5, { holder });
    const forced = await hold(evil, { holder });
    await request(app()).delete(`/admin/locks/api/locks/${encodeURIComponent(evil)}`).send({ reason: '<b>why</b>"' });
    await holderLoses(forced, 'the holder to lose it');
    await hold(evil, { holder });
    const a = app({}, { username: '<i>mallory</i>' });
    const html = (await request(a).get(`/admin/locks/locks/${encodeURIComponent(evil)}`)).text;
    for (const raw of ['<script>alert', '<img src=x', '<b>why', '<i>mallory']) expect(html).not.toContain(raw);
    expect(html).toContain('&lt;script&gt;alert(&#34;id&#34;)&lt;/script&gt;&#39;');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;&#34;');
    expect(html).toContain('&lt;b&gt;why&lt;/b&gt;&#34; (by alice)');
    expect(html).toContain('Signed in as <strong>&lt;i&gt;mallory&lt;/i&gt;</strong>');
    expect(html).toContain('<title>Lock &lt;script&gt;');
    const svg = /<svg class="hold-chart"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? '';
    expect(svg).toContain('&lt;img src=x onerror=alert(1)&gt;&#34;</title>');
    // Links carry the id %-encoded, never raw.
    for (const href of [...html.matchAll(/href="([^"]*)"/g)].map((m) => m[1]!)) expect(href).not.toMatch(/[<>"']/);
    const json = await request(a).get(`/admin/locks/api/locks/${encodeURIComponent(evil)}/history`);
    expect(json.type).toBe('application/json');
    expect(json.body.entries[0]).toMatchObject({ lockId: evil, holder, detail: '<b>why</b>"' });
  });

  it('answers junk ids with the HTML 400 page, never 500', async () => {
    for (const id of ['x'.repeat(256), 'a%00b', '%E0%A4%A', '%ZZ', '%ED%A0%80']) {
      const res = await request(app()).get(`/admin/locks/locks/${id}`);
      expect([id, res.status, res.type]).toEqual([id, 400, 'text/html']);
      expect(res.text).toContain('<code>INVALID_LOCK_ID</code>');
    }
  });

  it('shows control characters of a (valid) lock id as marked escapes, never raw', async () => {
    await heldFor('bell\u0007and\u001b[2Jesc', 2);
    const html = (await request(app()).get('/admin/locks/locks/bell%07and%1B%5B2Jesc')).text;
    expect(html).toContain('bell<span class="esc" title="invisible character U+0007">\\x07</span>and');
    for (const control of ['\u0007', '\u001b']) expect(html).not.toContain(control);
  });

  it('passes the Content-Security-Policy: no inline script, no style attribute, no outside asset', async () => {
    await heldFor('csp/check', 3);
    const res = await request(app()).get('/admin/locks/locks/csp%2Fcheck');
    const csp = res.headers['content-security-policy'] as string;
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.text).toContain('<svg class="hold-chart"');
    expect(res.text).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
    expect(res.text).not.toMatch(/\sstyle=/i);
    expect(res.text).not.toMatch(/<style/i);
    expect(res.text).not.toMatch(/\son[a-z]+=/i);
    expect(res.text).not.toMatch(/(src|href)="(https?:)?\/\//);
  });
});

describe('a DbMutex without history', () => {
  it('says on the lock page that history is off', async () => {
    const quiet = await ctx.mutex({ history: false });
    const a = express();
    a.use('/admin', createDbMutexAdminRouter({ mutex: quiet, authorize: () => true }));
    const html = (await request(a).get('/admin/locks/anything')).text;
    expect(html).toContain('History is off for this DbMutex.');
  });
});
