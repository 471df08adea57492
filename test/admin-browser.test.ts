/**
 * The dashboard in a real headless Chromium: seeded locks on a real database, a force-release through
 * the confirmation page (with and without JavaScript), the audit entry, the CSP-compliant auto-refresh
 * script, and a phone-width layout. Saves a screenshot to test/artifacts/dashboard.png; with
 * DB_MUTEX_UPDATE_SCREENSHOT=1 also to docs/dashboard.png (the one the README shows).
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Browser, Locator } from 'playwright-core';
import type { DbMutex, DbMutexHeldLock } from '../src';
import { browserDashboard, screenshot, watchErrors, type BrowserDashboard } from './helpers/browser';
import { holderLoses } from './helpers/dashboard';
import { TestContext, type LockTimeColumn } from './helpers/db';


let ctx: TestContext;
let dashboard: BrowserDashboard;
let browser: Browser;
let base: string;
const locks: Record<string, DbMutexHeldLock> = {};

/** Acquires through its own DbMutex (a "job process" with its own holder label), then makes the row look lived-in. */
async function seed(
  key: string,
  lockId: string,
  holder: string,
  options: Parameters<DbMutex['acquire']>[1],
  host: string,
  pid: number,
  secondsAgo: Partial<Record<LockTimeColumn, number>>,
) {
  const jobs = await ctx.mutex({ holder });
  locks[key] = await jobs.acquire(lockId, options);
  await ctx.exec('UPDATE db_mutex_locks SET hostname = ?, pid = ? WHERE lock_id = ?', [host, pid, lockId]);
  await ctx.sql.setSecondsAgo(lockId, secondsAgo);
}

/** Seconds in "h min s" form, for readable seed data; negative means from now on. */
const hms = (h: number, min: number, s: number) => h * 3600 + min * 60 + s;

beforeAll(async () => {
  ctx = await TestContext.create();
  const dashboardMutex = await ctx.mutex();
  // Realistic seed data: ages and heartbeats are moved back in time by the database clock.
  await seed('nightly', 'reports/nightly-export', 'report-runner', { leaseSeconds: 600 }, 'batch-02', 28817,
    { acquired_at: hms(2, 14, 9), heartbeat_at: hms(0, 7, 3), expires_at: -hms(0, 2, 57) });
  await seed('crm', 'imports/crm-sync', 'crm-sync', { heartbeat: false, ttlSeconds: 1800 }, 'worker-3b81', 5150,
    { acquired_at: hms(0, 47, 31), heartbeat_at: hms(0, 47, 31), expires_at: hms(0, 17, 31), deadline_at: hms(0, 17, 31) });
  await seed('billing', 'billing/invoice-run:2026-11', 'billing-worker', {}, 'worker-7f9c2', 4121,
    { acquired_at: hms(0, 23, 12), heartbeat_at: 12, expires_at: -48 });
  await seed('search', 'search-index/rebuild products', 'indexer', {}, 'search-01', 911,
    { acquired_at: hms(0, 6, 40), heartbeat_at: 4, expires_at: -56 });
  await seed('mail', 'mail/weekly-digest:zürich', 'mailer', {}, 'worker-7f9c2', 4388,
    { acquired_at: hms(0, 2, 5), heartbeat_at: 19, expires_at: -41 });
  await seed('cron', 'cron:cleanup-sessions', 'cron', { heartbeat: false, ttlSeconds: 300 }, 'scheduler', 77,
    { acquired_at: 41, heartbeat_at: 41, expires_at: -hms(0, 4, 19) });

  dashboard = await browserDashboard(dashboardMutex);
  ({ browser, base } = dashboard);
});

afterAll(async () => {
  await dashboard?.close();
  await ctx.cleanup();
});


it('force-releases a lock through the confirmation page and shows the audit entry', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(base);

  const rows = page.locator('table.locks tbody tr');
  await toHaveCount(rows, 6);
  expect(await rows.first().locator('code.lock-id').textContent()).toBe('reports/nightly-export');
  expect(await page.locator('.stat-stale .stat-value').textContent()).toBe('2');
  const nightly = rows.filter({ hasText: 'reports/nightly-export' });
  expect(await nightly.locator('.badge').textContent()).toBe('stale');
  expect(await nightly.textContent()).toMatch(/2 h 14 min/);

  await nightly.getByRole('link', { name: /Force-release/ }).click();
  await page.waitForURL(/confirm-release\?/);
  expect(await page.locator('h1').textContent()).toBe('Force-release this lock?');
  await page.fill('#reason', 'Export worker hung after an OOM kill; job restarted by hand');
  await page.getByRole('button', { name: `Force-release token ${locks.nightly!.fencingToken}` }).click();

  await page.waitForSelector('.flash-success');
  expect(await page.locator('.flash').textContent()).toContain('Released “reports/nightly-export”');
  await holderLoses(locks.nightly!, 'the holder to lose its lock');
  const audit = page.locator('table.events tbody tr');
  await toHaveCount(audit, 1);
  const entry = await audit.first().textContent();
  expect(entry).toContain('reports/nightly-export');
  expect(entry).toContain('alice');
  expect(entry).toContain('Export worker hung after an OOM kill');
  expect(entry).toContain('2 h 14 min');
  await toHaveCount(rows, 5);

  await screenshot(page, 'dashboard.png', 'dashboard.png');

  expect(errors).toEqual([]);
  await context.close();
});

it('runs its auto-refresh script under the Content-Security-Policy', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(base);
  await page.getByRole('link', { name: '5 s', exact: true }).click();
  await page.waitForURL(/refresh=5/);
  // The countdown is written by the external script: it ran, and it will reload the page itself.
  // (waitForFunction cannot be used: it evaluates a string, which this very CSP refuses.)
  const status = page.locator('#refresh-status');
  await untilAsync(async () => /^[1-4] s$/.test((await status.textContent()) ?? ''), 'the countdown to tick');
  await page.getByRole('link', { name: 'Off', exact: true }).click();
  await page.waitForURL((url) => !url.search.includes('refresh='));
  expect(errors).toEqual([]);
  await context.close();
});

it('releases all stale locks without JavaScript', async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(base);
  await page.getByRole('link', { name: /Release all stale \(1\)/ }).click();
  expect(await page.locator('h1').textContent()).toBe('Release all stale locks?');
  expect(await page.locator('table').textContent()).toContain('imports/crm-sync');
  await page.getByRole('button', { name: 'Release all stale locks' }).click();
  await page.waitForSelector('.flash-success');
  expect(await page.locator('.flash').textContent()).toContain('Released 1 stale lock.');
  await holderLoses(locks.crm!, 'the stale holder to lose its lock');
  expect(locks.billing!.isHeld()).toBe(true);
  await context.close();
});

it('fits a phone screen without sideways scrolling', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  await page.goto(base);
  expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
  await screenshot(page, 'dashboard-phone.png');
  await context.close();
});

it('shows a lock id with a right-to-left override as a visible escape, and releases exactly that lock', async () => {
  // Shown raw, this id reads "invoiceexe.pdf".
  const spoof = 'invoice\u202Efdp.exe';
  const shown = 'invoice\\u202efdp.exe';
  const jobs = await ctx.mutex({ holder: 'mallory\u200B' });
  const lock = await jobs.acquire(spoof, { ttlSeconds: 600 });
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${base}?filter=fdp.exe`);
  const row = page.locator('table.locks tbody tr');
  await toHaveCount(row, 1);
  expect(await row.locator('code.lock-id').textContent()).toBe(shown);
  expect(await row.locator('code.lock-id .esc').getAttribute('title')).toBe('invisible character U+202E');
  expect(await row.locator('.holder').textContent()).toBe('mallory\\u200b');
  expect(await page.locator('body').innerText()).not.toMatch(/[\u200b\u202e]/);

  await row.getByRole('link', { name: `Force-release ${shown}` }).click();
  await page.waitForURL(/confirm-release\?/);
  expect(await page.title()).toBe(`Release ${shown}? · sequelize-db-mutex`);
  expect(await page.locator('dl code.lock-id').textContent()).toBe(shown);
  expect(await page.locator('body').innerText()).not.toMatch(/[\u200b\u202e]/);
  // The form posts the id itself, not what is shown.
  expect(await page.locator('input[name="lockId"]').inputValue()).toBe(spoof);
  await page.getByRole('button', { name: `Force-release token ${lock.fencingToken}` }).click();

  await page.waitForSelector('.flash-success');
  expect(await page.locator('.flash strong').textContent()).toBe(`Released “${shown}” (fencing token ${lock.fencingToken}).`);
  await holderLoses(lock, 'the holder of the disguised id to lose it');
  expect(await page.locator('table.events tbody tr').first().locator('code.lock-id').textContent()).toBe(shown);
  expect(await page.locator('body').innerText()).not.toMatch(/[\u200b\u202e]/);
  expect(errors).toEqual([]);
  await context.close();
});

it('keeps an open confirmation form valid after the operator follows a link to the dashboard from another site', async () => {
  const jobs = await ctx.mutex({ holder: 'alerting' });
  const first = await jobs.acquire('alerts/first', { ttlSeconds: 600 });
  const second = await jobs.acquire('alerts/second', { ttlSeconds: 600 });
  // The dashboard as "localhost", a chat or alerting page on "127.0.0.1": two different sites.
  const dashboard = base.replace('127.0.0.1', 'localhost');
  const chat = express();
  chat.get('/', (_req, res) => {
    res.type('html').send(`<a id="alert" href="${dashboard}confirm-release?lockId=alerts%2Fsecond&amp;fencingToken=${second.fencingToken}">alert</a>`);
  });
  const chatServer = chat.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => chatServer.once('listening', resolve));
  try {
    const context = await browser.newContext();
    const open = await context.newPage();
    await open.goto(`${dashboard}confirm-release?lockId=alerts%2Ffirst&fencingToken=${first.fencingToken}`);
    const cookie = (await context.cookies()).find((c) => c.name === 'dbm_admin_csrf');
    expect(cookie?.sameSite).toBe('Lax');

    // Later, in another tab, a link from the other site. A cross-site navigation that came without the
    // cookie would get a new one, and the form still open in the first tab would stop working.
    const linked = await context.newPage();
    await linked.goto(`http://127.0.0.1:${(chatServer.address() as AddressInfo).port}/`);
    await linked.click('#alert');
    await linked.waitForURL(/confirm-release\?/);
    expect(await linked.locator('h1').textContent()).toBe('Force-release this lock?');
    expect((await context.cookies()).find((c) => c.name === 'dbm_admin_csrf')?.value).toBe(cookie?.value);

    await open.getByRole('button', { name: `Force-release token ${first.fencingToken}` }).click();
    await open.waitForSelector('.flash-success');
    await linked.getByRole('button', { name: `Force-release token ${second.fencingToken}` }).click();
    await linked.waitForSelector('.flash-success');
    await holderLoses(first, 'the first holder to lose its lock');
    await holderLoses(second, 'the second holder to lose its lock');
    await context.close();
  } finally {
    await new Promise((resolve) => chatServer.close(resolve));
  }
});

async function untilAsync(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Waits until the locator matches `n` elements (jest's expect does not poll like Playwright's). */
async function toHaveCount(locator: Locator, n: number): Promise<void> {
  for (let i = 0; i < 100 && (await locator.count()) !== n; i++) await new Promise((r) => setTimeout(r, 20));
  expect(await locator.count()).toBe(n);
}
