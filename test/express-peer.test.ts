/**
 * Which Express the dashboard tests run on, and what differs between Express 4 and 5. By default the
 * repository's own Express (a devDependency, 5); under scripts/test-express4.sh, the Express 4 installed
 * next to the packed package in a scratch app. This file makes sure such a run really loads what it
 * claims to, in the tests and inside the package alike.
 */
import path from 'node:path';
import express, { type Express } from 'express';
import request from 'supertest';
import { createDbMutexAdminRouter, dbMutexHandler, type DbMutex } from '../src';
import { TestContext } from './helpers/db';

const EXPECTED_MAJOR = process.env.DB_MUTEX_TEST_EXPRESS_MAJOR;

describe('the Express the dashboard tests run on', () => {
  (EXPECTED_MAJOR ? it : it.skip)(`is Express ${EXPECTED_MAJOR ?? '(any: DB_MUTEX_TEST_EXPRESS_MAJOR is unset)'}`, () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { version } = require('express/package.json') as { version: string };
    expect(version.split('.')[0]).toBe(EXPECTED_MAJOR);
  });

  it("is the copy the package's admin router is built from (the host app's own, as a peer dependency)", () => {
    const router = createDbMutexAdminRouter({ authorize: () => true });
    // Routers of one Express copy share their methods; another copy's are other functions.
    const methodsOf = (r: object) => ({ use: Reflect.get(r, 'use') as unknown, route: Reflect.get(r, 'route') as unknown });
    expect(methodsOf(router)).toEqual(methodsOf(express.Router()));
    expect(methodsOf(router).use).toBe(methodsOf(express.Router()).use);
    expect(typeof dbMutexHandler).toBe('function');
  });

  (process.env.DB_MUTEX_TEST_PACKAGE_DIR ? it : it.skip)('comes with the packed package, not src/, when a scratch app is named', () => {
    const loaded = require.resolve('../src');
    expect(loaded.startsWith(path.resolve(process.env.DB_MUTEX_TEST_PACKAGE_DIR!, 'node_modules', 'sequelize-db-mutex'))).toBe(true);
  });
});

describe('the admin router on either Express', () => {
  let ctx: TestContext;
  let mutex: DbMutex;
  const deprecations: Error[] = [];
  // With a listener, Express's deprecation notices (the `depd` module) are emitted instead of printed.
  const onDeprecation = (error: Error) => deprecations.push(error);

  beforeAll(async () => {
    ctx = await TestContext.create();
    mutex = await ctx.mutex();
    process.on('deprecation', onDeprecation);
  });

  afterAll(async () => {
    process.off('deprecation', onDeprecation);
    await ctx.cleanup();
  });

  function hostApp(trustProxy: boolean): Express {
    const app = express();
    app.set('trust proxy', trustProxy);
    app.use('/admin/locks', createDbMutexAdminRouter({ mutex, authorize: () => true }));
    return app;
  }

  it("accepts an action from the public origin a trusted proxy forwards, port included, and uses no deprecated Express API", async () => {
    const response = await request(hostApp(true))
      .delete('/admin/locks/api/locks/nobody-holds-this')
      .set('X-Forwarded-Host', 'admin.example:8443')
      .set('X-Forwarded-Proto', 'https')
      .set('Origin', 'https://admin.example:8443');
    // Past the origin check: the lock simply does not exist.
    expect(response.status).toBe(404);
    expect(deprecations.map((e) => e.message)).toEqual([]);
  });

  it('ignores X-Forwarded-Host from a peer the app does not trust', async () => {
    const response = await request(hostApp(false))
      .delete('/admin/locks/api/locks/nobody-holds-this')
      .set('X-Forwarded-Host', 'admin.example:8443')
      .set('Origin', 'http://admin.example:8443');
    expect(response.status).toBe(403);
    expect(response.body).toMatchObject({ error: { code: 'CROSS_SITE_REQUEST' } });
  });
});
