/**
 * What differs between databases lives behind these interfaces: the lock store (each operation's SQL
 * text, rows and transactions), how a raw driver connection runs a statement, schema extras, and
 * (optionally) release notifications.
 * Everything else (leases, waiting, errors, the admin router) is written once on top of it.
 */
import type { Sequelize } from 'sequelize';
import type { SchemaNames } from '../schema';

/** One statement, ready for the raw driver. `name` identifies a reusable prepared statement. */
export interface Statement {
  readonly name: string;
  readonly text: string;
  readonly values: readonly unknown[];
  /**
   * The text's shape never varies (no list expanded into it), so a driver may keep a server-side
   * prepared statement for it per connection. Statements with lists vary in length, and preparing
   * each length would only churn the driver's statement cache.
   */
  readonly prepare?: boolean;
}

/** One acquisition, as both a lock row and its audit entry name it. */
export interface AcquisitionFields {
  lockId: string;
  fencingToken: number;
  holder: string;
  hostname: string;
  pid: number;
  /** Database-clock instant. */
  acquiredAt: Date;
}

/** A lock row as the library reads it. Times are database-clock instants. */
export interface LockRow extends AcquisitionFields {
  expiresAt: Date | null;
  deadlineAt: Date | null;
  heartbeatAt: Date;
  leaseSeconds: number | null;
  /** The database's now() when the row was read; ages and "expires in" are relative to it. */
  dbNow: Date;
  /** Expired, or its heartbeat is overdue (no renewal for more than two renewal periods). */
  stale: boolean;
  /** What the row is: `lock`, `semaphore` (one permit of a counting semaphore) or `election` (a leader election's lock). */
  kind: string;
  /** A permit's semaphore id; null for other kinds. */
  semaphoreId: string | null;
  /** A permit's number (0-based); null for other kinds. */
  permit: number | null;
  /** The limit a permit was acquired with; null for other kinds. */
  limit: number | null;
}

/** An audit entry: an acquisition ended by an operator action. */
export interface EventRow extends AcquisitionFields {
  id: number;
  action: string;
  ageSeconds: number;
  operator: string;
  reason: string | null;
  createdAt: Date;
}

export interface AcquireParams {
  lockId: string;
  ownerToken: string;
  holder: string;
  hostname: string;
  pid: number;
  ttlSeconds: number | null;
  leaseSeconds: number | null;
  /**
   * What the row is: a plain lock, or a leader election's lock. Written on insert and on takeover,
   * which also clears the semaphore columns of a permit row taken over under its key. Default `lock`.
   */
  kind?: 'lock' | 'election';
}

export interface AcquiredRow {
  fencingToken: number;
  acquiredAt: Date;
  expiresAt: Date | null;
}

/** One attempt at a permit of a counting semaphore: a lock's parameters, for a semaphore id and its limit. */
export interface SemaphoreAcquireParams extends Omit<AcquireParams, 'lockId' | 'kind'> {
  semaphoreId: string;
  limit: number;
}

/**
 * What a semaphore acquisition statement decided: `won` a permit; refused because every permit is
 * held (`full`) or because the current holders use another limit (`mismatch`); or `raced`: the free
 * permit it chose was taken by a lock of that very id in the meantime (try again at once).
 */
export type SemaphoreAttempt =
  | { outcome: 'won'; permit: number; lockId: string; fencingToken: number; acquiredAt: Date; expiresAt: Date | null }
  | {
      outcome: 'full' | 'mismatch' | 'raced';
      /** Live permits of the semaphore. */
      used: number;
      /** The limit of the current holders (the caller's own when nobody holds a permit). */
      currentLimit: number;
      /** The holder whose permit runs out first, and when (null: never); null when nobody holds one. */
      holder: CurrentHolder | null;
    };

/** Who holds a lock, as a refused acquisition learned it. */
export interface CurrentHolder {
  holder: string;
  /** Database-clock expiry; null = never. */
  expiresAt: Date | null;
}

export interface ListParams {
  /** Substring of the lock id (plain text, not a pattern). */
  filter: string | null;
  staleOnly: boolean;
  limit: number;
  /** Keyset cursor: rows strictly after this (acquiredAt, lockId) in oldest-first order. */
  after: { acquiredAt: Date; lockId: string } | null;
}

/** Which rows an audited release takes (the stores' shared shape of forceRelease, releaseStale, purgeExpired). */
export type ReleaseWhere = { kind: 'one'; lockId: string; fencingToken: number | null } | { kind: 'stale' } | { kind: 'expired' };

/** A parsed row set of one statement. */
export type Rows = Record<string, unknown>[];

export type TransactionCommand = 'BEGIN' | 'COMMIT' | 'ROLLBACK';

/** Runs statements on a driver connection taken from Sequelize's pool. */
export interface DialectDriver {
  run(connection: unknown, statement: Statement, timeoutMs: number): Promise<Rows>;
  /** Sends BEGIN, COMMIT or ROLLBACK as it is (no statement wrapper, never prepared). */
  control(connection: unknown, command: TransactionCommand, timeoutMs: number): Promise<void>;
  /** True if the connection must not go back to the pool after this error (e.g. client-side timeout). */
  isBroken(connection: unknown, error: unknown): boolean;
  /**
   * True if this error means the database rolled the statement back as a whole and running it again
   * is safe (deadlock victim). Only single autocommit statements are retried, never a transaction's.
   */
  isRetryable?(error: unknown): boolean;
  /**
   * True if this error says a named prepared statement is missing on, or already exists on, the server
   * connection (a transaction-mode pooler moved the client). Such an error is raised while parsing or
   * binding, before the statement executed.
   */
  isPreparedStatementMismatch?(error: unknown): boolean;
  /**
   * Sequelize hands every non-transaction caller the same connection (SQLite). A transaction then
   * needs a private connection, or other callers' statements would run inside it (and be rolled
   * back with it).
   */
  readonly sharesConnection?: boolean;
}

/** Table options the schema needs on this database (passed to Sequelize's createTable). */
export interface DialectTableOptions {
  charset?: string;
  collate?: string;
  rowFormat?: string;
}

export interface ReleaseNotice {
  lockId: string;
  ownerToken: string;
}

export interface Dialect {
  readonly name: string;
  readonly driver: DialectDriver;
  /** Release statements notify listeners (PostgreSQL LISTEN/NOTIFY); others rely on polling. */
  readonly notifies: boolean;
  /** Extra options for both tables (e.g. MariaDB: character set, collation, row format). */
  readonly tableOptions?: DialectTableOptions;
  /**
   * Runs before the schema statements (sync, migration), which go through Sequelize's own query
   * path. SQLite: lets Sequelize's shared connection wait for a busy file, so several processes
   * may run sync() at once.
   */
  prepareSchema?(sequelize: Sequelize): Promise<void>;
  schemaExtrasSql(names: SchemaNames): string[];
  dropExtrasSql(names: SchemaNames): string[];
  /** Extras that use the kind columns (second migration), run after them; idempotent. */
  kindExtrasSql?(names: SchemaNames): string[];
  /** Drops what `kindExtrasSql` created. */
  dropKindExtrasSql?(names: SchemaNames): string[];
  /** The lock store of one table pair, sending through `sender`. */
  store(names: SchemaNames, sender: StatementSender, settings: StoreSettings, variant?: StatementVariant): LockStore;
  /** Channel to LISTEN on, when `notifies`. */
  channel?(names: SchemaNames): string;
  parseNotice?(payload: string): ReleaseNotice | null;
  /**
   * With `notifies`: statements (run on the LISTEN connection, `$1` = lock id) by which a process
   * marks a lock id as awaited while it has waiters for it, and unmarks it. The release notifies only
   * when some process has the id marked. `mark` returns one row whose `marked` is false while a
   * release of that id is committing (the waiter then tries again at once instead of sleeping).
   */
  waiterMarkSql?(names: SchemaNames): { mark: string; unmark: string };
}

/** A lock of this process as a statement names it: the id and the random owner token of one acquisition. */
export interface LeaseKey {
  readonly lockId: string;
  readonly ownerToken: string;
}

/**
 * What its holder knows of an acquisition, for the history row of its end. A release without them
 * (the clean-up of an acquisition whose answer never arrived) records history only where the
 * database reads them from the row itself (PostgreSQL).
 */
export interface HeldFacts extends LeaseKey {
  readonly fencingToken: number;
  readonly holder: string;
  readonly acquiredAt: Date;
}

/** A history row of the history table (how one acquisition ended). */
export interface HistoryRow extends AcquisitionFields {
  endedAt: Date;
  outcome: 'released' | 'lost' | 'expired';
  detail: string | null;
}

/** How a store is set up beyond its tables. */
export interface StoreSettings {
  /** Write the history table (turned off for good, and reported, when the table is missing). */
  history: boolean;
  /** Told once when a history write found no history table and history was turned off. */
  onHistoryOff(error: unknown): void;
}

/** An acquire statement's answer: we won (with the row), or a live holder refused us. */
export type Acquisition =
  | ({ won: true } & AcquiredRow)
  /**
   * `holder`: when the acquire statement itself returned the holder's row (so a refusal costs no
   * extra statement); null when it did not (the caller may then `inspect`).
   */
  | { won: false; holder: CurrentHolder | null };

/** Who asked for an audited release, and why (the audit row records both). */
export interface Audit {
  operator: string;
  reason: string | null;
}

/**
 * Everything the library asks of one lock table, one typed method per operation. Each database has
 * one implementation (its file in src/dialects/), which owns its SQL text, how the rows it gets back
 * are read (through the shared column contract in rows.ts) and which operations need a transaction.
 * Adding an operation means one method here and one per database; nothing in DbMutex changes shape.
 * Methods take validated input: validation happens before (DbMutex, the operator module).
 */
export interface LockStore {
  acquire(p: AcquireParams): Promise<Acquisition>;
  /**
   * null: row gone or not ours; otherwise whether it had expired by the database clock. With history
   * on, the release also records the acquisition's end (`released`, or `lost` when it had expired).
   */
  release(lock: LeaseKey | HeldFacts): Promise<{ expired: boolean } | null>;
  /** Records that the holder learned it lost the lock (`detail`: why); nothing if its end is already recorded. */
  recordLoss(lock: HeldFacts, detail: string): Promise<void>;
  /** The history rows of one lock id, newest acquisition first. */
  history(lockId: string, limit: number): Promise<HistoryRow[]>;
  /** Deletes history rows that ended more than `days` ago; how many. */
  purgeHistory(days: number): Promise<number>;
  /** One statement for all of them; the owner tokens that were renewed. */
  renew(locks: readonly LeaseKey[]): Promise<Set<string>>;
  /** For locks a renewal or extend missed: the owner tokens whose row still exists (ours) and has expired. */
  classify(locks: readonly LeaseKey[]): Promise<Set<string>>;
  /** Moves the TTL cap to `seconds` from now (null: none) and renews; null when the row is gone, not ours, or expired. */
  extend(lock: LeaseKey, seconds: number | null): Promise<{ expiresAt: Date | null; deadlineAt: Date | null } | null>;
  inspect(lockId: string): Promise<LockRow | null>;
  list(p: ListParams): Promise<LockRow[]>;
  counts(filter: string | null): Promise<{ total: number; stale: number }>;
  /**
   * The audited releases: each deletes (or, on MariaDB, marks released) the matching rows and records
   * each in the audit table, atomically, returning the audit rows written.
   */
  forceRelease(target: { lockId: string; fencingToken: number | null }, audit: Audit): Promise<EventRow[]>;
  releaseStale(audit: Audit): Promise<EventRow[]>;
  purgeExpired(audit: Audit): Promise<EventRow[]>;
  events(limit: number, lockId: string | null): Promise<EventRow[]>;
  /**
   * Raises the source of fencing tokens so every token handed out afterwards is greater than
   * `floor`; never lowers it. One transaction (several statements where the database needs a lock first).
   */
  fencingFloor(floor: number): Promise<void>;
  /**
   * Takes the lowest free permit of a counting semaphore (no row, or an expired one) unless the live
   * permits carry another limit; or says why not, with the semaphore's numbers.
   */
  acquireSemaphore(p: SemaphoreAcquireParams): Promise<SemaphoreAttempt>;
  /**
   * Permit rows (held, or expired and not yet taken over) of the semaphores whose id contains
   * `filter`, by semaphore id and permit number, at most `limit` rows.
   */
  listPermits(p: { filter: string | null; limit: number }): Promise<LockRow[]>;
  /**
   * Releases the permit of `semaphoreId` that carries `ownerToken`, whichever permit it is: the clean-up
   * of a semaphore acquisition whose answer never arrived. True when it removed one.
   */
  releasePermitOf(semaphoreId: string, ownerToken: string): Promise<boolean>;
}

export type StoreOperation = keyof LockStore;

/** How a store sends its statements (StatementRunner in src/connection.ts; the bench may pass its own). */
export interface StatementSender {
  run(statement: Statement): Promise<Rows>;
  /** The statements in one transaction on one connection, in order; the rows of each. */
  transaction(statements: readonly Statement[]): Promise<Rows[]>;
}

/**
 * Bench-only (src/internal/bench-seam.ts): rewrites the statement an operation is about to send, to
 * measure an adopted lever undone. Never set in the library itself.
 */
export type StatementVariant = (operation: StoreOperation, statement: Statement) => Statement;
