import { QueryTypes, Transaction } from 'sequelize';
import type { DbMutex } from '../../src';
import { DbMutexError, initDbMutex, withDbMutex } from '../../src';
import { TestContext } from '../helpers/db';

let ctx: TestContext;
let mutex: DbMutex;
let recording: DbMutex;
const statements: string[] = [];

beforeAll(async () => {
  ctx = await TestContext.create();
  // The lock's own statements, without the history write (counted on its own below).
  mutex = await ctx.mutex({ history: false }, { logging: (sql: string) => statements.push(sql) });
  recording = await ctx.mutex({ tableName: 'recorded_locks', eventsTableName: 'recorded_events' }, { logging: (sql: string) => statements.push(sql) });
});
afterAll(() => ctx.cleanup());
beforeEach(() => {
  statements.length = 0;
});

const lockStatements = () => statements.filter((s) => s.startsWith('Executing (db-mutex)'));

describe('statements and connections', () => {
  it('acquires with one SQL statement and releases with one SQL statement', async () => {
    const lock = await mutex.acquire('counted');
    expect(lockStatements()).toHaveLength(1);
    // PostgreSQL and SQLite: INSERT … ON CONFLICT DO UPDATE; MariaDB: INSERT … ON DUPLICATE KEY UPDATE.
    expect(lockStatements()[0]).toMatch(/INSERT INTO .* ON (CONFLICT|DUPLICATE KEY UPDATE)/);
    await lock.release();
    expect(lockStatements()).toHaveLength(2);
    // PostgreSQL and SQLite delete the row; MariaDB marks it released (rows persist there, see databases.md).
    expect(lockStatements()[1]).toMatch(/DELETE FROM|ON DUPLICATE KEY UPDATE/);
  });

  it('records the end in the release statement itself on PostgreSQL, and in one more statement on MariaDB and SQLite (history on, the default)', async () => {
    const lock = await recording.acquire('recorded');
    expect(lockStatements()).toHaveLength(1);
    await lock.release();
    // The first release of a DbMutex also prunes old history, in the background: not part of the release.
    const release = lockStatements()
      .slice(1)
      .filter((s) => !/DELETE FROM \S*recorded_locks_history/.test(s));
    const historyInsert = /INSERT (IGNORE |OR IGNORE )?INTO \S*recorded_locks_history/;
    if (ctx.dialect === 'postgres') {
      expect(release).toHaveLength(1);
      expect(release[0]).toMatch(/DELETE FROM \S*recorded_locks\b/);
      expect(release[0]).toMatch(historyInsert);
    } else {
      expect(release).toHaveLength(2);
      expect(release[1]).toMatch(historyInsert);
    }
    expect((await recording.history({ lockId: 'recorded' })).map((e) => e.outcome)).toEqual(['released']);
  });

  it('acquires outside an ambient transaction: a rival connection sees the lock before the transaction commits, and a rollback keeps it', async () => {
    const sequelize = mutex.sequelize;
    const seenToken = async () => (await ctx.sql.lockRows('in-transaction'))[0]?.fencing_token;
    let lockToken = 0;
    await sequelize
      .transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED }, async (t) => {
        // Make the transaction real (it holds a connection and has written nothing visible yet).
        // (type SELECT: Sequelize 6's raw-query path breaks on the mariadb connector 3's result arrays.)
        await sequelize.query('SELECT 1', { transaction: t, type: QueryTypes.SELECT });
        const lock = await mutex.acquire('in-transaction', { transaction: t });
        lockToken = lock.fencingToken;
        expect(await seenToken()).toBe(lock.fencingToken);
        const rival = await ctx.mutex();
        await expect(rival.acquire('in-transaction')).rejects.toBeInstanceOf(DbMutexError);
        throw new Error('roll the transaction back');
      })
      .catch((e: Error) => expect(e.message).toBe('roll the transaction back'));
    expect(await seenToken()).toBe(lockToken);
    await mutex.forceRelease({ lockId: 'in-transaction', operator: 'test' });
  });

  it('rejects bad input with TypeError or RangeError naming the parameter, before any SQL, writing nothing', async () => {
    const cases: [unknown, Record<string, unknown>, RegExp, typeof TypeError][] = [
      [42, {}, /lockId must be a string/, TypeError],
      [null, {}, /lockId must be a string/, TypeError],
      ['', {}, /lockId must not be empty/, TypeError],
      ['x'.repeat(256), {}, /lockId must be at most 255/, RangeError],
      ['nul\0byte', {}, /lockId must not contain a NUL/, TypeError],
      ['\ud800lone', {}, /lockId must be well-formed/, TypeError],
      ['ok', { ttlSeconds: -1 }, /ttlSeconds/, RangeError],
      ['ok', { ttlSeconds: NaN }, /ttlSeconds/, RangeError],
      ['ok', { ttlSeconds: Infinity }, /ttlSeconds/, RangeError],
      ['ok', { ttlSeconds: '10' }, /ttlSeconds must be a number/, TypeError],
      ['ok', { leaseSeconds: 0 }, /leaseSeconds/, RangeError],
      ['ok', { waitMs: -5 }, /waitMs/, RangeError],
      ['ok', { holder: 'h'.repeat(300) }, /holder/, RangeError],
    ];
    for (const [lockId, options, message, type] of cases) {
      const error = await mutex.acquire(lockId as string, options).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(type);
      expect((error as Error).message).toMatch(message);
      const viaHelper = await withDbMutex(lockId as string, () => 1, { mutex, ...options }).catch((e: unknown) => e);
      expect(viaHelper).toBeInstanceOf(type);
    }
    expect(lockStatements()).toHaveLength(0);
    expect(await mutex.list()).toEqual([]);
  });

  it('accepts a 255-character lock id made of multi-byte characters', async () => {
    const id = '锁'.repeat(254) + '🔒';
    await withDbMutex(id, async () => {
      const [row] = await mutex.list({ filter: '🔒' });
      expect(row?.lockId).toBe(id);
    }, { mutex });
  });

  it('keeps several DbMutex instances on separate tables apart', async () => {
    const other = await ctx.mutex({ tableName: 'other_locks', eventsTableName: 'other_events' });
    const a = await mutex.acquire('shared-name');
    const b = await other.acquire('shared-name');
    expect((await other.list()).map((r) => r.lockId)).toEqual(['shared-name']);
    await a.release();
    await b.release();
  });

  it('makes the instance from initDbMutex the default used by withDbMutex', async () => {
    const sequelize = ctx.sequelize();
    const defaulted = initDbMutex(sequelize, { tableName: 'default_locks', eventsTableName: 'default_events' });
    await defaulted.sync();
    await withDbMutex('via-default', async () => {
      expect((await defaulted.list()).map((r) => r.lockId)).toEqual(['via-default']);
    });
    await defaulted.close();
  });
});
