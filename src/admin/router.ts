/**
 * `createDbMutexAdminRouter`: the operator dashboard and its JSON API as one mountable Express router.
 *
 * Self-contained on purpose: it renders its own EJS files by absolute path, parses bodies only on its
 * own routes, serves its own CSS/JS, and answers its own errors, so mounting it changes nothing in
 * the host app (view engine, body parsers, static files, error handler).
 *
 * This file is the wiring: which middleware guards which route. The handlers are in handlers.ts, the
 * pages' data in view-model.ts, the guards in middleware.ts.
 */
import type { Router } from 'express';
import { Signer } from './csrf';
import * as handlers from './handlers';
import * as historyHandlers from './history-handlers';
import * as semaphoreHandlers from './semaphore-handlers';
import {
  asyncHandler,
  errorHandler,
  historyLockIdParam,
  historyMethodNotAllowed,
  jsonObjectOrNoBody,
  LOCK_HISTORY_PATH,
  LOCK_PAGE_PATH,
  lockIdParam,
  lockMethodNotAllowed,
  notFound,
  ONE_LOCK_PATH,
  pageLockIdParam,
  refuseWhenReadOnly,
  requireAuthorization,
  requireSameOriginAction,
  securityHeaders,
} from './middleware';
import { resolveOptions, type DbMutexAdminRouterOptions } from './options';
import { metricsRoute } from './metrics-route';

export type { DbMutexAdminRouterOptions } from './options';

const BODY_LIMIT = '16kb';

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
  const ctx: handlers.AdminContext = { config, signer: new Signer(options.secret) };
  const express = loadExpress();
  const router = express.Router();
  const run = (handler: handlers.AdminHandler) => asyncHandler((req, res) => handler(ctx, req, res));

  const formBody = express.urlencoded({ extended: false, limit: BODY_LIMIT, parameterLimit: 50 });
  // Not strict: any JSON value parses, so that every non-object gets the same clear 400.
  const apiBody = jsonObjectOrNoBody(express.json({ limit: BODY_LIMIT, strict: false }));
  const action = requireSameOriginAction(config);
  const confirmation = refuseWhenReadOnly(config);

  router.use(securityHeaders, requireAuthorization(config));
  router.get('/static/:file', handlers.staticFile);

  router.get('/', run(handlers.dashboard));
  router.get('/semaphores', run(semaphoreHandlers.semaphores));
  router.get(LOCK_PAGE_PATH, pageLockIdParam, run(historyHandlers.lockHistoryPage));
  router.get('/confirm-release', confirmation, run(handlers.confirmRelease));
  router.get('/confirm-release-stale', confirmation, run(handlers.confirmReleaseStale));
  router.post('/release', action, formBody, run(handlers.releaseForm));
  router.post('/release-stale', action, formBody, run(handlers.releaseStaleForm));

  router.get('/api/locks', run(handlers.listLocks));
  router.post('/api/locks/release-stale', action, apiBody, run(handlers.releaseStaleApi));
  // Before ONE_LOCK_PATH, which matches these paths too.
  router.get(LOCK_HISTORY_PATH, historyLockIdParam, run(historyHandlers.lockHistoryApi));
  router.all(LOCK_HISTORY_PATH, historyLockIdParam, historyMethodNotAllowed);
  router.get(ONE_LOCK_PATH, lockIdParam, run(handlers.inspectLock));
  router.delete(ONE_LOCK_PATH, lockIdParam, action, apiBody, run(handlers.releaseLock));
  router.all(ONE_LOCK_PATH, lockIdParam, lockMethodNotAllowed);
  router.get('/api/events', run(handlers.listEvents));
  router.get('/api/semaphores', run(semaphoreHandlers.listSemaphores));
  if (config.metrics) router.get('/metrics', metricsRoute(config.metrics));

  router.use(notFound);
  router.use(errorHandler(config));
  return router;
}
