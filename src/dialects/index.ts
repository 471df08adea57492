import type { Sequelize } from 'sequelize';
import { DbMutexUnsupportedDialectError } from '../errors';
import { mariadbDialect, mysqlDialect } from './mariadb';
import { postgresDialect } from './postgres';
import { sqliteDialect } from './sqlite';
import type { Dialect } from './types';

/** Sequelize dialect name → the module holding everything that differs on that database. */
const DIALECTS: Readonly<Record<string, Dialect>> = {
  postgres: postgresDialect,
  mariadb: mariadbDialect,
  // The mysql2 driver, talking to a MariaDB server (the SQL is MariaDB's).
  mysql: mysqlDialect,
  sqlite: sqliteDialect,
};

export const SUPPORTED_DIALECTS: readonly string[] = Object.keys(DIALECTS);

export function dialectFor(sequelize: Sequelize): Dialect {
  return dialectNamed(sequelize.getDialect());
}

/** The dialect module of a Sequelize dialect name. */
export function dialectNamed(name: string): Dialect {
  const dialect = Object.prototype.hasOwnProperty.call(DIALECTS, name) ? DIALECTS[name] : undefined;
  if (!dialect) throw new DbMutexUnsupportedDialectError(name, SUPPORTED_DIALECTS);
  return dialect;
}

export type { Dialect } from './types';
