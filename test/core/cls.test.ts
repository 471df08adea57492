/**
 * With Sequelize's CLS enabled, every sequelize.query inside a transaction callback joins that
 * transaction implicitly. Lock statements must not: they run on their own connection.
 */
import { createNamespace } from 'cls-hooked';
import { QueryTypes, Sequelize } from 'sequelize';
import { DbMutexError, initDbMutex } from '../../src';
import { TestContext } from '../helpers/db';

let ctx: TestContext;

beforeAll(async () => {
  Sequelize.useCLS(createNamespace('db-mutex-cls-test'));
  ctx = await TestContext.create();
});
afterAll(() => ctx.cleanup());

it('acquires outside a CLS transaction: rivals see the lock at once and a rollback does not undo it', async () => {
  const sequelize = ctx.sequelize();
  const mutex = initDbMutex(sequelize, { setDefault: false });
  await mutex.sync();
  const rival = await ctx.mutex();
  let token = 0;
  await sequelize
    .transaction(async () => {
      // Joins the CLS transaction implicitly. (type SELECT: Sequelize 6's raw-query path breaks on the
      // mariadb connector 3's result arrays.)
      await sequelize.query('SELECT 1', { type: QueryTypes.SELECT });
      const lock = await mutex.acquire('cls-lock');
      token = lock.fencingToken;
      await expect(rival.acquire('cls-lock')).rejects.toBeInstanceOf(DbMutexError);
      throw new Error('rollback');
    })
    .catch((e: Error) => expect(e.message).toBe('rollback'));
  expect((await rival.inspect('cls-lock'))?.fencingToken).toBe(token);
  await mutex.close();
});
