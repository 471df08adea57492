/**
 * Lock ids, holder labels, host names, operators and reasons are free text written by other programs.
 * Characters that draw nothing or reorder the text around them (bidirectional overrides, zero-width
 * characters, C0/C1 controls, other format characters) could make one id look like another on the
 * page. Every HTML view shows them as visible escapes, forms still post the exact id, and the JSON API
 * escapes them as \u escapes that parse back to the exact text. On a real database.
 */
import express, { type Express } from 'express';
import request from 'supertest';
import { createDbMutexAdminRouter, type DbMutex, type DbMutexHeldLock } from '../src';
import { unescapeHtml } from './helpers/dashboard';
import { notifies, TestContext } from './helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
const held: DbMutexHeldLock[] = [];

/**
 * Written from the specification, not from the code: C0 and C1 controls (tab, LF and CR included),
 * DEL, soft hyphen, no-break and other non-ASCII spaces, zero-width characters, bidirectional marks,
 * embeddings, overrides and isolates, line and paragraph separators, word joiner and invisible
 * operators, the byte order mark, and tag characters.
 */
const INVISIBLE =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u00a0\u00ad\u061c\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]|[\u{e0000}-\u{e007f}]/u;

/** Looks like "invoice.pdf" in a browser that obeys the override, and is not. */
const SPOOF = 'invoice\u202Efdp.exe';
const IDS = [
  SPOOF,
  'zero\u200Bwidth',
  'isolate\u2066x\u2069',
  'bom\uFEFF',
  'c1\u0085\u009B[2J',
  'esc\u001B[31m',
  'line\nbreak',
  'nb\u00A0space',
  'tag\u{E0041}',
];
const HOLDER = 'wor\u200Bker\u202E';
const HOST = 'host\u2067name';
const OPERATOR = 'al\u200Dice';
const REASON = 'because\u202E of \u2028 this';

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
});

afterEach(async () => {
  for (const lock of held.splice(0)) await lock.release().catch(() => undefined);
  await ctx.exec('DELETE FROM db_mutex_locks');
  await ctx.sql.resetEvents();
});

afterAll(() => ctx.cleanup());

async function holdAll(): Promise<DbMutexHeldLock[]> {
  const holders = await ctx.mutex({ holder: HOLDER, heartbeat: false, ttlSeconds: 600 });
  const locks: DbMutexHeldLock[] = [];
  for (const id of IDS) {
    const lock = await holders.acquire(id);
    held.push(lock);
    locks.push(lock);
    await ctx.exec('UPDATE db_mutex_locks SET hostname = ? WHERE lock_id = ?', [HOST, id]);
  }
  return locks;
}

function app(): Express {
  const a = express();
  a.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true, operator: () => OPERATOR }));
  return a;
}

/**
 * The page with the two places that must keep the exact text removed: the hidden lock-id field
 * of a form and the filter box. Everything left is shown to the operator.
 */
function shownPart(html: string): string {
  return html.replace(/<input type="hidden" name="lockId" value="[^"]*">/g, '').replace(/<input id="filter"[^>]*>/g, '');
}

/** The same without tab, LF and CR, which the templates themselves use between and around text. */
const INVISIBLE_IN_MARKUP = new RegExp(INVISIBLE.source.replace('\\u0000-\\u001f', '\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f'), 'u');

function expectNoInvisible(html: string, where: string): void {
  const shown = shownPart(html);
  const found = INVISIBLE_IN_MARKUP.exec(shown);
  expect([where, found ? `U+${found[0].codePointAt(0)!.toString(16)} near ${JSON.stringify(shown.slice(Math.max(0, found.index - 40), found.index + 10))}` : null]).toEqual([where, null]);
}

describe('invisible characters on the dashboard', () => {
  it('shows them as visible escapes in the lock list, its links and tooltips', async () => {
    await holdAll();
    const res = await request(app()).get('/admin/locks/');
    expect(res.status).toBe(200);
    expectNoInvisible(res.text, 'list');
    expect(res.text).toContain('invoice<span class="esc" title="invisible character U+202E">\\u202e</span>fdp.exe');
    for (const escape of ['\\u200b', '\\u2066', '\\u2069', '\\ufeff', '\\x85', '\\x9b', '\\x1b', '\\x0a', '\\xa0', '\\u{e0041}', '\\u2067', '\\u200d']) {
      expect([escape, res.text.includes(`>${escape}</span>`)]).toEqual([escape, true]);
    }
    // The release links still name the exact id (percent-encoded), and their labels show the escape.
    expect(res.text).toContain(`lockId=${encodeURIComponent(SPOOF)}&amp;`);
    expect(res.text).toContain('aria-label="Force-release invoice\\u202efdp.exe"');
    expect(res.text).toContain('<code class="lock-id">line<span class="esc" title="invisible character U+000A">\\x0a</span>break</code>');
  });

  it('shows them escaped on both confirmation pages while the form posts the exact id', async () => {
    const [lock] = await holdAll();
    await ctx.sql.setSecondsAgo(SPOOF, { expires_at: 60 });
    const agent = request.agent(app());
    const confirm = await agent.get(`/admin/locks/confirm-release?lockId=${encodeURIComponent(SPOOF)}&fencingToken=${lock!.fencingToken}`);
    expect(confirm.status).toBe(200);
    expectNoInvisible(confirm.text, 'confirm-release');
    expect(confirm.text).toContain('<title>Release invoice\\u202efdp.exe? · sequelize-db-mutex</title>');
    expect(confirm.text).toContain('<code class="lock-id">invoice<span class="esc"');
    const hidden = /<input type="hidden" name="lockId" value="([^"]*)">/.exec(confirm.text)![1]!;
    expect(unescapeHtml(hidden)).toBe(SPOOF);
    const staleConfirm = await agent.get('/admin/locks/confirm-release-stale');
    expectNoInvisible(staleConfirm.text, 'confirm-release-stale');
    expect(staleConfirm.text).toContain('\\u202e');

    const csrf = /name="_csrf" value="([^"]+)"/.exec(confirm.text)![1]!;
    const post = await agent
      .post('/admin/locks/release')
      .type('form')
      .send({ _csrf: csrf, lockId: SPOOF, fencingToken: String(lock!.fencingToken), reason: REASON });
    expect(post.status).toBe(303);
    if (!notifies) await expect(lock!.extend()).rejects.toMatchObject({ reason: 'released-by-other' });
    expect((await mutex.events())[0]).toMatchObject({ lockId: SPOOF, reason: REASON, holder: HOLDER, operator: OPERATOR });

    // The result message and the audit trail after the redirect.
    const page = await agent.get(post.headers.location!);
    expectNoInvisible(page.text, 'list after the release');
    expect(page.text).toContain('Released “invoice<span class="esc" title="invisible character U+202E">\\u202e</span>fdp.exe”');
    expect(page.text).toMatch(/<td data-label="Reason">because<span class="esc"[^>]*>\\u202e<\/span> of <span class="esc"[^>]*>\\u2028<\/span> this<\/td>/);
  });

  it('shows them escaped in a filter that matches nothing, in error pages and in the stale-release message', async () => {
    await holdAll();
    const a = app();
    const filter = await request(a).get(`/admin/locks/?filter=${encodeURIComponent('nothing\u202Ehere')}`);
    expectNoInvisible(filter.text, 'empty filter');
    expect(filter.text).toContain('No lock id contains “nothing<span class="esc"');
    // The filter box keeps what was typed, exactly.
    expect(filter.text).toContain('value="nothing\u202Ehere"');
    const error = await request(a).get(`/admin/locks/confirm-release?lockId=x&fencingToken=${encodeURIComponent('1\u202E2')}`);
    expect(error.status).toBe(400);
    expectNoInvisible(error.text, 'error page');
    expect(error.text).toContain('\\u202e');
    for (const id of IDS) await ctx.sql.setSecondsAgo(id, { expires_at: 60 });
    const agent = request.agent(a);
    const confirm = await agent.get('/admin/locks/confirm-release-stale');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(confirm.text)![1]!;
    const post = await agent.post('/admin/locks/release-stale').type('form').send({ _csrf: csrf });
    const page = await agent.get(post.headers.location!);
    expect(page.text).toContain(`Released ${IDS.length} stale locks.`);
    expectNoInvisible(page.text, 'list after releasing the stale locks');
  });
});

describe('invisible characters in the JSON API', () => {
  it('escapes them as \\u escapes that parse back to the exact text', async () => {
    await holdAll();
    const a = app();
    const list = await request(a).get('/admin/locks/api/locks');
    expect(list.status).toBe(200);
    expect(list.text).not.toMatch(INVISIBLE);
    expect(list.text).toContain('"lockId":"invoice\\u202efdp.exe"');
    expect(list.text).toContain('"lockId":"tag\\udb40\\udc41"');
    expect((list.body.locks as { lockId: string }[]).map((l) => l.lockId).sort()).toEqual([...IDS].sort());
    expect(list.body.locks[0].holder).toBe(HOLDER);
    expect(list.body.locks[0].hostname).toBe(HOST);
    const one = await request(a).get(`/admin/locks/api/locks/${encodeURIComponent(SPOOF)}`);
    expect(one.text).not.toMatch(INVISIBLE);
    expect(one.body.lock.lockId).toBe(SPOOF);
    const released = await request(a).delete(`/admin/locks/api/locks/${encodeURIComponent(SPOOF)}`).send({ reason: REASON });
    expect(released.text).not.toMatch(INVISIBLE);
    expect(released.body.event).toMatchObject({ lockId: SPOOF, reason: REASON, operator: OPERATOR });
    const events = await request(a).get('/admin/locks/api/events');
    expect(events.text).not.toMatch(INVISIBLE);
    expect(events.body.events[0].reason).toBe(REASON);
    const missing = await request(a).get(`/admin/locks/api/locks/${encodeURIComponent('gone\u202E')}`);
    expect(missing.status).toBe(404);
    expect(missing.text).not.toMatch(INVISIBLE);
    expect(missing.body.error.lockId).toBe('gone\u202E');
  });
});
