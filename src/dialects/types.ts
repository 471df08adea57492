/**
 * What differs between databases lives behind this interface: the SQL text of each lock statement,
 * how a raw driver connection runs it, schema extras, and (optionally) release notifications.
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

/** A lock row as the library reads it. Times are database-clock instants. */
export interface LockRow {
  lockId: string;
  fencingToken: number;
  holder: string;
  hostname: string;
  pid: number;
  acquiredAt: Date;
  expiresAt: Date | null;
  deadlineAt: Date | null;
  heartbeatAt: Date;
  leaseSeconds: number | null;
  /** The database's now() when the row was read; ages and "expires in" are relative to it. */
  dbNow: Date;
  /** Expired, or its heartbeat is overdue (no renewal for more than two renewal periods). */
  stale: boolean;
}

export interface EventRow {
  id: number;
  action: string;
  lockId: string;
  fencingToken: number;
  holder: string;
  hostname: string;
  pid: number;
  acquiredAt: Date;
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

/** One attempt at a permit of a counting semaphore. */
export interface SemaphoreAcquireParams {
  semaphoreId: string;
  limit: number;
  ownerToken: string;
  holder: string;
  hostname: string;
  pid: number;
  ttlSeconds: number | null;
  leaseSeconds: number | null;
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

export interface ReleaseWhere {
  kind: 'one' | 'stale' | 'expired';
  lockId?: string;
  fencingToken?: number | null;
}

/** A parsed row set of one statement. */
export type Rows = Record<string, unknown>[];

/** Runs statements on a driver connection taken from Sequelize's pool. */
export interface DialectDriver {
  run(connection: unknown, statement: Statement, timeoutMs: number): Promise<Rows>;
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
  statements(names: SchemaNames): DialectStatements;
  /** Channel to LISTEN on, when `notifies`. */
  channel?(names: SchemaNames): string;
  parseNotice?(payload: string): ReleaseNotice | null;
}

/** Statement builders plus row parsers; one instance per DbMutex (table names baked in). */
export interface DialectStatements {
  acquire(p: AcquireParams): Statement;
  parseAcquire(rows: Rows): AcquiredRow | null;
  /**
   * After a refusal: the holder, when the acquire statement itself returned the holder's row (so a
   * refusal costs no extra statement); null when it did not (the caller may then `inspect`).
   */
  parseRefused(rows: Rows): CurrentHolder | null;
  release(lockId: string, ownerToken: string): Statement;
  /** null: row gone or not ours; otherwise whether it had expired by the database clock. */
  parseRelease(rows: Rows): { expired: boolean } | null;
  renew(lockIds: string[], ownerTokens: string[]): Statement;
  /** Owner tokens that were renewed. */
  parseRenew(rows: Rows): Set<string>;
  /** For tokens a renewal missed: which rows still exist (with our token) and have expired. */
  classify(lockIds: string[], ownerTokens: string[]): Statement;
  parseClassify(rows: Rows): Set<string>;
  extend(lockId: string, ownerToken: string, seconds: number | null): Statement;
  parseExtend(rows: Rows): { expiresAt: Date | null; deadlineAt: Date | null } | null;
  inspect(lockId: string): Statement;
  list(p: ListParams): Statement;
  parseLocks(rows: Rows): LockRow[];
  counts(filter: string | null): Statement;
  parseCounts(rows: Rows): { total: number; stale: number };
  /** Deletes the matching rows and records each in the audit table, atomically. */
  releaseAudited(where: ReleaseWhere, action: string, operator: string, reason: string | null): Statement[];
  parseReleased(rows: Rows): EventRow[];
  events(limit: number, lockId: string | null): Statement;
  parseEvents(rows: Rows): EventRow[];
  /**
   * Raises the source of fencing tokens so every token handed out afterwards is greater than
   * `floor`; never lowers it. Run as one transaction (several statements where the database needs a
   * lock first).
   */
  fencingFloor(floor: number): Statement[];
  /**
   * Takes the lowest free permit of a semaphore, if the limit matches the holders'. One statement, or
   * several to run as one transaction; the last one's rows go to `parseSemaphoreAcquire`.
   */
  semaphoreAcquire(p: SemaphoreAcquireParams): Statement[];
  /** null: the statement returned no row, `semaphoreState` tells why it refused. */
  parseSemaphoreAcquire(rows: Rows, p: SemaphoreAcquireParams): SemaphoreAttempt | null;
  /** The live permits of one semaphore: how many, their limits, the first to run out. */
  semaphoreState(semaphoreId: string): Statement;
}
