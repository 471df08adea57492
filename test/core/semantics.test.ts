import type { DbMutex } from '../../src';
import { DbMutexError, DbMutexTimeoutError, withDbMutex } from '../../src';
import { TestContext } from '../helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
let rival: DbMutex;

beforeAll(async () => {
  ctx = await TestContext.create();
  mutex = await ctx.mutex({ holder: 'primary' });
  rival = await ctx.mutex({ holder: 'rival' });
});
afterAll(() => ctx.cleanup());

const rows = (lockId?: string) => ctx.sql.lockRows(lockId ?? null);
const expireInDatabase = (lockId: string) => ctx.sql.expireLock(lockId);

describe('core semantics', () => {
  it('runs the function under the lock and returns its result', async () => {
    const result = await withDbMutex('returns', async (lock) => {
      expect(lock.lockId).toBe('returns');
      expect(typeof lock.fencingToken).toBe('number');
      expect(lock.signal).toBeInstanceOf(AbortSignal);
      expect(await rows('returns')).toHaveLength(1);
      return 'done';
    }, { mutex });
    expect(result).toBe('done');
    expect(await rows('returns')).toHaveLength(0);
  });

  it('refuses a held, unexpired lock at once with DbMutexError and never runs the function', async () => {
    const held = await rival.acquire('busy');
    const fn = jest.fn();
    const error = await withDbMutex('busy', fn, { mutex }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexError);
    expect((error as DbMutexError).message).toBe('Could not acquire lock: busy');
    expect((error as DbMutexError).code).toBe('DB_MUTEX_HELD');
    expect((error as DbMutexError).lockId).toBe('busy');
    expect(fn).not.toHaveBeenCalled();
    await held.release();
  });

  it('is not reentrant: the same lock id inside its own critical section gives DbMutexError', async () => {
    let inner: unknown;
    await withDbMutex('outer', async () => {
      inner = await withDbMutex('outer', () => 'never', { mutex }).catch((e: unknown) => e);
    }, { mutex });
    expect(inner).toBeInstanceOf(DbMutexError);
  });

  it('releases the lock when the function throws and rethrows the same error', async () => {
    const boom = new Error('boom');
    await expect(withDbMutex('throws', () => { throw boom; }, { mutex })).rejects.toBe(boom);
    expect(await rows('throws')).toHaveLength(0);
  });

  it('takes over an expired lock inside the acquire statement, without sweeping other expired rows', async () => {
    const stale = await rival.acquire('stale-a', { heartbeat: false });
    const other = await rival.acquire('stale-b', { heartbeat: false });
    await expireInDatabase('stale-a');
    await expireInDatabase('stale-b');
    const taken = await mutex.acquire('stale-a');
    expect(taken.fencingToken).toBeGreaterThan(stale.fencingToken);
    const all = await rows();
    expect(all.find((r) => r.lock_id === 'stale-a')?.holder).toBe('primary');
    // The other expired row is untouched: no table-wide DELETE on the hot path.
    expect(all.find((r) => r.lock_id === 'stale-b')?.holder).toBe('rival');
    await taken.release();
    await expect(stale.release()).rejects.toBeInstanceOf(DbMutexTimeoutError);
    await expect(other.release()).rejects.toBeInstanceOf(DbMutexTimeoutError);
  });

  it('never lets a displaced holder free the new holder\'s lock: its release gives DbMutexTimeoutError', async () => {
    const first = await rival.acquire('displaced', { heartbeat: false });
    await expireInDatabase('displaced');
    const second = await mutex.acquire('displaced');
    const error = await first.release().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect((error as DbMutexTimeoutError).message).toBe('Lock displaced expired before function completed');
    expect((error as DbMutexTimeoutError).reason).toBe('released-by-other');
    const [row] = await rows('displaced');
    expect(row?.fencing_token).toBe(second.fencingToken);
    expect(second.isHeld()).toBe(true);
    await second.release();
  });

  it('reports DbMutexTimeoutError when the lock expired before the function completed, even if nobody took it over', async () => {
    const error = await withDbMutex('expired-alone', async () => {
      await expireInDatabase('expired-alone');
      return 'result-kept';
    }, { mutex, heartbeat: false }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect((error as DbMutexTimeoutError).reason).toBe('expired');
    expect((error as DbMutexTimeoutError).result).toBe('result-kept');
    expect((error as DbMutexTimeoutError).cause).toBeUndefined();
    expect(await rows('expired-alone')).toHaveLength(0);
  });

  it('keeps the function\'s error as cause when the lock also timed out', async () => {
    const boom = new Error('body failed');
    const error = await withDbMutex('expired-throw', async () => {
      await expireInDatabase('expired-throw');
      throw boom;
    }, { mutex, heartbeat: false }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbMutexTimeoutError);
    expect((error as DbMutexTimeoutError).cause).toBe(boom);
    expect((error as DbMutexTimeoutError).result).toBeUndefined();
  });

  it('strictly increases the fencing token across release, expiry and takeover', async () => {
    const tokens: number[] = [];
    const a = await mutex.acquire('fenced');
    tokens.push(a.fencingToken);
    await a.release();
    const b = await rival.acquire('fenced', { heartbeat: false });
    tokens.push(b.fencingToken);
    await expireInDatabase('fenced');
    const c = await mutex.acquire('fenced');
    tokens.push(c.fencingToken);
    await ctx.sql.deleteLock('fenced');
    const d = await rival.acquire('fenced');
    tokens.push(d.fencingToken);
    await d.release();
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
  });

  it('treats lock ids as exact strings: case, trailing spaces and Unicode normalization make different locks', async () => {
    const ids = ['Report', 'report', 'report ', 'caf\u00e9', 'cafe\u0301'];
    const held = [];
    for (const id of ids) held.push(await mutex.acquire(id));
    expect((await rows()).map((r) => r.lock_id).filter((id) => ids.includes(id)).sort()).toEqual([...ids].sort());
    for (const id of ids) await expect(rival.acquire(id)).rejects.toBeInstanceOf(DbMutexError);
    for (const lock of held) await lock.release();
    expect((await rows()).filter((r) => ids.includes(r.lock_id))).toEqual([]);
  });

  it('keeps the two error classes distinct, with a name, a code and the lock id', () => {
    const a = new DbMutexError('x');
    const b = new DbMutexTimeoutError('x', { reason: 'expired', fencingToken: 1 });
    expect(a).toBeInstanceOf(Error);
    expect(b).toBeInstanceOf(Error);
    expect(a).not.toBeInstanceOf(DbMutexTimeoutError);
    expect(b).not.toBeInstanceOf(DbMutexError);
    expect([a.name, a.code, a.lockId]).toEqual(['DbMutexError', 'DB_MUTEX_HELD', 'x']);
    expect([b.name, b.code, b.lockId]).toEqual(['DbMutexTimeoutError', 'DB_MUTEX_LOST', 'x']);
  });

  it('lists active locks with holder, times and fencing token', async () => {
    const lock = await mutex.acquire('listed', { holder: 'reporter' });
    const listed = (await mutex.list()).find((r) => r.lockId === 'listed');
    expect(listed).toMatchObject({ lockId: 'listed', holder: 'reporter', fencingToken: lock.fencingToken, pid: process.pid, stale: false });
    expect(listed!.acquiredAt.getTime()).toBe(lock.acquiredAt.getTime());
    expect(listed!.expiresAt!.getTime()).toBeGreaterThan(listed!.acquiredAt.getTime());
    await lock.release();
  });

  it('passes database errors other than "already held" through unchanged', async () => {
    const broken = await ctx.mutex({ tableName: 'no_such_table', eventsTableName: 'no_such_events' });
    await ctx.sql.dropTable('no_such_table');
    const error = await broken.acquire('x').catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(DbMutexError);
    expect((error as { code?: string }).code).toBe(ctx.sql.noSuchTableCode);
  });
});
