/**
 * The operator API's limits and defaults, in one place: the library, the admin router and the CLI
 * all read them from here, so a page size or a table name cannot drift between them.
 */

/** Default table of the locks. */
export const DEFAULT_TABLE_NAME = 'db_mutex_locks';
/** Default table of the audit trail (force-releases). */
export const DEFAULT_EVENTS_TABLE_NAME = 'db_mutex_events';
/** Default table of the lock history, named after its lock table. */
export function defaultHistoryTableName(tableName: string): string {
  return `${tableName}_history`;
}

/** Largest `limit` a lock listing accepts (and the implicit limit of an unbounded one). */
export const MAX_LIST_LIMIT = 1_000_000_000;
/** Rows the CLI's `list` prints when no `--limit` is given. */
export const DEFAULT_LIST_LIMIT = 1000;

/** Audit entries returned when no limit is given. */
export const DEFAULT_EVENTS_LIMIT = 50;
/** Largest number of audit entries one `events` call returns. */
export const MAX_EVENTS_LIMIT = 100_000;

/** History entries returned when no limit is given (the lock page, the CLI's `history`). */
export const DEFAULT_HISTORY_LIMIT = 100;
/** Largest number of history entries one `history` call returns. */
export const MAX_HISTORY_LIMIT = 10_000;
/** Days a history row is kept by default (`historyRetentionDays`). */
export const DEFAULT_HISTORY_RETENTION_DAYS = 7;
/** Longest retention or purge age, in days (100 years). */
export const MAX_HISTORY_DAYS = 36_500;

/** Longest audit reason, in characters; the dashboard's form uses it as its maxlength. */
export const MAX_REASON_LENGTH = 1000;
