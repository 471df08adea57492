/**
 * One named handler per route of the admin router (the wiring is in router.ts). Each reads its input
 * (input.ts), asks the DbMutex, and answers with a page (view-model.ts) or JSON. The force-release and
 * release-stale flows are written once here and used by both the HTML forms and the JSON API.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { DbMutex, ForceReleaseResult } from '../db-mutex';
import { getDefaultDbMutex } from '../default-mutex';
import type { EventRow } from '../dialects/types';
import { checkInputOf } from '../input-error';
import { DEFAULT_EVENTS_LIMIT } from '../limits';
import { validateHolder } from '../options';
import { checkCsrfToken, csrfCookieHeader, csrfToken, CSRF_FIELD, newCsrfCookieValue, readCsrfCookie, type Signer } from './csrf';
import { decodeCursor, encodeCursor, listWindow, takePage } from './cursor';
import { decodeFlash, encodeFlash, releaseFlash, staleFlash, type FlashResult } from './flash';
import { eventJson, lockJson } from './format';
import { AdminHttpError, quote } from './http-error';
import { fromQueryOrBody, parseFencingToken, parseFilter, parseLimit, parseLockId, parseReason, parseStale, queryOf, single } from './input';
import { baseOf, dashboardUrl, readViewState } from './links';
import { lockIdOf } from './middleware';
import { defaultOperator, MAX_PAGE_SIZE, type ResolvedOptions } from './options';
import { staticAssets } from './render';
import { sendJson, sendPage } from './respond';
import { confirmReleasePage, confirmReleaseStalePage, dashboardPage, type CsrfField } from './view-model';

/** What every handler of one router shares. */
export interface AdminContext {
  readonly config: ResolvedOptions;
  /** Signs the CSRF tokens and the result messages. */
  readonly signer: Signer;
}

export type AdminHandler = (ctx: AdminContext, req: Request, res: Response) => Promise<void>;

/** Audit entries under the lock table. */
const PAGE_EVENT_COUNT = 15;
/** Largest `limit` of `GET /api/events`. */
const MAX_API_EVENTS = 500;
/** Locks the release-stale confirmation lists. */
const STALE_PREVIEW_COUNT = 10;

// ---- shared pieces ---------------------------------------------------------------------------

export function mutexOf(ctx: AdminContext): DbMutex {
  if (ctx.config.mutex) return ctx.config.mutex;
  try {
    return getDefaultDbMutex();
  } catch (error) {
    throw new AdminHttpError(500, 'NOT_CONFIGURED', (error as Error).message);
  }
}

/** Who is acting, for the audit trail; an unusable name is the host app's misconfiguration (500). */
export async function operatorOf(ctx: AdminContext, req: Request): Promise<string> {
  const raw = ctx.config.operator ? await ctx.config.operator(req) : defaultOperator(req);
  if (typeof raw !== 'string' || raw.trim() === '') {
    throw new AdminHttpError(500, 'NOT_CONFIGURED', 'operator(req) must return a non-empty string.');
  }
  try {
    return validateHolder(raw.trim(), 'operator');
  } catch (error) {
    throw new AdminHttpError(500, 'NOT_CONFIGURED', `operator(req) returned an unusable name: ${(error as Error).message}`);
  }
}

/** The force-release behind both the Release form and `DELETE /api/locks/:lockId`. */
async function forceRelease(
  ctx: AdminContext,
  req: Request,
  target: { lockId: string; fencingToken: number | null; reason: string | null },
): Promise<ForceReleaseResult> {
  const operator = await operatorOf(ctx, req);
  // Everything but the reason was checked already; the DbMutex enforces the reason's rules itself.
  return checkInputOf('reason', mutexOf(ctx).forceRelease({ ...target, operator }));
}

/** The release of every stale lock behind both the form and `POST /api/locks/release-stale`. */
async function releaseStale(ctx: AdminContext, req: Request, reason: string | null): Promise<EventRow[]> {
  const operator = await operatorOf(ctx, req);
  return checkInputOf('reason', mutexOf(ctx).releaseStale({ operator, reason }));
}

/** The form token for this browser, issuing its cookie on first use. */
function csrfFieldFor(ctx: AdminContext, req: Request, res: Response): CsrfField {
  let cookie = readCsrfCookie(req.headers);
  if (!cookie) {
    cookie = newCsrfCookieValue();
    // The mount path comes from the request; anything beyond plain path characters falls back to "/"
    // rather than risk splicing attributes into the cookie.
    const base = baseOf(req);
    const cookiePath = base && /^[A-Za-z0-9\-._~/%]+$/.test(base) ? base : '/';
    res.append('Set-Cookie', csrfCookieHeader(cookie, cookiePath, req.secure));
  }
  return { field: CSRF_FIELD, token: csrfToken(ctx.signer, cookie) };
}

/**
 * An HTML form post: check its CSRF token, perform it, and redirect (303) back to the list in the view
 * the form came from, carrying the signed result, so a reload never repeats the action.
 */
async function answerForm(ctx: AdminContext, req: Request, res: Response, perform: () => Promise<FlashResult>): Promise<void> {
  checkCsrfToken(ctx.signer, readCsrfCookie(req.headers), single(req.body, CSRF_FIELD));
  const view = readViewState(req.body);
  const flash = await perform();
  res.redirect(303, dashboardUrl(baseOf(req), view, encodeFlash(ctx.signer, flash)));
}

function lockNotFound(lockId: string): AdminHttpError {
  return new AdminHttpError(404, 'LOCK_NOT_FOUND', `No lock ${quote(lockId, 80)} is held.`, { lockId });
}

// ---- static files ----------------------------------------------------------------------------

/** `GET /static/:file`: the dashboard's own CSS and JS, cached for good when the URL names its version. */
export const staticFile: RequestHandler = (req, res) => {
  const asset = staticAssets().get(String(req.params.file));
  if (!asset) throw new AdminHttpError(404, 'NOT_FOUND', 'No such file.');
  const versioned = queryOf(req.url).get('v') === asset.version;
  res.setHeader('Content-Type', asset.type);
  res.setHeader('Cache-Control', versioned ? 'private, max-age=31536000, immutable' : 'no-cache');
  res.send(asset.body);
};

// ---- HTML pages ------------------------------------------------------------------------------

/** `GET /`: the lock table (one page), the counts, the latest audit entries and the last action's result. */
export const dashboard: AdminHandler = async (ctx, req, res) => {
  const q = queryOf(req.url);
  const view = readViewState(q);
  const after = single(q, 'after');
  const cursor = decodeCursor(after);
  const flash = decodeFlash(ctx.signer, single(q, 'flash'));
  const mutex = mutexOf(ctx);
  const pageSize = ctx.config.pageSize;
  const [rows, counts, events] = await Promise.all([
    mutex.list({ filter: view.filter, staleOnly: view.staleOnly, ...listWindow(cursor, pageSize) }),
    mutex.counts(view.filter),
    mutex.events({ limit: PAGE_EVENT_COUNT }),
  ]);
  const { page, next } = takePage(rows, cursor, pageSize);
  const operator = await operatorOf(ctx, req);
  const model = dashboardPage({
    base: baseOf(req),
    view,
    after: cursor ? (after ?? null) : null,
    cursor,
    page,
    next,
    counts,
    events,
    operator,
    readOnly: ctx.config.readOnly,
    flash,
  });
  sendPage(res, 200, 'dashboard', model);
};

/** `GET /confirm-release`: the acquisition to release, as it is now (404 gone, 409 re-acquired). */
export const confirmRelease: AdminHandler = async (ctx, req, res) => {
  const q = queryOf(req.url);
  const view = readViewState(q);
  const lockId = parseLockId(single(q, 'lockId'));
  const fencingToken = parseFencingToken(single(q, 'fencingToken'), { required: true }) as number;
  const row = await mutexOf(ctx).inspect(lockId);
  const model = confirmReleasePage({ base: baseOf(req), view, lockId, fencingToken, row, csrf: csrfFieldFor(ctx, req, res) });
  sendPage(res, model.status, 'confirm-release', model);
};

/** `GET /confirm-release-stale`: how many locks are stale now, and the first few of them. */
export const confirmReleaseStale: AdminHandler = async (ctx, req, res) => {
  const view = readViewState(queryOf(req.url));
  const mutex = mutexOf(ctx);
  const [counts, preview] = await Promise.all([mutex.counts(null), mutex.list({ staleOnly: true, limit: STALE_PREVIEW_COUNT })]);
  const model = confirmReleaseStalePage({ base: baseOf(req), view, staleCount: counts.stale, preview, csrf: csrfFieldFor(ctx, req, res) });
  sendPage(res, 200, 'confirm-release-stale', model);
};

/** `POST /release`: the confirmation form of one acquisition. */
export const releaseForm: AdminHandler = (ctx, req, res) =>
  answerForm(ctx, req, res, async () => {
    const lockId = parseLockId(single(req.body, 'lockId'));
    const fencingToken = parseFencingToken(single(req.body, 'fencingToken'), { required: true }) as number;
    const reason = parseReason(single(req.body, 'reason'));
    return releaseFlash(lockId, fencingToken, await forceRelease(ctx, req, { lockId, fencingToken, reason }));
  });

/** `POST /release-stale`: the confirmation form of releasing every stale lock. */
export const releaseStaleForm: AdminHandler = (ctx, req, res) =>
  answerForm(ctx, req, res, async () => {
    const reason = parseReason(single(req.body, 'reason'));
    const events = await releaseStale(ctx, req, reason);
    return staleFlash(events.map((e) => e.lockId));
  });

// ---- JSON API --------------------------------------------------------------------------------

/** `GET /api/locks`: one page of locks, the cursor of the next, and the counts. */
export const listLocks: AdminHandler = async (ctx, req, res) => {
  const q = queryOf(req.url);
  const filter = parseFilter(single(q, 'filter'));
  const staleOnly = parseStale(single(q, 'stale'));
  const limit = parseLimit(single(q, 'limit'), ctx.config.pageSize, MAX_PAGE_SIZE);
  const cursor = decodeCursor(single(q, 'after'));
  const mutex = mutexOf(ctx);
  const [rows, counts] = await Promise.all([mutex.list({ filter, staleOnly, ...listWindow(cursor, limit) }), mutex.counts(filter)]);
  const { page, next } = takePage(rows, cursor, limit);
  sendJson(res, 200, { locks: page.map(lockJson), nextCursor: next ? encodeCursor(next) : null, counts });
};

/** `POST /api/locks/release-stale`. */
export const releaseStaleApi: AdminHandler = async (ctx, req, res) => {
  const reason = parseReason(single(req.body, 'reason'));
  const events = await releaseStale(ctx, req, reason);
  sendJson(res, 200, { released: events.length, events: events.map(eventJson) });
};

/** `GET /api/locks/:lockId` (and HEAD). */
export const inspectLock: AdminHandler = async (ctx, _req, res) => {
  const lockId = lockIdOf(res);
  const row = await mutexOf(ctx).inspect(lockId);
  if (!row) throw lockNotFound(lockId);
  sendJson(res, 200, { lock: lockJson(row) });
};

/** `DELETE /api/locks/:lockId`: force-release, of one acquisition when `fencingToken` is given. */
export const releaseLock: AdminHandler = async (ctx, req, res) => {
  const lockId = lockIdOf(res);
  const q = queryOf(req.url);
  const fencingToken = parseFencingToken(fromQueryOrBody(q, req.body, 'fencingToken'), { required: false });
  const reason = parseReason(fromQueryOrBody(q, req.body, 'reason'));
  const result = await forceRelease(ctx, req, { lockId, fencingToken, reason });
  if (result.status === 'not-found') throw lockNotFound(lockId);
  if (result.status === 'token-mismatch') {
    throw new AdminHttpError(
      409,
      'FENCING_TOKEN_MISMATCH',
      `Nothing released: lock ${quote(lockId, 80)} is now held with fencing token ${result.currentFencingToken}, not ${fencingToken}.`,
      { lockId, fencingToken, currentFencingToken: result.currentFencingToken },
    );
  }
  sendJson(res, 200, { status: 'released', event: eventJson(result.event) });
};

/** `GET /api/events`: the audit trail, newest first, optionally of one lock. */
export const listEvents: AdminHandler = async (ctx, req, res) => {
  const q = queryOf(req.url);
  const limit = parseLimit(single(q, 'limit'), DEFAULT_EVENTS_LIMIT, MAX_API_EVENTS);
  const rawLockId = single(q, 'lockId');
  const lockId = rawLockId === undefined ? null : parseLockId(rawLockId);
  const events = await mutexOf(ctx).events({ limit, lockId });
  sendJson(res, 200, { events: events.map(eventJson) });
};
