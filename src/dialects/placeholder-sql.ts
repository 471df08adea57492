/**
 * SQL pieces shared by the databases whose drivers bind positional `?` (MariaDB/MySQL and SQLite):
 * named placeholders, the audit trail's column list, and the condition of an audited release. Each
 * database passes in its own spelling of what differs (the text type, its epoch-milliseconds
 * expression, how it spells "stale" and "expired").
 */
import { parseEventRows, parseHistoryRows, parseSemaphoreState } from './rows';
import { SqlLockStore } from './store';
import type { Audit, HeldFacts, HistoryRow, LeaseKey, ListParams, ReleaseWhere, Rows, SemaphoreAcquireParams, SemaphoreAttempt, Statement, StoreOperation } from './types';

/**
 * A statement from `:name` placeholders. Statements with a list in them vary in length, so they are
 * not worth a server-side prepared statement (see `Statement.prepare`).
 */
export function statement(name: string, text: string, params: object): Statement {
  const prepare = !Object.values(params).some((value) => Array.isArray(value));
  return { name, ...positional(text, params), prepare };
}

/**
 * Turns `:name` placeholders into the positional `?` the MariaDB/MySQL and SQLite drivers bind, so
 * statements can name a parameter several times. An array value becomes a list (`?, ?`), an array of
 * arrays a list of tuples (`(?, ?), (?, ?)`); an empty array becomes NULL, which matches nothing in
 * `IN (…)`. A name without a value is a programming error.
 */
export function positional(text: string, named: object): { text: string; values: unknown[] } {
  const params = named as Record<string, unknown>;
  const values: unknown[] = [];
  const out = text.replace(/:([A-Za-z_][A-Za-z0-9_]*)\b/g, (_match, name: string) => {
    if (!Object.prototype.hasOwnProperty.call(params, name)) throw new Error(`no value for statement parameter :${name}`);
    const value = params[name];
    if (!Array.isArray(value)) {
      values.push(value);
      return '?';
    }
    if (value.length === 0) return 'NULL';
    return value
      .map((item: unknown) => {
        if (!Array.isArray(item)) {
          values.push(item);
          return '?';
        }
        values.push(...(item as unknown[]));
        return `(${item.map(() => '?').join(', ')})`;
      })
      .join(', ');
  });
  return { text: out, values };
}

/** How one database spells what the shared pieces need. */
export interface SqlSpelling {
  quote(identifier: string): string;
  /** The type a CAST to text names (`CHAR` on MariaDB, `TEXT` on SQLite). */
  text: string;
  /** Epoch milliseconds of a stored instant. */
  ms(expr: string): string;
  /** The JSON object constructor's name. */
  jsonObject: string;
  /** The database clock's now, as the schema stores instants. */
  now: string;
  /** A stored instant from epoch milliseconds (a parameter). */
  fromMs(param: string): string;
  /** The stored instant `days` (a parameter) before now. */
  daysAgo(param: string): string;
  /** An INSERT that skips a row whose key exists (`INSERT IGNORE`, `INSERT OR IGNORE`). */
  insertIgnore: string;
  /** The row aliased `alias` is held now: not released, and not run out by the database clock. */
  live(alias: string): string;
  /** A stored instant as this database orders instants (what ORDER BY compares). */
  instant(expr: string): string;
}

/** The audit trail's columns under the aliases rows.ts reads (`parseEventRows`), from the audit table aliased `e`. */
export function eventColumns(e: string, sql: SqlSpelling): string {
  return `CAST(${e}.id AS ${sql.text}) AS id, ${e}.action, ${e}.lock_id,
  CAST(${e}.fencing_token AS ${sql.text}) AS fencing_token, ${e}.holder, ${e}.hostname, ${e}.pid, ${sql.ms(`${e}.acquired_at`)} AS acquired_ms,
  ${e}.age_seconds, ${e}.operator, ${e}.reason, ${sql.ms(`${e}.created_at`)} AS created_ms`;
}

/** The same columns as one JSON object (`parseJsonEventRows`), for a RETURNING that reaches the audit row through a scalar subquery. */
export function eventJson(e: string, sql: SqlSpelling): string {
  return `${sql.jsonObject}('id', CAST(${e}.id AS ${sql.text}), 'action', ${e}.action, 'lock_id', ${e}.lock_id,
  'fencing_token', CAST(${e}.fencing_token AS ${sql.text}), 'holder', ${e}.holder, 'hostname', ${e}.hostname, 'pid', ${e}.pid,
  'acquired_ms', ${sql.ms(`${e}.acquired_at`)}, 'age_seconds', ${e}.age_seconds, 'operator', ${e}.operator,
  'reason', ${e}.reason, 'created_ms', ${sql.ms(`${e}.created_at`)})`;
}

/** A listing's parameters (`:filter`, `:staleOnly`, `:afterMs`, `:afterId`, `:limit`); `staleOnly` as this database binds a boolean. */
export function listParams(p: ListParams, staleOnly: unknown): Record<string, unknown> {
  return { filter: p.filter, staleOnly, afterMs: p.after ? p.after.acquiredAt.getTime() : null, afterId: p.after ? p.after.lockId : null, limit: p.limit };
}

/**
 * The rows an audited release takes, and its parameters (`:action`, `:operator`, `:reason`, and for
 * one lock `:lockId`, `:fencingToken`). `stale` and `expired` are the database's own conditions.
 */
export function auditedRows(
  where: ReleaseWhere,
  action: string,
  audit: Audit,
  conditions: { stale: string; expired: string },
): { condition: string; params: Record<string, unknown> } {
  const condition =
    where.kind === 'one'
      ? 'lock_id = :lockId AND (:fencingToken IS NULL OR fencing_token = :fencingToken)'
      : where.kind === 'stale'
        ? conditions.stale
        : conditions.expired;
  const one = where.kind === 'one' ? where : null;
  return {
    condition,
    params: { action, operator: audit.operator, reason: audit.reason, lockId: one?.lockId ?? null, fencingToken: one?.fencingToken ?? null },
  };
}

/** A lock store whose statements name their parameters `:name` (see `positional`). */
export abstract class PlaceholderLockStore extends SqlLockStore {
  /** A getter (on the prototype), so the base constructor can already quote the table names with it. */
  protected abstract get spelling(): SqlSpelling;

  protected quote(identifier: string): string {
    return this.spelling.quote(identifier);
  }

  /** A statement named after its operation (`suffix`) and this table, from `:name` placeholders. */
  protected statement(suffix: string, text: string, params: object): Statement {
    return statement(`${this.prefix}_${suffix}`, text, params);
  }

  /** Runs one statement of `operation`, named after the operation. */
  protected send(operation: StoreOperation, text: string, params: object): Promise<Rows> {
    return this.run(operation, this.statement(operation, text, params));
  }

  /**
   * Why a semaphore acquisition took no permit, in one read made only then: the live permits' count
   * and limits (another limit among them, or full) and the holder whose permit runs out first.
   */
  protected async semaphoreState(p: SemaphoreAcquireParams): Promise<SemaphoreAttempt> {
    const { t } = this;
    const sql = this.spelling;
    const state = await this.run(
      'acquireSemaphore',
      this.statement(
        'semaphore_state',
        `SELECT CAST(COUNT(*) AS ${sql.text}) AS used, MIN(permit_limit) AS min_limit, MAX(permit_limit) AS max_limit,
          ${sql.ms('MIN(expires_at)')} AS expires_ms,
          (SELECT h.holder FROM ${t} AS h WHERE h.semaphore_id = :semaphoreId AND h.kind = 'semaphore' AND ${sql.live('h')}
            ORDER BY h.expires_at IS NULL, ${sql.instant('h.expires_at')} LIMIT 1) AS holder
        FROM ${t} AS l WHERE l.semaphore_id = :semaphoreId AND l.kind = 'semaphore' AND ${sql.live('l')}`,
        { semaphoreId: p.semaphoreId },
      ),
    );
    return parseSemaphoreState(state, p);
  }

  /** Removes (or marks released) our row: the release itself, without its history row. */
  protected abstract releaseRow(lock: LeaseKey): Promise<{ expired: boolean } | null>;

  /**
   * The release, then its history row from what the holder knows: a second statement (these
   * databases have no DML in WITH), best effort: the lock is released whatever becomes of it. A
   * clean-up release of an unanswered acquisition has no facts to record.
   */
  async release(lock: LeaseKey | HeldFacts) {
    const outcome = await this.releaseRow(lock);
    if (outcome && this.recording && 'fencingToken' in lock) {
      await this.recordBestEffort(() =>
        this.run('release', this.historyInsert('release_history', lock, outcome.expired ? 'lost' : 'released', outcome.expired ? 'expired' : null)),
      );
    }
    return outcome;
  }

  async recordLoss(lock: HeldFacts, detail: string) {
    await this.recordBestEffort(() => this.run('recordLoss', this.historyInsert('record_loss', lock, 'lost', detail)));
  }

  /** One history row, ended now by the database clock; nothing if that acquisition's end is recorded already. */
  private historyInsert(suffix: string, lock: HeldFacts, outcome: HistoryRow['outcome'], detail: string | null): Statement {
    const sql = this.spelling;
    return this.statement(
      suffix,
      `${sql.insertIgnore} INTO ${this.h} (lock_id, fencing_token, holder, hostname, pid, acquired_at, ended_at, outcome, detail)
        VALUES (:lockId, :fencingToken, :holder, :hostname, :pid, ${sql.fromMs(':acquiredMs')}, ${sql.now}, :outcome, :detail)`,
      {
        lockId: lock.lockId,
        fencingToken: lock.fencingToken,
        holder: lock.holder,
        hostname: this.hostname,
        pid: this.pid,
        acquiredMs: lock.acquiredAt.getTime(),
        outcome,
        detail,
      },
    );
  }

  async history(lockId: string, limit: number) {
    const sql = this.spelling;
    const rows = await this.send(
      'history',
      `SELECT lock_id, CAST(fencing_token AS ${sql.text}) AS fencing_token, holder, hostname, pid, ${sql.ms('acquired_at')} AS acquired_ms,
          ${sql.ms('ended_at')} AS ended_ms, outcome, detail
        FROM ${this.h} WHERE lock_id = :lockId ORDER BY fencing_token DESC LIMIT :limit`,
      { lockId, limit },
    );
    return parseHistoryRows(rows);
  }

  async purgeHistory(days: number) {
    const rows = await this.send('purgeHistory', `DELETE FROM ${this.h} WHERE ended_at < ${this.spelling.daysAgo(':days')} RETURNING 1 AS n`, { days });
    return rows.length;
  }

  async events(limit: number, lockId: string | null) {
    const rows = await this.send(
      'events',
      `SELECT ${eventColumns('e', this.spelling)} FROM ${this.ev} AS e WHERE (:lockId IS NULL OR e.lock_id = :lockId) ORDER BY e.id DESC LIMIT :limit`,
      { lockId, limit },
    );
    return parseEventRows(rows);
  }
}
