/**
 * `createDbMutexAdminRouter`: the operator dashboard and its JSON API as one mountable Express router.
 *
 * Self-contained on purpose: it renders its own EJS files by absolute path, parses bodies only on its
 * own routes, serves its own CSS/JS, and answers its own errors, so mounting it changes nothing in
 * the host app (view engine, body parsers, static files, error handler).
 */
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import type { DbMutex } from '../db-mutex';
import { MAX_REASON_LENGTH } from '../limits';
import { getDefaultDbMutex } from '../default-mutex';
import { validateHolder } from '../options';
import { printableJson } from '../printable';
import {
  checkCsrfToken,
  checkSameOrigin,
  csrfCookieHeader,
  csrfToken,
  CSRF_FIELD,
  newCsrfCookieValue,
  readCsrfCookie,
  requestOrigins,
  Signer,
} from './csrf';
import { decodeCursor, encodeCursor, listWindow, takePage } from './cursor';
import { decodeFlash, encodeFlash, flashView, staleFlash, type FlashResult } from './flash';
import { eventJson, eventView, formatUtc, lockJson, lockView } from './format';
import { AdminHttpError, fromFrameworkError, quote } from './http-error';
import { semaphoreJson, semaphoreView } from './semaphore-format';
import { forwardedHost } from './request-host';
import { parseFencingToken, parseFilter, parseBoolean, parseLimit, parseLockId, parseReason, queryOf, REFRESH_CHOICES, single } from './input';
import { baseOf, dashboardUrl, query, readViewState, viewParams, type ViewState } from './links';
import { defaultOperator, MAX_PAGE_SIZE, resolveOptions, type DbMutexAdminRouterOptions } from './options';
import { assetUrls, renderPage, staticAssets } from './render';

export type { DbMutexAdminRouterOptions } from './options';

const PAGE_EVENT_COUNT = 15;
const MAX_API_EVENTS = 500;
/** Permits the semaphore page shows at most (all semaphores together). */
const MAX_SEMAPHORE_PAGE_PERMITS = 1000;
const BODY_LIMIT = '16kb';

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

type Express = typeof import('express');

function loadExpress(): Express {
  try {
    // Loaded lazily so that importing the package does not require Express in apps that never mount
    // the dashboard; it resolves to the host app's own copy.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('express') as Express;
  } catch (error) {
    throw new Error('createDbMutexAdminRouter needs the "express" package (npm install express)', { cause: error });
  }
}

export function createDbMutexAdminRouter(options: DbMutexAdminRouterOptions): Router {
  const config = resolveOptions(options);
  const express = loadExpress();
  const signer = new Signer(options.secret);
  const router = express.Router();
  const formBody = express.urlencoded({ extended: false, limit: BODY_LIMIT, parameterLimit: 50 });
  // Not strict: any JSON value parses, so that every non-object gets the same clear 400 below.
  const jsonBody = express.json({ limit: BODY_LIMIT, strict: false });

  const resolveMutex = (): DbMutex => {
    if (config.mutex) return config.mutex;
    try {
      return getDefaultDbMutex();
    } catch (error) {
      throw new AdminHttpError(500, 'NOT_CONFIGURED', (error as Error).message);
    }
  };

  const resolveOperator = async (req: Request): Promise<string> => {
    const raw = config.operator ? await config.operator(req) : defaultOperator(req);
    if (typeof raw !== 'string' || raw.trim() === '') {
      throw new AdminHttpError(500, 'NOT_CONFIGURED', 'operator(req) must return a non-empty string.');
    }
    try {
      return validateHolder(raw.trim(), 'operator');
    } catch (error) {
      throw new AdminHttpError(500, 'NOT_CONFIGURED', `operator(req) returned an unusable name: ${(error as Error).message}`);
    }
  };

  // ---- every request ------------------------------------------------------------------------

  router.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Frame-Options', 'DENY');
    // Not "no-referrer": with it browsers send `Origin: null` on form posts, which the origin check refuses.
    res.setHeader('Referrer-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  router.use(
    handler(async (req, _res, next) => {
      if ((await config.authorize(req)) !== true) {
        throw new AdminHttpError(403, 'FORBIDDEN', 'You are not allowed to use the lock dashboard.');
      }
      next();
    }),
  );

  /** Every state-changing route: refuse cross-site requests first, then read-only mode. */
  const action: RequestHandler = (req, _res, next) => {
    const hosts = [req.headers.host, forwardedHost(req)];
    checkSameOrigin(req.headers, [...requestOrigins(req.protocol, hosts), ...config.allowedOrigins]);
    if (config.readOnly) throw new AdminHttpError(403, 'READ_ONLY', 'The lock dashboard is read-only: no actions are accepted.');
    next();
  };

  /**
   * JSON API actions take a JSON object or no body at all. Any other Content-Type is refused even
   * when the body is empty: text/plain, form-urlencoded and multipart are what a cross-site form (or
   * a no-cors fetch) can send, so refusing them whatever the length keeps the API out of their reach
   * (the Origin check stays, this is a second line). Whether there is a body is read from the framing
   * headers, as HTTP defines it, so `Content-Type: application/json` on a bodiless DELETE (what fetch
   * and many client wrappers send) is simply a request without a body.
   */
  const apiBody: RequestHandler = (req, res, next) => {
    const type = req.headers['content-type'];
    if (type !== undefined && !isJsonMediaType(type)) {
      throw new AdminHttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'Send a JSON body (Content-Type: application/json) or none.');
    }
    if (!hasBody(req)) {
      next();
      return;
    }
    if (type === undefined) {
      throw new AdminHttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'A request body needs Content-Type: application/json.');
    }
    jsonBody(req, res, (error?: unknown) => {
      if (error) {
        next(error);
        return;
      }
      // A host app's own parser may have read the body first (then ours leaves it alone): check either way.
      const body: unknown = req.body;
      if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) {
        next(new AdminHttpError(400, 'INVALID_BODY', 'The JSON body must be a JSON object, e.g. {"fencingToken": 7, "reason": "…"}.'));
        return;
      }
      next();
    });
  };

  // ---- static files ---------------------------------------------------------------------------

  router.get('/static/:file', (req, res) => {
    const asset = staticAssets().get(String(req.params.file));
    if (!asset) throw new AdminHttpError(404, 'NOT_FOUND', 'No such file.');
    const versioned = queryOf(req.url).get('v') === asset.version;
    res.setHeader('Content-Type', asset.type);
    res.setHeader('Cache-Control', versioned ? 'private, max-age=31536000, immutable' : 'no-cache');
    res.send(asset.body);
  });

  // ---- HTML pages -----------------------------------------------------------------------------

  router.get(
    '/',
    handler(async (req, res) => {
      const q = queryOf(req.url);
      const view = readViewState(q);
      const cursor = decodeCursor(single(q, 'after'));
      const flash = decodeFlash(signer, single(q, 'flash'));
      const mutex = resolveMutex();
      const window = listWindow(cursor, config.pageSize);
      const [rows, counts, events] = await Promise.all([
        mutex.list({ filter: view.filter, staleOnly: view.staleOnly, ...window }),
        mutex.counts(view.filter),
        mutex.events({ limit: PAGE_EVENT_COUNT }),
      ]);
      const { page, next } = takePage(rows, cursor, config.pageSize);
      const base = baseOf(req);
      const operator = await resolveOperator(req);
      const here = (change: Partial<ViewState> & { after?: string | null }) => dashboardUrl(base, { ...view, ...change });
      sendHtml(
        res,
        200,
        renderPage('dashboard', layoutData(base, 'Locks', view.refresh, here({ after: cursor ? single(q, 'after') : null })), {
          operator,
          readOnly: config.readOnly,
          counts,
          view,
          flash: flash ? flashView(flash) : null,
          dbNow: page[0] ? formatUtc(page[0].dbNow) : null,
          locks: page.map((row) => ({
            ...lockView(row),
            releaseUrl: `${base}/confirm-release?${query({
              lockId: row.lockId,
              fencingToken: String(row.fencingToken),
              ...viewParams(view),
            })}`,
          })),
          events: events.map(eventView),
          isFirstPage: cursor === null,
          links: {
            firstPage: here({}),
            nextPage: next ? here({ after: encodeCursor(next) }) : null,
            all: here({ staleOnly: false }),
            staleOnly: here({ staleOnly: true }),
            clearFilter: here({ filter: null }),
            releaseStale: `${base}/confirm-release-stale?${query(viewParams(view))}`,
            semaphores: `${base}/semaphores`,
            refresh: REFRESH_CHOICES.map((seconds) => ({
              seconds,
              label: seconds === 0 ? 'Off' : `${seconds} s`,
              url: here({ refresh: seconds, after: cursor ? single(q, 'after') : null }),
              current: seconds === view.refresh,
            })),
          },
          formAction: `${base}/`,
        }),
      );
    }),
  );

  // A counting semaphore as one entry (used / limit) with its holders; each permit is released like a
  // lock (its row key and token), through the same confirm page and audited action.
  router.get(
    '/semaphores',
    handler(async (req, res) => {
      const entries = await resolveMutex().semaphores({ limit: MAX_SEMAPHORE_PAGE_PERMITS });
      const base = baseOf(req);
      const semaphores = entries.map((entry) => {
        const view = semaphoreView(entry);
        return {
          ...view,
          holders: view.holders.map((h) => ({
            ...h,
            releaseUrl: `${base}/confirm-release?${query({ lockId: h.lockId, fencingToken: String(h.fencingToken) })}`,
          })),
        };
      });
      const first = entries[0]?.holders[0];
      sendHtml(
        res,
        200,
        renderPage('semaphores', layoutData(base, 'Semaphores', 0, ''), {
          operator: await resolveOperator(req),
          readOnly: config.readOnly,
          dbNow: first ? formatUtc(first.dbNow) : null,
          semaphores,
          links: { locks: `${base}/` },
        }),
      );
    }),
  );

  router.get(
    '/confirm-release',
    handler(async (req, res) => {
      if (config.readOnly) throw new AdminHttpError(403, 'READ_ONLY', 'The lock dashboard is read-only: no actions are accepted.');
      const q = queryOf(req.url);
      const view = readViewState(q);
      const lockId = parseLockId(single(q, 'lockId'));
      const fencingToken = parseFencingToken(single(q, 'fencingToken'), { required: true }) as number;
      const base = baseOf(req);
      const row = await resolveMutex().inspect(lockId);
      const status = !row ? 404 : row.fencingToken !== fencingToken ? 409 : 200;
      sendHtml(
        res,
        status,
        renderPage('confirm-release', layoutData(base, `Release ${lockId}?`, 0, ''), {
          lockId,
          fencingToken,
          lock: row ? lockView(row) : null,
          outcome: status === 200 ? 'confirm' : status === 404 ? 'not-found' : 'token-mismatch',
          reviewUrl: row
            ? `${base}/confirm-release?${query({ lockId, fencingToken: String(row.fencingToken), ...viewParams(view) })}`
            : null,
          backUrl: dashboardUrl(base, view),
          actionUrl: `${base}/release`,
          csrf: { field: CSRF_FIELD, token: csrfTokenFor(req, res, signer) },
          hidden: viewParams(view),
          reasonMaxLength: MAX_REASON_LENGTH,
        }),
      );
    }),
  );

  router.get(
    '/confirm-release-stale',
    handler(async (req, res) => {
      if (config.readOnly) throw new AdminHttpError(403, 'READ_ONLY', 'The lock dashboard is read-only: no actions are accepted.');
      const view = readViewState(queryOf(req.url));
      const base = baseOf(req);
      const mutex = resolveMutex();
      const [counts, preview] = await Promise.all([mutex.counts(null), mutex.list({ staleOnly: true, limit: 10 })]);
      sendHtml(
        res,
        200,
        renderPage('confirm-release-stale', layoutData(base, 'Release all stale locks?', 0, ''), {
          staleCount: counts.stale,
          preview: preview.map(lockView),
          backUrl: dashboardUrl(base, view),
          actionUrl: `${base}/release-stale`,
          csrf: { field: CSRF_FIELD, token: csrfTokenFor(req, res, signer) },
          hidden: viewParams(view),
          reasonMaxLength: MAX_REASON_LENGTH,
        }),
      );
    }),
  );

  router.post(
    '/release',
    action,
    formBody,
    handler(async (req, res) => {
      checkCsrfToken(signer, readCsrfCookie(req.headers), single(req.body, CSRF_FIELD));
      const view = readViewState(req.body);
      const lockId = parseLockId(single(req.body, 'lockId'));
      const fencingToken = parseFencingToken(single(req.body, 'fencingToken'), { required: true }) as number;
      const reason = parseReason(single(req.body, 'reason'));
      const operator = await resolveOperator(req);
      const result = await inputChecked(resolveMutex().forceRelease({ lockId, fencingToken, operator, reason }));
      let flash: FlashResult;
      if (result.status === 'released') {
        const e = result.event;
        flash = { kind: 'released', lockId, fencingToken, holder: `${e.holder} (${e.hostname}:${e.pid})`, ageSeconds: e.ageSeconds };
      } else if (result.status === 'token-mismatch') {
        flash = { kind: 'token-mismatch', lockId, fencingToken, currentFencingToken: result.currentFencingToken };
      } else {
        flash = { kind: 'not-found', lockId, fencingToken };
      }
      res.redirect(303, dashboardUrl(baseOf(req), view, encodeFlash(signer, flash)));
    }),
  );

  router.post(
    '/release-stale',
    action,
    formBody,
    handler(async (req, res) => {
      checkCsrfToken(signer, readCsrfCookie(req.headers), single(req.body, CSRF_FIELD));
      const view = readViewState(req.body);
      const reason = parseReason(single(req.body, 'reason'));
      const operator = await resolveOperator(req);
      const events = await inputChecked(resolveMutex().releaseStale({ operator, reason }));
      res.redirect(303, dashboardUrl(baseOf(req), view, encodeFlash(signer, staleFlash(events.map((e) => e.lockId)))));
    }),
  );

  // ---- JSON API -------------------------------------------------------------------------------

  router.get(
    '/api/locks',
    handler(async (req, res) => {
      const q = queryOf(req.url);
      const filter = parseFilter(single(q, 'filter'));
      const staleOnly = parseBoolean(single(q, 'stale'), 'stale');
      const limit = parseLimit(single(q, 'limit'), config.pageSize, MAX_PAGE_SIZE);
      const cursor = decodeCursor(single(q, 'after'));
      const mutex = resolveMutex();
      const [rows, counts] = await Promise.all([
        mutex.list({ filter, staleOnly, ...listWindow(cursor, limit) }),
        mutex.counts(filter),
      ]);
      const { page, next } = takePage(rows, cursor, limit);
      sendJson(res, 200, { locks: page.map(lockJson), nextCursor: next ? encodeCursor(next) : null, counts });
    }),
  );

  router.post(
    '/api/locks/release-stale',
    action,
    apiBody,
    handler(async (req, res) => {
      const reason = parseReason(single(req.body, 'reason'));
      const operator = await resolveOperator(req);
      const events = await inputChecked(resolveMutex().releaseStale({ operator, reason }));
      sendJson(res, 200, { released: events.length, events: events.map(eventJson) });
    }),
  );

  /**
   * One lock, addressed by its %-encoded id. Mounted with `use` and decoded here (not a `:lockId`
   * route parameter) so ids containing `/` work the same on Express 4 and 5 and a trailing or doubled
   * slash in an id survives exactly.
   */
  router.use(
    '/api/locks',
    handler(async (req, res, next) => {
      if (req.path === '/') {
        next();
        return;
      }
      const lockId = lockIdFromPath(req.path);
      if (req.method === 'GET' || req.method === 'HEAD') {
        const row = await resolveMutex().inspect(lockId);
        if (!row) throw lockNotFound(lockId);
        sendJson(res, 200, { lock: lockJson(row) });
        return;
      }
      if (req.method !== 'DELETE') {
        res.setHeader('Allow', 'GET, HEAD, DELETE');
        throw new AdminHttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on a lock; use GET or DELETE.`);
      }
      await runMiddleware(action, req, res);
      await runMiddleware(apiBody, req, res);
      const q = queryOf(req.url);
      const fencingToken = parseFencingToken(fromQueryOrBody(q, req.body, 'fencingToken'), { required: false });
      const reason = parseReason(textOrAbsent(fromQueryOrBody(q, req.body, 'reason'), 'reason'));
      const operator = await resolveOperator(req);
      const result = await inputChecked(resolveMutex().forceRelease({ lockId, fencingToken, operator, reason }));
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
    }),
  );

  router.get(
    '/api/semaphores',
    handler(async (req, res) => {
      const q = queryOf(req.url);
      const filter = parseFilter(single(q, 'filter'));
      const entries = await resolveMutex().semaphores({ filter, limit: MAX_SEMAPHORE_PAGE_PERMITS });
      sendJson(res, 200, { semaphores: entries.map(semaphoreJson) });
    }),
  );

  router.get(
    '/api/events',
    handler(async (req, res) => {
      const q = queryOf(req.url);
      const limit = parseLimit(single(q, 'limit'), 50, MAX_API_EVENTS);
      const rawLockId = single(q, 'lockId');
      const lockId = rawLockId === undefined ? null : parseLockId(rawLockId);
      const events = await resolveMutex().events({ limit, lockId });
      sendJson(res, 200, { events: events.map(eventJson) });
    }),
  );

  // ---- the rest -------------------------------------------------------------------------------

  router.use((req) => {
    throw new AdminHttpError(404, 'NOT_FOUND', `Nothing here: ${req.method} ${quote(req.path, 80)}.`);
  });

  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const known =
      fromFrameworkError(error) ??
      new AdminHttpError(500, 'INTERNAL', 'Something went wrong on the server (the details are in its log).');
    if (known.status >= 500) {
      try {
        config.onError(error, req);
      } catch {
        // A failing logger must not turn into an unanswered request.
      }
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    sendError(req, res, known);
  });

  return router;
}

// ---- request helpers ---------------------------------------------------------------------------

/** Express 5 forwards rejected promises, Express 4 does not: every async handler goes through here. */
function handler(fn: (req: Request, res: Response, next: NextFunction) => Promise<void> | void): RequestHandler {
  return (req, res, next) => {
    try {
      Promise.resolve(fn(req, res, next)).catch(next);
    } catch (error) {
      next(error);
    }
  };
}

function runMiddleware(mw: RequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      void mw(req, res, (error?: unknown) => (error ? reject(error) : resolve()));
    } catch (error) {
      reject(error);
    }
  });
}

/** Validation errors the DbMutex raises (e.g. an over-long reason) are the user's input, not a server fault. */
async function inputChecked<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) throw new AdminHttpError(400, 'INVALID_REASON', error.message);
    throw error;
  }
}

function lockNotFound(lockId: string): AdminHttpError {
  return new AdminHttpError(404, 'LOCK_NOT_FOUND', `No lock ${quote(lockId, 80)} is held.`, { lockId });
}

function lockIdFromPath(path: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path.slice(1));
  } catch {
    throw new AdminHttpError(400, 'INVALID_LOCK_ID', 'The lock id in the URL is not valid %-encoding.');
  }
  return parseLockId(decoded);
}

/** A DELETE may name its options in the query string or a JSON body (not both). */
function fromQueryOrBody(q: URLSearchParams, body: unknown, name: string): unknown {
  const inQuery = single(q, name);
  const inBody =
    typeof body === 'object' && body !== null && Object.prototype.hasOwnProperty.call(body, name)
      ? (body as Record<string, unknown>)[name]
      : undefined;
  if (inQuery !== undefined && inBody !== undefined) {
    throw new AdminHttpError(400, 'INVALID_PARAMETER', `Give "${name}" in the query string or in the body, not both.`);
  }
  return inQuery ?? inBody;
}

function textOrAbsent(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null || typeof value === 'string') return value ?? undefined;
  throw new AdminHttpError(400, 'INVALID_PARAMETER', `"${name}" must be text.`);
}

/** `application/json`, with or without parameters (`; charset=utf-8`), in any letter case. */
function isJsonMediaType(contentType: string): boolean {
  return contentType.split(';', 1)[0]!.trim().toLowerCase() === 'application/json';
}

/** Whether the request has a body, by its framing headers (RFC 9112 §6.3): chunked, or a length above 0. */
function hasBody(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && Number(length) !== 0;
}

function layoutData(base: string, title: string, refreshSeconds: number, refreshUrl: string) {
  return { title: `${title} · sequelize-db-mutex`, base, assets: assetUrls(base), refreshSeconds, refreshUrl };
}

/** The form token for this browser, issuing its cookie on first use. */
function csrfTokenFor(req: Request, res: Response, signer: Signer): string {
  let cookie = readCsrfCookie(req.headers);
  if (!cookie) {
    cookie = newCsrfCookieValue();
    // The mount path comes from the request; anything beyond plain path characters falls back to "/"
    // rather than risk splicing attributes into the cookie.
    const base = baseOf(req);
    const cookiePath = base && /^[A-Za-z0-9\-._~/%]+$/.test(base) ? base : '/';
    res.append('Set-Cookie', csrfCookieHeader(cookie, cookiePath, req.secure));
  }
  return csrfToken(signer, cookie);
}

function sendHtml(res: Response, status: number, html: string): void {
  res.status(status).type('html').send(html);
}

/**
 * JSON answers carry invisible characters as \u escapes (parsed back exactly), so ids read in curl's
 * output or a browser tab cannot disguise themselves. Serialized here, not by res.json, which would
 * also apply the host app's `json replacer` and `json spaces` settings.
 */
function sendJson(res: Response, status: number, body: object): void {
  res.status(status).type('json').send(printableJson(body));
}

function wantsJson(req: Request): boolean {
  return req.path === '/api' || req.path.startsWith('/api/');
}

function sendError(req: Request, res: Response, error: AdminHttpError): void {
  if (wantsJson(req)) {
    sendJson(res, error.status, { error: { code: error.code, message: error.message, ...error.details } });
    return;
  }
  const base = baseOf(req);
  let html: string;
  try {
    html = renderPage('error', layoutData(base, `Error ${error.status}`, 0, ''), {
      status: error.status,
      code: error.code,
      message: error.message,
      backUrl: `${base}/`,
    });
  } catch {
    res.status(error.status).type('text').send(`${error.status} ${error.code}: ${error.message}`);
    return;
  }
  sendHtml(res, error.status, html);
}

