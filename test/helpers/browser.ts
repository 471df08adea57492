/**
 * What the headless-browser tests of the dashboard share: the admin router of a DbMutex served on a
 * loopback port to a signed-in operator, Chromium as this machine runs it, console errors (CSP
 * violations among them), and screenshots kept as test artifacts (and, on request, as the README's).
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createDbMutexAdminRouter, type DbMutex } from '../../src';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ARTIFACTS = path.join(__dirname, '..', 'artifacts');

export interface BrowserDashboard {
  browser: Browser;
  /** The dashboard's URL, ending in `/`. */
  base: string;
  close(): Promise<void>;
}

/** The router of `mutex` mounted at /admin/locks for the signed-in operator "alice", and a Chromium to look at it. */
export async function browserDashboard(mutex: DbMutex): Promise<BrowserDashboard> {
  const app = express();
  app.use((req, _res, next) => {
    (req as { user?: unknown }).user = { username: 'alice' };
    next();
  });
  app.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true }));
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/locks/`;
  // Playwright gives each launch a fresh temporary profile.
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  return {
    browser,
    base,
    close: async () => {
      await browser.close();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Console errors include CSP violations, so a page that logs none ran no blocked inline code or style. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(error.message));
  return errors;
}

/**
 * A full-page screenshot in test/artifacts/<name>; with DB_MUTEX_UPDATE_SCREENSHOT=1 and `docs` given,
 * also copied to docs/<docs> (the picture the README shows).
 */
export async function screenshot(page: Page, name: string, docs?: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, name);
  await page.screenshot({ path: shot, fullPage: true });
  if (docs && process.env.DB_MUTEX_UPDATE_SCREENSHOT === '1') copyFileSync(shot, path.join(__dirname, '..', '..', 'docs', docs));
}
