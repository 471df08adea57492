/**
 * The demo's view of sequelize-db-mutex. An app writes `import { initDbMutex, … } from 'sequelize-db-mutex'`;
 * the demo lives inside the package's own repository, so it loads the built package (`dist/`, exactly what
 * npm installs) at run time, and takes the types from the sources so that type-checking needs no build.
 */
import type * as SequelizeDbMutex from '../../src';
import type * as DatabaseUrl from '../../src/cli/database-url';

function load(): typeof SequelizeDbMutex {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../../dist') as typeof SequelizeDbMutex;
  } catch (error) {
    throw new Error('The package is not built: run `npm run build` (or just `npm start`, which builds first).', { cause: error });
  }
}

const pkg = load();

/**
 * DATABASE_URL is read by the same parser as the `db-mutex` CLI's, so the demo too hands Sequelize options
 * instead of the URL (whose own parsing can print the password in a warning) and shows it without password.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const { parseDatabaseUrl, sequelizeOptions, redactUrl } = require('../../dist/cli/database-url') as typeof DatabaseUrl;

export const { initDbMutex, withDbMutex, dbMutexHandler, createDbMutexAdminRouter, DbMutexError, DbMutexTimeoutError } = pkg;
export type { DbMutex, DbMutexHeldLock, LockRow } from '../../src';
// The error classes are values above; these make their names usable as types too (`error: DbMutexError`).
export type DbMutexError = SequelizeDbMutex.DbMutexError;
export type DbMutexTimeoutError = SequelizeDbMutex.DbMutexTimeoutError;
