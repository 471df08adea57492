import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import request from 'supertest';
import { dbMutexHandler, DbMutexTimeoutError, type DbMutex, type DbMutexHeldLock } from '../src';
import { TestContext } from './helpers/db';
import { gate } from './helpers/wait';

/** A promise the test resolves when it wants the handler to finish. */
function errorHandler(err: unknown, _req: Request, res: Response, _next: NextFunction) {
  const e = err as { name?: string; code?: string; message?: string; reason?: string };
  res.status(500).json({ error: { name: e.name, code: e.code, message: e.message, reason: e.reason } });
}

describe('dbMutexHandler', () => {
  let ctx: TestContext;
  let mutex: DbMutex;
  let rival: DbMutex;
  const servers: Server[] = [];

  beforeAll(async () => {
    ctx = await TestContext.create();
    mutex = await ctx.mutex();
    rival = await ctx.mutex({ holder: 'rival-process' });
  });
  afterAll(async () => {
    for (const s of servers) await new Promise((resolve) => s.close(resolve));
    await ctx.cleanup();
  });

  /**
   * The handler answers before it returns, so the client can see the response a moment before the
   * lock is released: tests that check the release wait for the DbMutex's own event.
   */
  function released(lockId: string): Promise<void> {
    return new Promise((resolve) => {
      const listener = (event: { lockId: string }) => {
        if (event.lockId !== lockId) return;
        mutex.off('released', listener);
        resolve();
      };
      mutex.on('released', listener);
    });
  }

  /** One real listening server, so concurrent requests share it the way production traffic would. */
  async function listen(app: express.Express): Promise<string> {
    const server = createServer(app);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('runs the handler while holding the lock and releases it afterwards', async () => {
    const app = express();
    let seen: { row: unknown; token: number } | null = null;
    app.post(
      '/imports/:id',
      dbMutexHandler(
        (req) => `import:${String(req.params.id)}`,
        async (req, res, _next, lock) => {
          seen = { row: await mutex.inspect(lock.lockId), token: lock.fencingToken };
          res.json({ imported: req.params.id, fencingToken: lock.fencingToken });
        },
        { mutex },
      ),
    );
    const done = released('import:42');
    const res = await request(app).post('/imports/42').expect(200);
    expect(res.body).toEqual({ imported: '42', fencingToken: seen!.token });
    expect(seen!.row).toMatchObject({ lockId: 'import:42', fencingToken: seen!.token });
    await done;
    expect(await mutex.inspect('import:42')).toBeNull();
  });

  it('lets exactly one of two concurrent requests run and answers the other with 409', async () => {
    const app = express();
    const release = gate();
    let runs = 0;
    app.post(
      '/imports/:id',
      dbMutexHandler(
        (req) => `import:${String(req.params.id)}`,
        async (_req, res) => {
          runs++;
          await release.promise;
          res.json({ ok: true });
        },
        { mutex, ttlSeconds: 120, heartbeat: false },
      ),
    );
    const base = await listen(app);
    const done = released('import:7');
    const send = () => request(base).post('/imports/7').then((r) => r);
    const a = send();
    const b = send();
    // Whichever loses answers at once while the winner is still parked on the gate.
    const loser = await Promise.race([a, b]);
    expect(loser.status).toBe(409);
    expect(runs).toBe(1);
    release.open();
    const statuses = (await Promise.all([a, b])).map((r) => r.status).sort();
    expect(statuses).toEqual([200, 409]);
    expect(runs).toBe(1);
    expect(loser.body).toEqual({
      error: { code: 'DB_MUTEX_HELD', message: expect.stringContaining('import:7'), lockId: 'import:7', retryAfterSeconds: expect.any(Number) },
    });
    // Retry-After is whole seconds until the winner's expiry by the database clock (TTL 120 s here).
    const retryAfter = Number(loser.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(120);
    expect(loser.body.error.retryAfterSeconds).toBe(retryAfter);
    await done;
    expect(await mutex.inspect('import:7')).toBeNull();
  });

  it('answers 409 without Retry-After when the holder never expires', async () => {
    const held = await rival.acquire('reindex', { ttlSeconds: null, heartbeat: false });
    try {
      const app = express();
      const handler = jest.fn();
      app.post('/reindex', dbMutexHandler('reindex', handler, { mutex }));
      const res = await request(app).post('/reindex').expect(409);
      expect(res.headers['retry-after']).toBeUndefined();
      expect(res.body.error).toEqual({ code: 'DB_MUTEX_HELD', message: expect.any(String), lockId: 'reindex' });
      expect(handler).not.toHaveBeenCalled();
    } finally {
      await held.release();
    }
  });

  it('waits for the lock when waitMs is given, so both overlapping requests run one after the other', async () => {
    const app = express();
    const release = gate();
    const order: string[] = [];
    let entered = gate();
    app.post(
      '/nightly/:n',
      dbMutexHandler(
        'nightly',
        async (req, res) => {
          order.push(`start ${String(req.params.n)}`);
          entered.open();
          if (req.params.n === 'first') await release.promise;
          order.push(`end ${String(req.params.n)}`);
          res.json({ ok: true });
        },
        { mutex, waitMs: 30_000 },
      ),
    );
    const base = await listen(app);
    const first = request(base).post('/nightly/first').then((r) => r);
    await entered.promise;
    entered = gate();
    const second = request(base).post('/nightly/second').then((r) => r);
    release.open();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    expect(order).toEqual(['start first', 'end first', 'start second', 'end second']);
  });

  it('passes DbMutexTimeoutError to the error handler when the lock is lost while the handler runs', async () => {
    const app = express();
    const entered = gate();
    const release = gate();
    let lockSeen: DbMutexHeldLock | null = null;
    app.post(
      '/sync',
      dbMutexHandler(
        'billing:sync',
        async (_req, _res, _next, lock) => {
          lockSeen = lock;
          entered.open();
          await release.promise;
          // Deliberately no response: the lost lock must surface through Express's error handling.
        },
        { mutex },
      ),
    );
    let caught: unknown = null;
    app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
      caught = err;
      errorHandler(err, req, res, next);
    });
    const pending = request(app).post('/sync').then((r) => r);
    await entered.promise;
    const result = await rival.forceRelease({ lockId: 'billing:sync', operator: 'test', reason: 'stuck' });
    expect(result.status).toBe('released');
    release.open();
    const res = await pending;
    expect(res.status).toBe(500);
    expect(res.body.error).toMatchObject({ name: 'DbMutexTimeoutError', code: 'DB_MUTEX_LOST', reason: 'released-by-other' });
    expect(caught).toBeInstanceOf(DbMutexTimeoutError);
    expect(lockSeen!.isHeld()).toBe(false);
  });

  it('passes errors thrown by the handler to next and still releases the lock', async () => {
    const app = express();
    app.post(
      '/boom',
      dbMutexHandler('boom', () => {
        throw new Error('the import failed');
      }, { mutex }),
    );
    app.use(errorHandler);
    const res = await request(app).post('/boom').expect(500);
    expect(res.body.error.message).toBe('the import failed');
    expect(await mutex.inspect('boom')).toBeNull();
  });

  it('treats a nested lock refusal inside the handler as the handler failing, not as 409', async () => {
    const inner = await rival.acquire('inner-resource', { ttlSeconds: 60 });
    try {
      const app = express();
      app.post(
        '/outer',
        dbMutexHandler('outer', async () => {
          await mutex.acquire('inner-resource');
        }, { mutex }),
      );
      app.use(errorHandler);
      const res = await request(app).post('/outer').expect(500);
      expect(res.body.error).toMatchObject({ name: 'DbMutexError', code: 'DB_MUTEX_HELD' });
      expect(await mutex.inspect('outer')).toBeNull();
    } finally {
      await inner.release();
    }
  });

  it('answers 400 and writes nothing when the lock id computed from the request is invalid', async () => {
    const app = express();
    const handler = jest.fn();
    app.post('/imports/:id', dbMutexHandler((req) => `import:${String(req.params.id)}`, handler, { mutex }));
    const res = await request(app).post(`/imports/${'x'.repeat(300)}`).expect(400);
    expect(res.body.error.code).toBe('DB_MUTEX_INVALID_LOCK_ID');
    expect(handler).not.toHaveBeenCalled();
    expect(await mutex.counts()).toMatchObject({ total: 0 });
  });

  it('sends a lock-id function that returns a non-string to the error handler (an app bug, not a client error)', async () => {
    const app = express();
    app.post('/x', dbMutexHandler(() => undefined as unknown as string, jest.fn(), { mutex }));
    app.use(errorHandler);
    const res = await request(app).post('/x').expect(500);
    expect(res.body.error.name).toBe('TypeError');
  });

  it('lets onHeld replace the default 409 response', async () => {
    const held = await rival.acquire('report', { ttlSeconds: 30, heartbeat: false });
    try {
      const app = express();
      app.get(
        '/report',
        dbMutexHandler('report', jest.fn(), {
          mutex,
          onHeld: (info, _req, res) => {
            res.status(423).type('text').send(`busy ${info.lockId} ${info.retryAfterSeconds ?? '?'} ${info.error.code}`);
          },
        }),
      );
      const res = await request(app).get('/report').expect(423);
      expect(res.text).toMatch(/^busy report \d+ DB_MUTEX_HELD$/);
    } finally {
      await held.release();
    }
  });

  it('refuses a bad lock id, handler or option when the route is defined, before any request', () => {
    expect(() => dbMutexHandler('', jest.fn(), { mutex })).toThrow(TypeError);
    expect(() => dbMutexHandler('x'.repeat(256), jest.fn(), { mutex })).toThrow(RangeError);
    expect(() => dbMutexHandler(42 as unknown as string, jest.fn(), { mutex })).toThrow(TypeError);
    expect(() => dbMutexHandler('ok', 'nope' as unknown as () => void, { mutex })).toThrow(TypeError);
    expect(() => dbMutexHandler('ok', jest.fn(), { mutex, ttlSeconds: -1 })).toThrow(/ttlSeconds/);
    expect(() => dbMutexHandler('ok', jest.fn(), { mutex, waitMs: Number.NaN })).toThrow(/waitMs/);
  });

  it('uses the default DbMutex from initDbMutex when no mutex is passed', async () => {
    const { initDbMutex } = await import('../src');
    const sequelize = ctx.sequelize();
    const defaultMutex = initDbMutex(sequelize);
    try {
      const app = express();
      app.post('/default', dbMutexHandler('default-route', async (_req, res, _next, lock) => {
        res.json({ row: (await defaultMutex.inspect(lock.lockId))?.lockId });
      }));
      const res = await request(app).post('/default').expect(200);
      expect(res.body).toEqual({ row: 'default-route' });
    } finally {
      await defaultMutex.close();
    }
  });
});
