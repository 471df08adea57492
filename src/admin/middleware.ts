/**
 * The admin router's middleware: headers on every answer, the `authorize` gate, the checks every
 * state-changing route passes (same origin, read-only mode, JSON-or-nothing bodies), the lock id of
 * `/api/locks/<id>`, and the error handler that answers everything the routes throw.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { checkSameOrigin, requestOrigins } from './csrf';
import { AdminHttpError, asHttpError, quote } from './http-error';
import { lockIdFromPath } from './input';
import { InputError } from '../input-error';
import type { ResolvedOptions } from './options';
import { sendError } from './respond';
import { forwardedHost } from './request-host';

/** Express 5 forwards rejected promises, Express 4 does not: every async handler goes through here. */
export function asyncHandler(fn: (req: Request, res: Response, next: NextFunction) => Promise<void> | void): RequestHandler {
  return (req, res, next) => {
    try {
      Promise.resolve(fn(req, res, next)).catch(next);
    } catch (error) {
      next(error);
    }
  };
}

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

export const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  // Not "no-referrer": with it browsers send `Origin: null` on form posts, which the origin check refuses.
  res.setHeader('Referrer-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Cache-Control', 'no-store');
  next();
};

/** Every route, static files included: only a literal `true` from `authorize` lets the request through. */
export function requireAuthorization(config: ResolvedOptions): RequestHandler {
  return asyncHandler(async (req, _res, next) => {
    if ((await config.authorize(req)) !== true) {
      throw new AdminHttpError(403, 'FORBIDDEN', 'You are not allowed to use the lock dashboard.');
    }
    next();
  });
}

/** The confirmation pages and every action: nothing to confirm or do on a read-only dashboard. */
export function refuseWhenReadOnly(config: ResolvedOptions): RequestHandler {
  return (_req, _res, next) => {
    if (config.readOnly) throw new AdminHttpError(403, 'READ_ONLY', 'The lock dashboard is read-only: no actions are accepted.');
    next();
  };
}

/** Every state-changing route: refuse cross-site requests first, then read-only mode. */
export function requireSameOriginAction(config: ResolvedOptions): RequestHandler[] {
  const sameOrigin: RequestHandler = (req, _res, next) => {
    const hosts = [req.headers.host, forwardedHost(req)];
    checkSameOrigin(req.headers, [...requestOrigins(req.protocol, hosts), ...config.allowedOrigins]);
    next();
  };
  return [sameOrigin, refuseWhenReadOnly(config)];
}

/**
 * JSON API actions take a JSON object or no body at all. Any other Content-Type is refused even
 * when the body is empty: text/plain, form-urlencoded and multipart are what a cross-site form (or
 * a no-cors fetch) can send, so refusing them whatever the length keeps the API out of their reach
 * (the Origin check stays, this is a second line). Whether there is a body is read from the framing
 * headers, as HTTP defines it, so `Content-Type: application/json` on a bodiless DELETE (what fetch
 * and many client wrappers send) is simply a request without a body.
 */
export function jsonObjectOrNoBody(jsonBody: RequestHandler): RequestHandler {
  return (req, res, next) => {
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
        next(new InputError('body', 'The JSON body must be a JSON object, e.g. {"fencingToken": 7, "reason": "…"}.'));
        return;
      }
      next();
    });
  };
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

/**
 * One lock, addressed by its %-encoded id: everything after `/api/locks/`, matched by a pattern and
 * decoded here (not a `:lockId` route parameter) so ids containing `/` work the same on Express 4 and 5
 * and a trailing or doubled slash in an id survives exactly. Case-insensitive like the string routes.
 */
export const ONE_LOCK_PATH = /^\/api\/locks\/./i;

/**
 * A lock's history, `/api/locks/<id>/history`. Wired before ONE_LOCK_PATH, which also matches it: a
 * path whose last unencoded segment is `history` is always this route, so an id that itself ends in
 * `/history` is addressed with its slash encoded (`a%2Fhistory`), which encodeURIComponent does.
 */
export const LOCK_HISTORY_PATH = /^\/api\/locks\/.+\/history$/i;

/** The dashboard page of one lock, `/locks/<id>`, its id read like the API's. */
export const LOCK_PAGE_PATH = /^\/locks\/./i;

/** Puts the lock id found in the path between `prefix` and `suffix` in res.locals: a bad id is a 400 whatever the method. */
function lockIdBetween(prefix: string, suffix = ''): RequestHandler {
  return (req, res, next) => {
    res.locals.lockId = lockIdFromPath(req.path.slice(prefix.length, req.path.length - suffix.length));
    next();
  };
}

/** First on every `ONE_LOCK_PATH` route. */
export const lockIdParam: RequestHandler = lockIdBetween('/api/locks/');
/** First on every `LOCK_HISTORY_PATH` route. */
export const historyLockIdParam: RequestHandler = lockIdBetween('/api/locks/', '/history');
/** First on the `LOCK_PAGE_PATH` route. */
export const pageLockIdParam: RequestHandler = lockIdBetween('/locks/');

/** The id the lock-id middleware decoded. */
export function lockIdOf(res: Response): string {
  return res.locals.lockId as string;
}

export const lockMethodNotAllowed: RequestHandler = (req, res) => {
  res.setHeader('Allow', 'GET, HEAD, DELETE');
  throw new AdminHttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on a lock; use GET or DELETE.`);
};

export const historyMethodNotAllowed: RequestHandler = (req, res) => {
  res.setHeader('Allow', 'GET, HEAD');
  throw new AdminHttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on a lock's history; use GET.`);
};

export const notFound: RequestHandler = (req) => {
  throw new AdminHttpError(404, 'NOT_FOUND', `Nothing here: ${req.method} ${quote(req.path, 80)}.`);
};

/** Answers whatever a route threw: known errors as themselves, anything else as a 500 without details. */
export function errorHandler(config: ResolvedOptions) {
  return (error: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const known = asHttpError(error) ?? new AdminHttpError(500, 'INTERNAL', 'Something went wrong on the server (the details are in its log).');
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
  };
}
