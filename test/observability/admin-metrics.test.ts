/**
 * The admin router's optional `GET <mount>/metrics`: the registry's Prometheus text, behind
 * `authorize`, absent unless configured, refused as an option when it is not a registry.
 */
import express from 'express';
import { Registry } from 'prom-client';
import request from 'supertest';
import { createDbMutexAdminRouter, createDbMutexMetrics, withDbMutex, type DbMutex, type DbMutexAdminRouterOptions } from '../../src';
import { TestContext } from '../helpers/db';

let ctx: TestContext;
let mutex: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex();
});
afterAll(() => ctx.cleanup());

function app(options: Partial<DbMutexAdminRouterOptions>) {
  const a = express();
  a.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true, ...options }));
  return a;
}

it('serves the registry\'s Prometheus text at <mount>/metrics with its content type', async () => {
  const registry = new Registry();
  const metrics = createDbMutexMetrics(mutex, { registry });
  try {
    await withDbMutex('scraped', () => undefined, { mutex });
    const res = await request(app({ metrics: registry })).get('/admin/locks/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe(registry.contentType);
    expect(res.text).toContain('# TYPE db_mutex_acquisitions_total counter');
    expect(res.text).toContain('db_mutex_acquisitions_total{result="acquired"} 1');
    expect(res.text).toContain('db_mutex_held_locks 0');
  } finally {
    metrics.close();
  }
});

it('answers 403 at /metrics when authorize says no, like every route', async () => {
  const res = await request(app({ metrics: new Registry(), authorize: () => false })).get('/admin/locks/metrics');
  expect(res.status).toBe(403);
  expect(res.text).not.toContain('db_mutex_');
});

it('has no /metrics route unless the option is given', async () => {
  const res = await request(app({})).get('/admin/locks/metrics');
  expect(res.status).toBe(404);
});

it('answers a generic 500 and reports the error when the registry fails to collect', async () => {
  const onError = jest.fn();
  const failing = { contentType: 'text/plain; version=0.0.4; charset=utf-8', metrics: () => Promise.reject(new Error('collect failed')) };
  const res = await request(app({ metrics: failing, onError })).get('/admin/locks/metrics');
  expect(res.status).toBe(500);
  expect(res.text).not.toContain('collect failed');
  expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'collect failed' }), expect.anything());
});

it('refuses a metrics option that is not a registry when the router is created', () => {
  const authorize = () => true;
  expect(() => createDbMutexAdminRouter({ authorize, metrics: 'yes' as never })).toThrow(/options\.metrics must be a prom-client Registry/);
  expect(() => createDbMutexAdminRouter({ authorize, metrics: { metrics: () => '' } as never })).toThrow(TypeError);
});
