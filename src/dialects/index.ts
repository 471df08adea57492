import type { Sequelize } from 'sequelize';
import { DbMutexUnsupportedDialectError } from '../errors';
import { postgresDialect } from './postgres';
import type { Dialect } from './types';

const DIALECTS: Readonly<Record<string, Dialect>> = { postgres: postgresDialect };

export const SUPPORTED_DIALECTS: readonly string[] = Object.keys(DIALECTS);

export function dialectFor(sequelize: Sequelize): Dialect {
  const name = sequelize.getDialect();
  const dialect = DIALECTS[name];
  if (!dialect) throw new DbMutexUnsupportedDialectError(name, SUPPORTED_DIALECTS);
  return dialect;
}

export type { Dialect } from './types';
