/**
 * What every database's lock store shares: sending through the runner (with the bench's statement
 * variant, when one is set), statement names, and the three audited releases as one shape.
 *
 * A store method is the whole operation for its database: build the statement (SQL text stays in
 * each database's own file), send it (alone, or in a transaction where the database needs several
 * statements), read the rows with the shared parsers of rows.ts. To add an operation: declare it on
 * `LockStore` (types.ts) and write it once in each of postgres.ts, mariadb.ts and sqlite.ts.
 */
import { hostname } from 'node:os';
import type { SchemaNames } from '../schema';
import type {
  AcquireParams,
  Acquisition,
  Audit,
  EventRow,
  LeaseKey,
  ListParams,
  LockRow,
  LockStore,
  ReleaseWhere,
  Rows,
  SemaphoreAcquireParams,
  SemaphoreAttempt,
  HeldFacts,
  HistoryRow,
  Statement,
  StatementSender,
  StatementVariant,
  StoreOperation,
  StoreSettings,
} from './types';

/** The audit row's `action` of each audited release. */
const AUDIT_ACTIONS = { one: 'force-release', stale: 'release-stale', expired: 'purge-expired' } as const;
const AUDIT_OPERATIONS = { one: 'forceRelease', stale: 'releaseStale', expired: 'purgeExpired' } as const;

export abstract class SqlLockStore implements LockStore {
  /**
   * Prefix of every statement name. A name identifies a server-side prepared statement per
   * connection, so it must differ between tables (whose texts differ) and stay the same per operation.
   */
  protected readonly prefix: string;
  /** The lock table and the audit table, quoted for this database. */
  protected readonly t: string;
  protected readonly ev: string;
  /** The history table, quoted. */
  protected readonly h: string;
  /** Host and pid of this process, as its acquisitions record them (history rows written from what the holder knows). */
  protected readonly hostname = hostname();
  protected readonly pid = process.pid;
  /** Whether releases and losses write history; turned off for good when the history table is missing. */
  protected recording: boolean;

  constructor(
    protected readonly names: SchemaNames,
    private readonly sender: StatementSender,
    private readonly settings: StoreSettings,
    private readonly variant?: StatementVariant,
  ) {
    this.prefix = `dbm_${names.tableName}`;
    this.t = this.quote(names.tableName);
    this.ev = this.quote(names.eventsTableName);
    this.h = this.quote(names.historyTableName);
    this.recording = settings.history;
  }

  /**
   * Runs a statement that writes history, or, when the history table turns out to be missing (not
   * migrated yet, or migrated back while this process runs), turns history off, says so once, and
   * runs `without` instead. A statement that failed that way did nothing (a single statement is
   * rolled back as a whole), so running its plain form is the same operation.
   */
  protected async orWithoutHistory<T>(withHistory: () => Promise<T>, without: () => Promise<T>): Promise<T> {
    try {
      return await withHistory();
    } catch (error) {
      if (!this.isHistoryMissing(error)) throw error;
      this.historyOff(error);
      return without();
    }
  }

  /** The error says the history table does not exist (PostgreSQL, MariaDB and SQLite each phrase it so). */
  protected isHistoryMissing(error: unknown): boolean {
    // Not `instanceof Error`: a driver's native error may come from another realm (jest's sandbox, say).
    const message = (error as { message?: unknown } | null)?.message;
    if (typeof message !== 'string') return false;
    return message.includes(this.names.historyTableName) && /does not exist|doesn't exist|no such table/i.test(message);
  }

  protected historyOff(error: unknown): void {
    if (!this.recording) return;
    this.recording = false;
    this.settings.onHistoryOff(error);
  }

  /** A best-effort history write on its own: the lock operation it follows already happened, so a failure only loses the row. */
  protected async recordBestEffort(write: () => Promise<unknown>): Promise<void> {
    if (!this.recording) return;
    try {
      await write();
    } catch (error) {
      if (this.isHistoryMissing(error)) this.historyOff(error);
    }
  }

  /** An identifier quoted for this database. */
  protected abstract quote(identifier: string): string;

  /** A statement named after its operation (`suffix`) and this table. */
  protected named(suffix: string, text: string, values: readonly unknown[]): Statement {
    return { name: `${this.prefix}_${suffix}`, text, values };
  }

  protected run(operation: StoreOperation, statement: Statement): Promise<Rows> {
    return this.sender.run(this.variant ? this.variant(operation, statement) : statement);
  }

  /** Several statements in one transaction (a single one runs alone, in autocommit). */
  protected transaction(operation: StoreOperation, statements: readonly Statement[]): Promise<Rows[]> {
    const variant = this.variant;
    return this.sender.transaction(variant ? statements.map((s) => variant(operation, s)) : statements);
  }

  abstract acquire(p: AcquireParams): Promise<Acquisition>;
  abstract release(lock: LeaseKey | HeldFacts): Promise<{ expired: boolean } | null>;
  abstract recordLoss(lock: HeldFacts, detail: string): Promise<void>;
  abstract history(lockId: string, limit: number): Promise<HistoryRow[]>;
  abstract purgeHistory(days: number): Promise<number>;
  abstract renew(locks: readonly LeaseKey[]): Promise<Set<string>>;
  abstract classify(locks: readonly LeaseKey[]): Promise<Set<string>>;
  abstract extend(lock: LeaseKey, seconds: number | null): Promise<{ expiresAt: Date | null; deadlineAt: Date | null } | null>;
  abstract inspect(lockId: string): Promise<LockRow | null>;
  abstract list(p: ListParams): Promise<LockRow[]>;
  abstract counts(filter: string | null): Promise<{ total: number; stale: number }>;
  abstract events(limit: number, lockId: string | null): Promise<EventRow[]>;
  abstract fencingFloor(floor: number): Promise<void>;
  abstract acquireSemaphore(p: SemaphoreAcquireParams): Promise<SemaphoreAttempt>;
  abstract listPermits(p: { filter: string | null; limit: number }): Promise<LockRow[]>;
  abstract releasePermitOf(semaphoreId: string, ownerToken: string): Promise<boolean>;

  forceRelease(target: { lockId: string; fencingToken: number | null }, audit: Audit): Promise<EventRow[]> {
    return this.audited({ kind: 'one', ...target }, audit);
  }

  releaseStale(audit: Audit): Promise<EventRow[]> {
    return this.audited({ kind: 'stale' }, audit);
  }

  purgeExpired(audit: Audit): Promise<EventRow[]> {
    return this.audited({ kind: 'expired' }, audit);
  }

  private audited(where: ReleaseWhere, audit: Audit): Promise<EventRow[]> {
    return this.releaseAudited(where, AUDIT_ACTIONS[where.kind], audit, AUDIT_OPERATIONS[where.kind]);
  }

  /** Removes the rows `where` names and records each as `action` in the audit table, atomically. */
  protected abstract releaseAudited(where: ReleaseWhere, action: string, audit: Audit, operation: StoreOperation): Promise<EventRow[]>;
}
