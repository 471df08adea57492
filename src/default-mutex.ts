/** `initDbMutex` and the default DbMutex used by the top-level helpers. */
import type { Sequelize } from 'sequelize';
import { DbMutex } from './db-mutex';
import type { DbMutexOptions } from './options';

let defaultMutex: DbMutex | null = null;

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

/** The default DbMutex; throws a TypeError naming the fix when there is none (or it was closed). */
export function getDefaultDbMutex(): DbMutex {
  // A closed default is gone: forgotten here, the first time anyone asks for it.
  if (defaultMutex?.isClosed) defaultMutex = null;
  if (!defaultMutex) {
    throw new TypeError('No default DbMutex: call initDbMutex(sequelize) first, or pass { mutex } to this call');
  }
  return defaultMutex;
}
