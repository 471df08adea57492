/**
 * BENCH-ONLY SEAM. Not public API: not exported from src/index.ts, not covered by semver, and free
 * to change with any commit. Nothing in the library's own code path uses it.
 *
 * What it is for: bench/ measures what each adopted "lever" of the library is worth by running the
 * library with that lever undone next to the library as shipped, in one process (ratios, never
 * absolute times). A lever lives in a statement's SQL (PostgreSQL's acquire that does not lock a live
 * row; its release that commits asynchronously) or in how statements are sent (MariaDB's
 * server-side prepared statements). This module builds those variants from the library's real
 * parts, so the bench never patches a DbMutex's private fields:
 * - `variantDbMutex`: a DbMutex whose store rewrites the statement of each operation before sending it;
 * - `stubbedDbMutex`: a DbMutex whose statements are answered by canned rows (the library's own
 *   JavaScript cost, database taken out);
 * - `storeOn`: one database's lock store (its SQL and row parsing) sending through any function, e.g.
 *   a raw driver client, without DbMutex or the statement runner;
 * - `statementOf`: the statement one store operation would send, without sending it (to check that
 *   a rewrite still recognises the library's SQL);
 * - `statementRunner`: the library's statement runner (pool checkout, logging hook, the driver's
 *   timeout wrapper) on a Sequelize instance;
 * - `releaseChannel`: the LISTEN channel of a lock table;
 * - `waiterMark`: the statements that mark a lock id as awaited (so its release notifies) and unmark it.
 * bench/ loads it from dist/internal/bench-seam.js.
 */
import type { Sequelize } from 'sequelize';
import { StatementRunner } from '../connection';
import { DbMutex } from '../db-mutex';
import { dialectNamed } from '../dialects';
import type { DialectDriver, LockStore, Rows, Statement, StatementSender, StatementVariant, StoreOperation } from '../dialects/types';
import type { DbMutexOptions } from '../options';
import type { SchemaNames } from '../schema';
import { STORE_SEAM, type StoreSeam } from './store-seam';

export type { DialectDriver, LockStore, Rows, Statement, StatementSender, StatementVariant, StoreOperation };

function withSeam(sequelize: Sequelize, options: DbMutexOptions, seam: StoreSeam): DbMutex {
  return new DbMutex(sequelize, { ...options, [STORE_SEAM]: seam } as DbMutexOptions);
}

/** A DbMutex whose store sends `variant(operation, statement)` in place of each statement. */
export function variantDbMutex(sequelize: Sequelize, options: DbMutexOptions, variant: StatementVariant): DbMutex {
  return withSeam(sequelize, options, { variant });
}

/** A DbMutex whose statements are never sent: `answer` returns the rows each would have returned. */
export function stubbedDbMutex(sequelize: Sequelize, options: DbMutexOptions, answer: (statement: Statement) => Rows): DbMutex {
  const sender: StatementSender = {
    run: async (statement) => answer(statement),
    transaction: async (statements) => statements.map(answer),
  };
  return withSeam(sequelize, options, { sender: () => sender });
}

/**
 * The lock store of the database `dialect` (a Sequelize dialect name) for the tables `names`,
 * sending each statement through `send`. Several statements of one operation go through `send` one
 * after the other, without a transaction: use it for single-statement operations (acquire, release,
 * renew, extend, inspect, list, counts, events).
 */
export function storeOn(
  dialect: string,
  names: SchemaNames,
  send: (statement: Statement) => Promise<Rows>,
  variant?: StatementVariant,
  /** Whether releases write the history table (`names.historyTableName`). */
  history = false,
): LockStore {
  const sender: StatementSender = {
    run: send,
    transaction: async (statements) => {
      const out: Rows[] = [];
      for (const statement of statements) out.push(await send(statement));
      return out;
    },
  };
  // A store that finds no history table turns history off and goes on: a bench row meant to time the
  // history write would then time the plain statements under its name. Fail the row instead.
  const onHistoryOff = (error: unknown) => {
    throw new Error(`storeOn: history is on but ${names.historyTableName} cannot be written`, { cause: error });
  };
  return dialectNamed(dialect).store(names, sender, { history, onHistoryOff }, variant);
}

/** The statement `call` makes the store send (answered with no rows; the first one if several). */
export async function statementOf(dialect: string, names: SchemaNames, call: (store: LockStore) => Promise<unknown>): Promise<Statement> {
  const sent: Statement[] = [];
  await call(
    storeOn(dialect, names, async (statement) => {
      sent.push(statement);
      return [];
    }),
  );
  if (!sent[0]) throw new Error('the store operation sent no statement');
  return sent[0];
}

/** The library's statement runner on `sequelize`, with its dialect's driver unless `driver` is given. */
export function statementRunner(sequelize: Sequelize, timeoutMs: number, driver?: DialectDriver): StatementRunner {
  return new StatementRunner(sequelize, driver ?? dialectNamed(sequelize.getDialect()).driver, timeoutMs);
}

/** The LISTEN channel of the lock table `names.tableName`; null where the database has no notices. */
export function releaseChannel(dialect: string, names: SchemaNames): string | null {
  return dialectNamed(dialect).channel?.(names) ?? null;
}

/** The statements that mark a lock id as awaited and unmark it ($1: the lock id); null where releases always notify or never do. */
export function waiterMark(dialect: string, names: SchemaNames): { mark: string; unmark: string } | null {
  return dialectNamed(dialect).waiterMarkSql?.(names) ?? null;
}
