/**
 * One lock's page in a real headless Chromium: a day and a half of history laid out on a real database
 * (releases, a loss, a force-release, a release-stale), reached from the list, read without JavaScript,
 * under the page's Content-Security-Policy, then the current holder released through the existing
 * confirmation. Saves a screenshot to test/artifacts/lock-history.png; with DB_MUTEX_UPDATE_SCREENSHOT=1
 * also to docs/lock-history.png (the one the README shows).
 */
import type { Browser } from 'playwright-core';
import type { DbMutex, DbMutexHeldLock } from '../src';
import { browserDashboard, screenshot, watchErrors, type BrowserDashboard } from './helpers/browser';
import { holderLoses } from './helpers/dashboard';
import { TestContext } from './helpers/db';
import { waitUntil } from './helpers/wait';

const LOCK_ID = 'reports/nightly-export';
const PAGE_PATH = 'locks/reports%2Fnightly-export';

let ctx: TestContext;
let dashboardMutex: DbMutex;
let dashboard: BrowserDashboard;
let browser: Browser;
let base: string;
let current: DbMutexHeldLock;
/** The past, oldest first: seconds held, hours before now that it ended, and how it ended. */
const PAST: [number, number, 'released' | 'lost' | 'force-released' | 'release-stale'][] = [
  [372, 35, 'released'], [618, 33, 'released'], [204, 31, 'released'], [426, 29, 'released'],
  [672, 27, 'released'], [258, 25, 'release-stale'], [486, 23, 'released'], [726, 21, 'released'],
  [306, 19, 'force-released'], [552, 17, 'released'], [786, 15, 'lost'], [366, 13, 'released'],
  [612, 11, 'released'], [192, 9, 'released'], [444, 7, 'released'], [498, 5, 'released'],
];

/** Makes an entry look like a worker's on another machine. */
async function onWorker(table: string, fencingToken: number, pid: number): Promise<void> {
  await ctx.exec(`UPDATE ${ctx.quote(table)} SET hostname = ?, pid = ? WHERE lock_id = ? AND fencing_token = ?`, ['batch-02', pid, LOCK_ID, fencingToken]);
}

/** Whether the history table has a row of this acquisition (a holder records its loss in the background). */
async function recorded(fencingToken: number): Promise<boolean> {
  const [row] = await ctx.exec<{ n: unknown }>('SELECT count(*) AS n FROM db_mutex_locks_history WHERE lock_id = ? AND fencing_token = ?', [LOCK_ID, fencingToken]);
  return Number(row!.n) === 1;
}

/** One past acquisition ended the given way, then moved to its place in time. */
async function past(jobs: DbMutex, seconds: number, hoursAgo: number, ending: (typeof PAST)[number][2], pid: number): Promise<void> {
  const lock = await jobs.acquire(LOCK_ID, { ttlSeconds: 600, heartbeat: false });
  if (ending === 'released') {
    await lock.release();
  } else if (ending === 'lost') {
    // A release after the lease ran out: the holder learns it lost the lock.
    await ctx.sql.expireLock(LOCK_ID);
    await expect(lock.release()).rejects.toMatchObject({ reason: 'expired' });
  } else {
    if (ending === 'force-released') {
      await dashboardMutex.forceRelease({ lockId: LOCK_ID, fencingToken: lock.fencingToken, operator: 'alice', reason: 'export hung after an OOM kill' });
    } else {
      await ctx.sql.expireLock(LOCK_ID);
      await dashboardMutex.releaseStale({ operator: 'bob', reason: null });
    }
    await holderLoses(lock, 'the holder to lose it');
  }
  if (ending !== 'released') await waitUntil(() => recorded(lock.fencingToken), 10_000, 'the holder to record its loss', 10);
  // Half a second over, so that no rounding of the stored times can make a hold read a second short.
  const times = { acquired_at: hoursAgo * 3600 + seconds + 0.5, ended_at: hoursAgo * 3600 };
  await ctx.sql.setEndedSecondsAgo(LOCK_ID, lock.fencingToken, times);
  await onWorker('db_mutex_locks_history', lock.fencingToken, pid);
  if (ending === 'force-released' || ending === 'release-stale') {
    // The audit entry says who ended it, and is the one the page shows; the holder noticed at once.
    await ctx.sql.setEndedSecondsAgo(LOCK_ID, lock.fencingToken, { acquired_at: times.acquired_at, created_at: times.ended_at }, 'db_mutex_events');
    await onWorker('db_mutex_events', lock.fencingToken, pid);
  }
}

beforeAll(async () => {
  ctx = await TestContext.create();
  dashboardMutex = await ctx.mutex();
  const jobs = await ctx.mutex({ holder: 'report-runner' });
  for (const [i, [seconds, hoursAgo, ending]] of PAST.entries()) await past(jobs, seconds, hoursAgo, ending, 28_100 + i * 37);
  current = await jobs.acquire(LOCK_ID, { leaseSeconds: 600 });
  await ctx.exec('UPDATE db_mutex_locks SET hostname = ?, pid = ? WHERE lock_id = ?', ['batch-02', 28_817, LOCK_ID]);
  await ctx.sql.setSecondsAgo(LOCK_ID, { acquired_at: 4 * 60 + 12, heartbeat_at: 9 });

  dashboard = await browserDashboard(dashboardMutex);
  ({ browser, base } = dashboard);
});

afterAll(async () => {
  await dashboard?.close();
  await ctx.cleanup();
});


it('opens from the list and shows the holder, the figures, the chart and the history of the lock', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(base);
  await page.locator('table.locks').getByRole('link', { name: LOCK_ID, exact: true }).click();
  await page.waitForURL(`${base}${PAGE_PATH}`);

  expect(await page.title()).toBe(`Lock ${LOCK_ID} · sequelize-db-mutex`);
  expect(await page.locator('h1 code.lock-id').textContent()).toBe(LOCK_ID);
  const holder = page.locator('.holder-card');
  expect(await holder.textContent()).toContain('report-runner');
  expect(await holder.textContent()).toMatch(/4 min 1[2-9] s ago/);
  const stat = (label: string) => page.locator('.stat', { hasText: label }).locator('.stat-value').textContent();
  expect(await stat('Acquisitions')).toBe(String(PAST.length));
  // Nearest rank over the sixteen holds: the eighth (444 s) and the sixteenth (786 s).
  expect([await stat('Held p50'), await stat('Held p95'), await stat('Held max')]).toEqual(['7 min 24 s', '13 min 6 s', '13 min 6 s']);
  const counts = await page.locator('.outcome-counts').innerText();
  expect(counts.replace(/\s+/g, ' ')).toBe('released 13 lost 1 force-released 1 expired 1');

  const chart = page.locator('svg.hold-chart');
  expect(await chart.isVisible()).toBe(true);
  expect(await chart.locator('circle').count()).toBe(PAST.length);
  expect(await chart.locator('.chart-force-released circle').count()).toBe(1);
  const box = await chart.boundingBox();
  expect(box!.width).toBeGreaterThan(900);

  const rows = page.locator('table.history-table tbody tr');
  expect(await rows.count()).toBe(PAST.length);
  expect(await rows.nth(0).innerText()).toMatch(/batch-02 · pid \d+[\s\S]*8 min 18 s[\s\S]*released/);
  expect(await rows.filter({ hasText: 'force-released' }).innerText()).toContain('export hung after an OOM kill (by alice)');
  expect(await rows.filter({ hasText: 'release-stale' }).innerText()).toContain('release-stale (by bob)');
  expect(await rows.filter({ hasText: 'lost' }).innerText()).toContain('expired');

  await screenshot(page, 'lock-history.png', 'lock-history.png');
  expect(errors).toEqual([]);
  await context.close();
});

it('is complete without JavaScript', async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${base}${PAGE_PATH}`);
  expect(await page.locator('svg.hold-chart circle').count()).toBe(PAST.length);
  expect(await page.locator('table.history-table tbody tr').count()).toBe(PAST.length);
  await context.close();
});

it('fits a phone screen without sideways scrolling', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  await page.goto(`${base}${PAGE_PATH}`);
  expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
  await screenshot(page, 'lock-history-phone.png');
  await context.close();
});

it('releases the current holder through the existing confirmation, and the release joins the history', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${base}${PAGE_PATH}`);
  await page.getByRole('link', { name: `Force-release ${LOCK_ID}` }).click();
  await page.waitForURL(/confirm-release\?/);
  await page.fill('#reason', 'deploy');
  await page.getByRole('button', { name: `Force-release token ${current.fencingToken}` }).click();
  await page.waitForSelector('.flash-success');
  await holderLoses(current, 'the current holder to lose the lock');

  await page.goto(`${base}${PAGE_PATH}`);
  expect(await page.locator('.holder-card').innerText()).toContain('Nobody holds this lock right now.');
  const newest = page.locator('table.history-table tbody tr').first();
  expect(await newest.innerText()).toMatch(/force-released[\s\S]*deploy \(by alice\)/);
  expect(errors).toEqual([]);
  await context.close();
});
