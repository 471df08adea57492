/** `initDbMutex` and the default DbMutex used by the top-level helpers. */
import type { Sequelize } from 'sequelize';
import { closeHooks, DbMutex } from './db-mutex';
import type { DbMutexOptions } from './options';

let defaultMutex: DbMutex | null = null;

closeHooks.add((mutex) => {
  if (defaultMutex === mutex) defaultMutex = null;
});

/**
 * Defines the DbMutexLock (and DbMutexEvent) models on `sequelize` and returns a DbMutex for them.
 * Unless `setDefault: false`, it becomes the default of `withDbMutex`/`dbMutex`. Several DbMutex
 * instances (several databases or tables) may coexist; pass `mutex` per call to pick one.
 */
export function initDbMutex(sequelize: Sequelize, options: DbMutexOptions = {}): DbMutex {
  if (!sequelize || typeof (sequelize as { getDialect?: unknown }).getDialect !== 'function') {
    throw new TypeError('initDbMutex: sequelize must be a Sequelize instance');
  }
  const mutex = new DbMutex(sequelize, options);
  if (mutex.options.setDefault) defaultMutex = mutex;
  return mutex;
}

/** The default DbMutex; throws a TypeError naming the fix when there is none. */
export function getDefaultDbMutex(): DbMutex {
  if (!defaultMutex) {
    throw new TypeError('No default DbMutex: call initDbMutex(sequelize) first, or pass { mutex } to this call');
  }
  return defaultMutex;
}
