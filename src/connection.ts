/**
 * Runs lock statements on connections taken straight from Sequelize's own pool (same config, SSL,
 * hooks), through the raw driver. Two reasons:
 * - Lock statements must never join an ambient transaction (passed or CLS): a lock taken inside an
 *   uncommitted transaction would be invisible to rivals or rolled back with it.
 * - Sequelize's query pipeline (SQL building, instance mapping) costs more than the statement itself
 *   on this hot path; the raw driver (on PostgreSQL with named prepared statements) avoids it.
 * How a statement is sent is the dialect's `DialectDriver`, and which statements an operation sends
 * is its lock store's; this file only borrows and returns connections, runs transactions, retries
 * deadlock victims, and logs. The host's `logging`/`benchmark` options are
 * honoured so lock SQL shows up in its logs.
 */
import { randomUUID } from 'node:crypto';
import type { Sequelize } from 'sequelize';
import type { DialectDriver, Rows, Statement, StatementSender } from './dialects/types';

interface ConnectionManagerLike {
  getConnection(options: { type: 'read' | 'write'; useMaster?: boolean; uuid?: string }): Promise<unknown>;
  releaseConnection(connection: unknown): void;
  destroyConnection(connection: unknown): Promise<void>;
  config: Record<string, unknown> & { replication?: { write?: Record<string, unknown> } | false };
  _connect(config: unknown): Promise<unknown>;
  _disconnect(connection: unknown): Promise<void>;
}

type LoggingFn = (sql: string, timingOrOptions?: unknown) => void;

/** Attempts of a statement (or transaction) that keeps being chosen as a deadlock victim. */
const MAX_ATTEMPTS = 5;

/** A short, growing, jittered pause, so two deadlocking callers do not collide again in step. */
function retryPause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
}

export interface StatementRunnerOptions {
  /** Send statements as named (server-side, per connection) prepared statements. */
  preparedStatements: boolean;
  /** Called once, when a prepared-statement mismatch turned named statements off. */
  onUnnamed?: (error: unknown) => void;
}

export class StatementRunner implements StatementSender {
  private readonly cm: ConnectionManagerLike;
  private named: boolean;

  constructor(
    private readonly sequelize: Sequelize,
    private readonly driver: DialectDriver,
    private readonly timeoutMs: number,
    private readonly options: StatementRunnerOptions = { preparedStatements: true },
  ) {
    this.cm = (sequelize as unknown as { connectionManager: ConnectionManagerLike }).connectionManager;
    this.named = options.preparedStatements;
  }

  /** Whether statements are (still) sent as named prepared statements. */
  get preparedStatements(): boolean {
    return this.named;
  }

  run(statement: Statement): Promise<Rows> {
    return this.retrying((named) => this.runOnce(statement, named));
  }

  /**
   * Runs `once` again after a prepared-statement mismatch (unnamed from then on) or as a deadlock
   * victim: the database rolled the victim (a statement, or a whole transaction) back as a whole,
   * so running it again cannot apply it twice.
   */
  private async retrying<T>(once: (named: boolean) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const named = this.named;
      try {
        return await once(named);
      } catch (error) {
        if (this.mismatch(named, error)) continue;
        if (attempt >= MAX_ATTEMPTS || !this.driver.isRetryable?.(error)) throw error;
        await retryPause(attempt);
      }
    }
  }

  /** The statement as the driver sends it (logs keep its name): unnamed (and not prepared server-side) once named statements are off. */
  private shaped(statement: Statement, named: boolean): Statement {
    return named || (statement.name === '' && statement.prepare !== true) ? statement : { ...statement, name: '', prepare: false };
  }

  /**
   * A named statement that the server connection does not have, or has already: a pooler in
   * transaction mode gave this client another server connection than the one the driver prepared it
   * on. The error comes from Parse or Bind, before anything executed (and inside a transaction it
   * aborted the whole transaction), so sending it again, unnamed, cannot apply it twice. Switches this
   * runner to unnamed statements for good; true when the caller should retry.
   */
  private mismatch(sentNamed: boolean, error: unknown): boolean {
    if (!sentNamed || !this.driver.isPreparedStatementMismatch?.(error)) return false;
    if (this.named) {
      this.named = false;
      this.options.onUnnamed?.(error);
    }
    return true;
  }

  private async runOnce(statement: Statement, named: boolean): Promise<Rows> {
    const connection = await this.cm.getConnection({ type: 'write', useMaster: true });
    const started = performance.now();
    let broken = false;
    try {
      return await this.driver.run(connection, this.shaped(statement, named), this.timeoutMs);
    } catch (error) {
      broken = this.driver.isBroken(connection, error);
      throw error;
    } finally {
      this.log(statement, performance.now() - started);
      if (broken) await this.cm.destroyConnection(connection).catch(() => undefined);
      else this.cm.releaseConnection(connection);
    }
  }

  /** Runs several statements in one transaction on one connection (a single one runs alone, in autocommit). */
  async transaction(statements: readonly Statement[]): Promise<Rows[]> {
    if (statements.length === 1) return [await this.run(statements[0]!)];
    return this.retrying((named) => this.runTransactionOnce(statements, named));
  }

  private async runTransactionOnce(statements: readonly Statement[], named: boolean): Promise<Rows[]> {
    const { connection, release: releaseConnection } = await this.transactionConnection();
    let broken = false;
    try {
      await this.driver.control(connection, 'BEGIN', this.timeoutMs);
      const out: Rows[] = [];
      try {
        for (const s of statements) {
          const started = performance.now();
          out.push(await this.driver.run(connection, this.shaped(s, named), this.timeoutMs));
          this.log(s, performance.now() - started);
        }
        await this.driver.control(connection, 'COMMIT', this.timeoutMs);
      } catch (error) {
        await this.driver.control(connection, 'ROLLBACK', this.timeoutMs).catch(() => undefined);
        throw error;
      }
      return out;
    } catch (error) {
      broken = this.driver.isBroken(connection, error);
      throw error;
    } finally {
      await releaseConnection(broken);
    }
  }

  /**
   * A connection for a transaction. Usually a pooled one; where Sequelize shares one connection
   * among all non-transaction callers (SQLite), a private one, obtained the way Sequelize's own
   * transactions get theirs (a `uuid` key) and closed again on release.
   */
  private async transactionConnection(): Promise<{ connection: unknown; release: (broken: boolean) => Promise<void> }> {
    if (!this.driver.sharesConnection) {
      const connection = await this.cm.getConnection({ type: 'write', useMaster: true });
      return {
        connection,
        release: async (broken) => {
          if (broken) await this.cm.destroyConnection(connection).catch(() => undefined);
          else this.cm.releaseConnection(connection);
        },
      };
    }
    const uuid = `db-mutex-${randomUUID()}`;
    const connection = (await this.cm.getConnection({ type: 'write', useMaster: true, uuid })) as { uuid?: string; filename?: string };
    // Sequelize's SQLite connection manager closes (rather than keeps) a connection that has a uuid.
    // An in-memory database has only its one connection, which must stay open.
    if (connection.filename !== ':memory:') connection.uuid = uuid;
    return {
      connection,
      release: async () => {
        this.cm.releaseConnection(connection);
      },
    };
  }

  /** A connection outside the pool (for LISTEN), built from the same config and hooks. */
  async openDedicated(): Promise<unknown> {
    const config = (this.cm.config.replication && this.cm.config.replication.write) || this.cm.config;
    return this.cm._connect(config);
  }

  async closeDedicated(connection: unknown): Promise<void> {
    await this.cm._disconnect(connection);
  }

  private log(statement: Statement, elapsedMs: number): void {
    const options = (this.sequelize as unknown as { options: unknown }).options as { logging?: LoggingFn | boolean; benchmark?: boolean };
    const logging = options.logging;
    if (typeof logging !== 'function') return;
    const sql = `Executing (db-mutex): ${statement.text.replace(/\s+/g, ' ')}`;
    if (options.benchmark) logging(sql, Math.round(elapsedMs));
    else logging(sql, { dbMutex: true, name: statement.name });
  }
}
