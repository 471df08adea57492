/**
 * A misspelt option is an error, not a silently ignored key: every options object of the public API
 * rejects unknown keys with a TypeError that names the key, the function and the closest known option,
 * before any SQL. Options handed on from one function to another (withDbMutex's to acquire, the
 * wrapper's to withDbMutex, a route's to withDbMutex) are not falsely rejected on the way.
 */
import type { Request, Response } from 'express';
import {
  createDbMutexAdminRouter,
  DbMutex,
  dbMutex,
  DbMutexError,
  dbMutexHandler,
  initDbMutex,
  withDbMutex,
  type DbMutexHeldLock,
} from '../../src';
import { TestContext } from '../helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
/** Every statement `mutex` sends (Sequelize's logging hook sees the lock statements too). */
const statements: string[] = [];

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'options-test' }, { logging: (sql: string) => void statements.push(sql) });
});
afterAll(() => ctx.cleanup());

/** The call's TypeError message, asserting that it sent no SQL. */
async function rejection(call: () => unknown): Promise<string> {
  const before = statements.length;
  let error: unknown;
  try {
    await call();
  } catch (e) {
    error = e;
  }
  expect(statements.length - before).toBe(0);
  expect(error).toBeInstanceOf(TypeError);
  return (error as Error).message;
}

const operator = 'options-test';

describe('unknown option keys', () => {
  it.each<[string, () => unknown, string]>([
    ['initDbMutex', () => initDbMutex(ctx.sequelize(), { ttlSecond: 5 } as never), 'Unknown option "ttlSecond" for initDbMutex (did you mean "ttlSeconds"?)'],
    ['new DbMutex', () => new DbMutex(ctx.sequelize(), { setDefault: false, tablename: 'x' } as never), 'Unknown option "tablename" for initDbMutex (did you mean "tableName"?)'],
    ['mutex.acquire', () => mutex.acquire('typo', { waitMS: 100 } as never), 'Unknown option "waitMS" for mutex.acquire (did you mean "waitMs"?)'],
    ['withDbMutex (its own option)', () => withDbMutex('typo', () => 1, { mutx: mutex } as never), 'Unknown option "mutx" for withDbMutex (did you mean "mutex"?)'],
    ['withDbMutex (an acquire option)', () => withDbMutex('typo', () => 1, { mutex, heartBeat: false } as never), 'Unknown option "heartBeat" for withDbMutex (did you mean "heartbeat"?)'],
    ['dbMutex', () => dbMutex('typo', { mutex, suppressAcquisitionError: true } as never), 'Unknown option "suppressAcquisitionError" for dbMutex (did you mean "suppressAcquisitionErrors"?)'],
    ['mutex.list', () => mutex.list({ filtr: 'a' } as never), 'Unknown option "filtr" for mutex.list (did you mean "filter"?)'],
    ['mutex.forceRelease', () => mutex.forceRelease({ lockId: 'a', operator, fencing_token: 3 } as never), 'Unknown option "fencing_token" for mutex.forceRelease (did you mean "fencingToken"?)'],
    ['mutex.releaseStale', () => mutex.releaseStale({ operator, reasons: 'x' } as never), 'Unknown option "reasons" for mutex.releaseStale (did you mean "reason"?)'],
    ['mutex.purgeExpired', () => mutex.purgeExpired({ operater: 'x' } as never), 'Unknown option "operater" for mutex.purgeExpired (did you mean "operator"?)'],
    ['mutex.events', () => mutex.events({ lockID: 'a' } as never), 'Unknown option "lockID" for mutex.events (did you mean "lockId"?)'],
    [
      'createDbMutexAdminRouter',
      () => createDbMutexAdminRouter({ authorize: () => true, mutex, readonly: true } as never),
      'Unknown option "readonly" for createDbMutexAdminRouter (did you mean "readOnly"?)',
    ],
    ['dbMutexHandler', () => dbMutexHandler('typo', () => undefined, { mutex, waitMS: 10 } as never), 'Unknown option "waitMS" for dbMutexHandler (did you mean "waitMs"?)'],
  ])('%s names the unknown key and the closest known option, before any SQL', async (_name, call, message) => {
    expect(await rejection(call)).toBe(message);
  });

  it('lists the known options when no option is close', async () => {
    expect(await rejection(() => initDbMutex(ctx.sequelize(), { colour: 'red' } as never))).toBe(
      'Unknown option "colour" for initDbMutex (known options: ttlSeconds, leaseSeconds, heartbeat, waitMs, pollIntervalMs, ' +
        'statementTimeoutMs, listen, holder, tableName, eventsTableName, setDefault, listenUrl, listenIdleMs, preparedStatements, history, ' +
        'historyRetentionDays, historyTableName)',
    );
  });

  it('rejects an unknown key even when its value is undefined', async () => {
    expect(await rejection(() => mutex.acquire('typo', { ttlSecond: undefined } as never))).toContain('"ttlSecond"');
  });

  it('rejects signal and transaction for a route handler, whose type leaves them out', async () => {
    const message = await rejection(() => dbMutexHandler('typo', () => undefined, { signal: new AbortController().signal } as never));
    expect(message).toMatch(/^Unknown option "signal" for dbMutexHandler \(known options: /);
  });

  it('leaves nothing behind: a rejected acquire wrote no row', async () => {
    expect(await ctx.sql.lockRows('typo')).toEqual([]);
  });
});

describe('options handed on from one function to another', () => {
  it('withDbMutex passes every acquire option, and its own mutex, without complaint', async () => {
    const controller = new AbortController();
    const result = await withDbMutex('pass-through', (lock) => lock.holder, {
      mutex,
      ttlSeconds: 60,
      leaseSeconds: 30,
      heartbeat: true,
      waitMs: 0,
      holder: 'wrapper-holder',
      signal: controller.signal,
      transaction: null,
    });
    expect(result).toBe('wrapper-holder');
  });

  it('withDbMutex still takes null for "no options" (with a default DbMutex)', async () => {
    const own = initDbMutex(ctx.sequelize(), { holder: 'default' });
    try {
      await own.sync();
      expect(await withDbMutex('null-options', () => 'ran', null as never)).toBe('ran');
    } finally {
      await own.close();
    }
  });

  it('dbMutex passes its lock options through withDbMutex to acquire', async () => {
    const suppressed: DbMutexError[] = [];
    const wrapped = dbMutex('wrapped', {
      mutex,
      waitMs: 0,
      holder: 'decorated',
      heartbeat: false,
      suppressAcquisitionErrors: true,
      onSuppressed: (error) => suppressed.push(error),
    })(async () => 'ran');
    expect(await wrapped()).toBe('ran');
    const held = await mutex.acquire('wrapped');
    expect(await wrapped()).toBeUndefined();
    expect(suppressed[0]?.holder).toBe('options-test');
    await held.release();
  });

  it('dbMutexHandler passes its acquire options and its DbMutex to the lock', async () => {
    let seen: DbMutexHeldLock | null = null;
    const route = dbMutexHandler(
      'route',
      (_req, _res, _next, lock) => {
        seen = lock;
      },
      { mutex, holder: 'route-holder', ttlSeconds: 30, leaseSeconds: 10, heartbeat: false, waitMs: 0, onHeld: () => undefined },
    );
    const next = jest.fn();
    await route({} as Request, {} as Response, next);
    expect(next).not.toHaveBeenCalled();
    expect(seen!.holder).toBe('route-holder');
  });

  it('accepts a whole LockRow as the `after` cursor of list (the last row of the previous page)', async () => {
    const a = await mutex.acquire('page-a');
    const b = await mutex.acquire('page-b');
    const [first] = await mutex.list({ filter: 'page-', limit: 1 });
    // The row is taken as a cursor, not refused for its extra keys (lockId, holder, dbNow…). Which rows
    // follow is the cursor's own matter: on MariaDB, whose times carry microseconds that a Date drops,
    // the cursor row itself can come again, so only the next row is asserted here.
    const rest = await mutex.list({ filter: 'page-', after: first });
    expect(first!.lockId).toBe('page-a');
    expect(rest.map((r) => r.lockId)).toContain('page-b');
    await a.release();
    await b.release();
  });
});
