/**
 * The one hook by which a DbMutex's store can be varied, for src/internal/bench-seam.ts only. It is
 * a symbol-keyed option: invisible to `Object.keys` (so the unknown-option check never sees it),
 * absent from the public `DbMutexOptions` type, and unreachable from src/index.ts.
 */
import type { StatementSender, StatementVariant } from '../dialects/types';

export const STORE_SEAM: unique symbol = Symbol('sequelize-db-mutex store seam');

export interface StoreSeam {
  /** Rewrites each statement before it is sent (a lever undone). */
  variant?: StatementVariant;
  /** Sends through something else than the DbMutex's own runner (e.g. canned answers). */
  sender?: (runner: StatementSender) => StatementSender;
}

/** The seam carried by an options object, if any. */
export function storeSeamOf(options: object): StoreSeam | undefined {
  return (options as { [STORE_SEAM]?: StoreSeam })[STORE_SEAM];
}
