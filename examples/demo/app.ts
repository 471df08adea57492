/**
 * The demo's Express app: the lock dashboard at /admin/locks, and a route that must never run twice at
 * once (`POST /imports/:id`), guarded by `dbMutexHandler`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import express, { type ErrorRequestHandler, type Request, type RequestHandler } from 'express';
import { createDbMutexAdminRouter, dbMutexHandler, DbMutexTimeoutError, type DbMutex } from './package';

/** How long the demo's fake import takes: long enough to press the button twice. */
export const IMPORT_SECONDS = 5;

/**
 * DEMO ONLY: admits requests that come from this machine (a loopback client address) and nobody else.
 * It is not authentication: a real app must put its own login in front of the router and check the
 * user's role here, e.g. `authorize: (req) => req.user?.roles.includes('ops') === true`.
 * The socket's address is used, never X-Forwarded-For (a client could write anything there).
 */
export function isLoopbackRequest(req: Request): boolean {
  const address = req.socket.remoteAddress ?? '';
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** The same loopback-only rule for the demo's own state-changing route. */
const loopbackOnly: RequestHandler = (req, res, next) => {
  if (isLoopbackRequest(req)) next();
  else res.status(403).json({ error: { code: 'FORBIDDEN', message: 'The demo accepts requests from this machine only.' } });
};

/**
 * Another site's page could make the browser POST here (a plain form needs no permission). Browsers say
 * where a request comes from (Sec-Fetch-Site, Origin); refuse anything not from this very site. Tools
 * such as curl send neither header and are let through.
 */
const refuseCrossSite: RequestHandler = (req, res, next) => {
  const site = req.get('sec-fetch-site');
  const origin = req.get('origin');
  let foreignOrigin = false;
  if (origin !== undefined) {
    try {
      foreignOrigin = new URL(origin).host !== req.get('host');
    } catch {
      foreignOrigin = true; // "null" or garbage
    }
  }
  if ((site !== undefined && site !== 'same-origin' && site !== 'none') || foreignOrigin) {
    res.status(403).json({ error: { code: 'CROSS_SITE', message: 'Cross-site requests are refused.' } });
    return;
  }
  next();
};

const INDEX_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sequelize-db-mutex demo</title></head>
<body>
<h1>sequelize-db-mutex demo</h1>
<p><a href="/admin/locks">Open the lock dashboard</a> (this machine only).</p>
<p>Start an import that cannot run twice at once (the second request gets 409 Conflict while the first runs for ${IMPORT_SECONDS} s):</p>
<pre>curl -i -X POST http://localhost:PORT/imports/42 &amp; curl -i -X POST http://localhost:PORT/imports/42</pre>
</body></html>
`;

export function createDemoApp(options: { mutex: DbMutex; port: number }): express.Express {
  const { mutex, port } = options;
  const app = express();
  app.disable('x-powered-by');

  app.get('/', (_req, res) => {
    res.type('html').send(INDEX_HTML.replaceAll('PORT', String(port)));
  });

  app.use(
    '/admin/locks',
    createDbMutexAdminRouter({
      mutex,
      authorize: isLoopbackRequest, // DEMO ONLY, see isLoopbackRequest: replace with your own access check
      operator: () => 'demo operator (loopback)',
    }),
  );

  app.post(
    '/imports/:id',
    loopbackOnly,
    refuseCrossSite,
    dbMutexHandler(
      (req) => `import:${String(req.params.id)}`,
      async (req, res, _next, lock) => {
        // The work gets the lock's signal, so it stops if the lock is lost (an operator released it).
        await sleep(IMPORT_SECONDS * 1000, undefined, { signal: lock.signal });
        res.json({ import: String(req.params.id), status: 'done', fencingToken: lock.fencingToken });
      },
      { mutex, leaseSeconds: 10 },
    ),
  );

  // dbMutexHandler passes DbMutexTimeoutError (lock lost mid-import) and other failures here.
  const onError: ErrorRequestHandler = (error, _req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    if (error instanceof DbMutexTimeoutError) {
      res.status(500).json({ error: { code: error.code, message: `The import lost its lock (${error.reason}); it was stopped.` } });
      return;
    }
    console.error('[app] request failed:', error);
    res.status(500).json({ error: { code: 'INTERNAL', message: 'Something went wrong.' } });
  };
  app.use(onError);
  return app;
}
