/**
 * Express integration: run a route handler under a lock, so a request that would overlap a running one
 * gets `409 Conflict` instead of running twice (e.g. "start an import" pressed twice, or by two users).
 *
 * Only Express's types are imported (erased at build time): the package does not load Express itself,
 * so it works with the app's own copy, Express 4 or 5.
 */
import type { NextFunction, Request, Response } from 'express';
import type { DbMutex } from './db-mutex';
import { getDefaultDbMutex } from './default-mutex';
import { DbMutexError } from './errors';
import type { DbMutexHeldLock } from './lease';
import {
  ACQUIRE_OPTION_KEYS,
  optionKeys,
  rejectUnknownOptions,
  resolveAcquireOptions,
  resolveDbMutexOptions,
  validateLockId,
  validateOptionsObject,
  type AcquireOptions,
} from './options';
import { withDbMutex } from './with-db-mutex';

/** What a lock-held (409) response is built from. */
export interface DbMutexHeldInfo {
  lockId: string;
  /** Seconds until the current holder's expiry by the database clock (at least 1); null when unknown or never. */
  retryAfterSeconds: number | null;
  /** The acquisition failure (code `DB_MUTEX_HELD`, or `DB_MUTEX_WAIT_TIMEOUT` with `waitMs`). */
  error: DbMutexError;
}

/** The JSON body of the default 409 response. */
export interface DbMutexHeldBody {
  error: { code: 'DB_MUTEX_HELD'; message: string; lockId: string; retryAfterSeconds?: number };
}

export interface DbMutexHandlerOptions<Req extends Request = Request, Res extends Response = Response> extends Omit<AcquireOptions, 'signal' | 'transaction'> {
  /** Which DbMutex; default the one from `initDbMutex`, looked up on each request. */
  mutex?: DbMutex;
  /**
   * Replaces the default 409 response (for example to render a page). Called only when the lock could not
   * be acquired; the route handler did not run. Errors it throws go to `next`.
   */
  onHeld?: (info: DbMutexHeldInfo, req: Req, res: Res, next: NextFunction) => unknown;
}

/** A route's lock never joins a transaction, and its request cannot cancel waiting: no `signal`, no `transaction`. */
const HANDLER_OPTION_KEYS = [
  ...ACQUIRE_OPTION_KEYS.filter((key) => key !== 'signal' && key !== 'transaction'),
  ...optionKeys<Omit<DbMutexHandlerOptions, keyof AcquireOptions>>({ mutex: true, onHeld: true }),
];

/**
 * Wraps an Express route handler so it runs under `lockId` (a string, or a function of the request):
 *
 *     app.post('/imports/:id', dbMutexHandler((req) => `import:${String(req.params.id)}`, async (req, res, next, lock) => {
 *       await runImport(req.params.id, { fencingToken: lock.fencingToken, signal: lock.signal });
 *       res.json({ done: true });
 *     }));
 *
 * - The lock is held until the handler returns, or until the promise it returns settles: return (or
 *   await) the work that must not overlap.
 * - Lock held by someone else: `409 Conflict`, JSON `{ error: { code: 'DB_MUTEX_HELD', message, lockId } }`
 *   and a `Retry-After` header (seconds) when the holder's expiry is known; the handler does not run.
 * - Lost the lock while the handler ran (`DbMutexTimeoutError`), the handler's own errors, and any other
 *   failure (database unreachable, closed DbMutex) go to `next(error)`, i.e. the app's error handling.
 * - A lock id computed from the request that is not a valid id (empty, over 255 characters…) gets
 *   `400 Bad Request` with code `DB_MUTEX_INVALID_LOCK_ID`; nothing is written.
 */
export function dbMutexHandler<Req extends Request = Request, Res extends Response = Response>(
  lockId: string | ((req: Req) => string),
  handler: (req: Req, res: Res, next: NextFunction, lock: DbMutexHeldLock) => unknown,
  options: DbMutexHandlerOptions<Req, Res> = {},
): (req: Req, res: Res, next: NextFunction) => Promise<void> {
  if (typeof lockId === 'string') validateLockId(lockId);
  else if (typeof lockId !== 'function') throw new TypeError('lockId must be a string or a function of the request');
  if (typeof handler !== 'function') throw new TypeError('handler must be a function');
  validateOptionsObject(options);
  rejectUnknownOptions(options, HANDLER_OPTION_KEYS, 'dbMutexHandler');
  const { mutex, onHeld, ...acquireOptions } = options;
  if (onHeld !== undefined && typeof onHeld !== 'function') throw new TypeError('onHeld must be a function');
  // Checked against neutral defaults now, so a bad option fails when the route is defined (at startup),
  // not as a 500 on the first request.
  resolveAcquireOptions(resolveDbMutexOptions({ ttlSeconds: null, setDefault: false }), acquireOptions, 'dbMutexHandler');

  return async function dbMutexRoute(req: Req, res: Res, next: NextFunction): Promise<void> {
    let id: string;
    try {
      id = typeof lockId === 'function' ? lockId(req) : lockId;
      // Not a string is a bug in the app's lock-id function: that is a 500, not the client's fault.
      if (typeof id !== 'string') validateLockId(id);
    } catch (error) {
      next(error);
      return;
    }
    try {
      validateLockId(id);
    } catch (error) {
      // A string that is not a valid id came from the request (a huge or odd path parameter).
      res.status(400);
      res.json({ error: { code: 'DB_MUTEX_INVALID_LOCK_ID', message: (error as Error).message } });
      return;
    }
    let target: DbMutex;
    try {
      target = mutex ?? getDefaultDbMutex();
    } catch (error) {
      next(error);
      return;
    }
    let entered = false;
    try {
      await withDbMutex(
        id,
        (lock) => {
          entered = true;
          return handler(req, res, next, lock);
        },
        { ...acquireOptions, mutex: target },
      );
    } catch (error) {
      // Only a refused acquisition is a 409; a DbMutexError thrown from inside the handler (a nested
      // lock) is the handler's own failure and goes to the app's error handling like any other.
      if (!entered && error instanceof DbMutexError && error.code !== 'DB_MUTEX_CLOSED' && !res.headersSent) {
        await respondHeld(target, id, error, req, res, next, onHeld);
        return;
      }
      next(error);
    }
  };
}

async function respondHeld<Req extends Request = Request, Res extends Response = Response>(
  mutex: DbMutex,
  lockId: string,
  error: DbMutexError,
  req: Req,
  res: Res,
  next: NextFunction,
  onHeld: DbMutexHandlerOptions<Req, Res>['onHeld'],
): Promise<void> {
  const info: DbMutexHeldInfo = { lockId, retryAfterSeconds: await retryAfterSeconds(mutex, lockId), error };
  try {
    if (onHeld) {
      await onHeld(info, req, res, next);
      return;
    }
    if (info.retryAfterSeconds !== null) res.setHeader('Retry-After', String(info.retryAfterSeconds));
    const body: DbMutexHeldBody = {
      error: {
        code: 'DB_MUTEX_HELD',
        message: `The lock "${lockId}" is held by another run; try again later.`,
        lockId,
        ...(info.retryAfterSeconds !== null ? { retryAfterSeconds: info.retryAfterSeconds } : {}),
      },
    };
    res.status(409);
    res.json(body);
  } catch (failure) {
    next(failure);
  }
}

/**
 * Both instants come from the same row read, so the difference is pure database-clock time. A heartbeat
 * holder may renew past it: the value says when to look again, not when the lock will be free.
 */
async function retryAfterSeconds(mutex: DbMutex, lockId: string): Promise<number | null> {
  try {
    const row = await mutex.inspect(lockId);
    if (!row || !row.expiresAt) return null;
    return Math.max(1, Math.ceil((row.expiresAt.getTime() - row.dbNow.getTime()) / 1000));
  } catch {
    // Only a hint: the 409 itself is already certain, so a failed look-up just omits the header.
    return null;
  }
}
