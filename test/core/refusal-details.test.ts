/**
 * A refused acquisition says who holds the lock and until when (database clock), on every database,
 * and learning it costs a successful acquire nothing: the statements each path sends are counted
 * through Sequelize's logging hook, which sees the lock statements too.
 */
import type { DbMutex } from '../../src';
import { DbMutexError, withDbMutex } from '../../src';
import { dialect, TestContext } from '../helpers/db';

let ctx: TestContext;
let holder: DbMutex;
let rival: DbMutex;
const rivalStatements: string[] = [];

beforeAll(async () => {
  ctx = await TestContext.create();
  holder = await ctx.mutex({ holder: 'nightly-report@app-1' });
  rival = await ctx.mutex({ holder: 'rival', listen: false }, { logging: (sql: string) => void rivalStatements.push(sql) });
});
afterAll(() => ctx.cleanup());

async function refusal(call: () => Promise<unknown>): Promise<DbMutexError> {
  const error = await call().then(
    () => new Error('acquired, expected a refusal'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DbMutexError);
  return error as DbMutexError;
}

/** Statements the rival sends during `call`. */
async function counted<T>(call: () => Promise<T>): Promise<{ result: T; statements: number }> {
  const before = rivalStatements.length;
  const result = await call();
  return { result, statements: rivalStatements.length - before };
}

describe('a refused acquisition', () => {
  it('carries the holder label and the expiry of the current holder by the database clock', async () => {
    const lock = await holder.acquire('report', { heartbeat: false, ttlSeconds: 600 });
    const error = await refusal(() => rival.acquire('report'));
    expect(error.code).toBe('DB_MUTEX_HELD');
    expect(error.holder).toBe('nightly-report@app-1');
    // The very instant the holder's own acquisition reported (both come from the database's row).
    expect(error.expiresAt).toEqual(lock.expiresAt);
    const row = await holder.inspect('report');
    expect(error.expiresAt).toEqual(row!.expiresAt);
    await lock.release();
  });

  it('says expiresAt null for a holder that never expires', async () => {
    const lock = await holder.acquire('forever', { heartbeat: false, ttlSeconds: null });
    const error = await refusal(() => withDbMutex('forever', () => undefined, { mutex: rival }));
    expect(error.holder).toBe('nightly-report@app-1');
    expect(error.expiresAt).toBeNull();
    await lock.release();
  });

  it('reports the holder of the moment, after a takeover of an expired lock', async () => {
    const first = await holder.acquire('taken-over', { heartbeat: false, holder: 'first' });
    await ctx.sql.expireLock('taken-over');
    const second = await rival.acquire('taken-over', { heartbeat: false, holder: 'second', ttlSeconds: 300 });
    const error = await refusal(() => holder.acquire('taken-over'));
    expect(error.holder).toBe('second');
    expect(error.expiresAt).toEqual(second.expiresAt);
    await second.release();
    await first.release().catch(() => undefined);
  });

  it('carries the holder when waitMs runs out too', async () => {
    const lock = await holder.acquire('waited', { heartbeat: false, ttlSeconds: 600 });
    const error = await refusal(() => rival.acquire('waited', { waitMs: 300 }));
    expect(error.code).toBe('DB_MUTEX_WAIT_TIMEOUT');
    expect(error.holder).toBe('nightly-report@app-1');
    expect(error.expiresAt).toEqual(lock.expiresAt);
    await lock.release();
  });

  it('leaves holder and expiresAt unset when the DbMutex is closed', async () => {
    const closed = await ctx.mutex({ holder: 'closing' });
    await closed.close();
    const error = await refusal(() => closed.acquire('anything'));
    expect(error.code).toBe('DB_MUTEX_CLOSED');
    expect(error.holder).toBeUndefined();
    expect(error.expiresAt).toBeUndefined();
  });

  it('costs a successful acquire no statement, and a refusal one statement (two on SQLite)', async () => {
    const won = await counted(() => rival.acquire('counted', { heartbeat: false }));
    expect(won.statements).toBe(1);
    const error = await counted(() => refusal(() => holder.acquire('counted')));
    expect(error.result.holder).toBe('rival');
    const refused = await counted(() => refusal(() => rival.acquire('counted')));
    expect(refused.result.holder).toBe('rival');
    // PostgreSQL and MariaDB return the holder's row from the acquire statement itself; SQLite's
    // refused upsert returns nothing, so the holder is read once, on the refused path only.
    expect(refused.statements).toBe(dialect === 'sqlite' ? 2 : 1);
    await won.result.release();
  });
});
