/**
 * SQLite (3.35 or later, for RETURNING; the `sqlite3` package bundles a recent one), on a database
 * FILE that several connections and processes share.
 *
 * Why these shapes:
 * - SQLite has one writer at a time for the whole file, and a write statement takes the write lock
 *   before it reads anything, so each statement below is atomic against every other connection.
 *   Connections wait for the lock up to the statement timeout (busy_timeout) instead of failing at
 *   once, and the file is switched to WAL mode so readers never wait for the writer.
 * - Acquire is `INSERT … ON CONFLICT (lock_id) DO UPDATE … WHERE expired RETURNING`, as on
 *   PostgreSQL: a free lock is inserted, an expired one taken over, a live one left alone (no row
 *   returned). SQLite evaluates every SET expression against the old row, so order does not matter.
 * - Fencing tokens: SQLite has no sequences, so a one-row counter table holds the highest token ever
 *   handed out. Acquire takes counter + 1, and triggers on the lock table raise the counter to every
 *   token written, inside the same statement. A release, expiry, takeover or manual DELETE never
 *   lowers the counter, so tokens strictly increase per lock id (and across the table).
 * - Times: Sequelize stores DATE in SQLite as text 'YYYY-MM-DD HH:MM:SS.SSS +00:00'; the lock
 *   statements write that same format from the database clock (`'now'`, which is the same instant
 *   throughout one statement, millisecond resolution), compare through julianday() (which accepts
 *   any format SQLite understands, so a hand-edited row still compares correctly) and return epoch
 *   milliseconds computed in SQL.
 */
import type { SchemaNames } from '../schema';
import { auditedRows, eventJson, listParams, PlaceholderLockStore, type SqlSpelling } from './placeholder-sql';
import { parseAcquisition, parseCounts, parseExtend, parseJsonEventRows, parseLockRows, parseOwnerTokens, parseRelease, parseSemaphoreRow } from './rows';
import type { AcquireParams, Audit, Dialect, DialectDriver, LeaseKey, ListParams, ReleaseWhere, Rows, StoreOperation, SemaphoreAcquireParams } from './types';

interface SqliteDatabase {
  all(sql: string, params: unknown[], callback: (error: Error | null, rows: Rows) => void): unknown;
  configure(option: 'busyTimeout', value: number): void;
  serialize(callback: () => void): void;
}

/** The last statement queued on each connection by this library (see `all`). */
const queues = new WeakMap<object, Promise<unknown>>();

/**
 * Runs one statement, never alongside another on the same connection. node-sqlite3 runs the
 * statements of one connection in parallel unless told otherwise, and SQLite's autocommit
 * transaction then spans all of them: when one fails (SQLITE_BUSY, say, because another process
 * holds the write lock) while another is active, the connection's whole transaction is rolled back,
 * including a statement that had already reported success. An acquire (an orphan clean-up of an
 * earlier timed-out acquire running next to it) could thus return its row and then never have
 * written it: two holders at once, found by database-restart.test.ts on SQLite. So the library's own
 * statements wait for each other, and each is scheduled in serialized mode, which also makes it wait
 * for Sequelize's queries on the shared connection (Sequelize schedules those serialized too).
 */
function all(db: SqliteDatabase, sql: string, params: readonly unknown[]): Promise<Rows> {
  const run = () =>
    new Promise<Rows>((resolve, reject) => {
      db.serialize(() => {
        db.all(sql, params as unknown[], (error, rows) => (error ? reject(error) : resolve(rows ?? [])));
      });
    });
  const next = (queues.get(db) ?? Promise.resolve()).then(run);
  queues.set(
    db,
    next.catch(() => undefined),
  );
  return next;
}

/** Busy timeout set on each connection; connections whose file mode was already checked. */
const busyTimeouts = new WeakMap<object, number>();
const walChecked = new WeakSet<object>();

async function prepare(db: SqliteDatabase, timeoutMs: number): Promise<void> {
  if (busyTimeouts.get(db) !== timeoutMs) {
    // Wait for a busy file instead of failing at once; this also serves the host app's own queries
    // on the connection Sequelize shares, which would otherwise fail with SQLITE_BUSY while a lock
    // statement of another process writes.
    db.configure('busyTimeout', timeoutMs);
    busyTimeouts.set(db, timeoutMs);
  }
  if (walChecked.has(db)) return;
  walChecked.add(db);
  // WAL lets readers (list, inspect, the app) run while a lock statement writes. The mode is stored
  // in the file, so only the first connection ever switches it; a file that cannot switch (busy,
  // read-only, in memory) keeps its mode and everything still works, only with less concurrency.
  const [mode] = await all(db, 'PRAGMA journal_mode', []).catch(() => [] as Rows);
  if (mode && String(mode.journal_mode).toLowerCase() === 'wal') return;
  await all(db, 'PRAGMA journal_mode = WAL', []).catch(() => undefined);
}

/** How long schema statements wait for a busy file (they run before any DbMutex option applies). */
const SCHEMA_BUSY_TIMEOUT_MS = 10_000;

const driver: DialectDriver = {
  async run(connection, statement, timeoutMs) {
    const db = connection as SqliteDatabase;
    await prepare(db, timeoutMs);
    return all(db, statement.text, statement.values);
  },
  async control(connection, command, timeoutMs) {
    const db = connection as SqliteDatabase;
    await prepare(db, timeoutMs);
    await all(db, command, []);
  },
  // A failed statement leaves the connection as it was; and Sequelize never pools SQLite connections.
  isBroken: () => false,
  sharesConnection: true,
};

// ---- SQL --------------------------------------------------------------------------------------

const q = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`;
/** Sequelize's own text format for DATE columns in SQLite, always in UTC. */
const text = (julianDay: string) => `strftime('%Y-%m-%d %H:%M:%f +00:00', ${julianDay})`;
const NOW_JD = "julianday('now')";
const NOW = text(NOW_JD);
/** now + `seconds`, as stored text; NULL when `seconds` is NULL. */
const inSeconds = (seconds: string) => text(`${NOW_JD} + (${seconds}) / 86400.0`);
/** The earlier of two julian days, ignoring a NULL one (SQLite's min() returns NULL if any argument is NULL). */
const earliest = (a: string, b: string) => `COALESCE(min(${a}, ${b}), ${a}, ${b})`;
/** Epoch milliseconds of a stored time (exact: SQLite keeps whole milliseconds). */
const ms = (expr: string) => `CAST(round((julianday(${expr}) - 2440587.5) * 86400000.0) AS INTEGER)`;
const expired = (column: string) => `julianday(${column}) <= ${NOW_JD}`;

const LOCK_COLUMNS = `lock_id, holder, hostname, pid, CAST(fencing_token AS TEXT) AS fencing_token,
  ${ms('acquired_at')} AS acquired_ms, ${ms('expires_at')} AS expires_ms, ${ms('deadline_at')} AS deadline_ms,
  ${ms('heartbeat_at')} AS heartbeat_ms, lease_seconds, ${ms("'now'")} AS now_ms, kind, semaphore_id, permit, permit_limit`;

/** Expired, or no heartbeat for more than two renewal periods (2/3 of a lease). */
const STALE = `(${expired('expires_at')} OR (lease_seconds IS NOT NULL
  AND julianday(heartbeat_at) < ${NOW_JD} - lease_seconds * 2.0 / 3.0 / 86400.0))`;

const SPELLING: SqlSpelling = {
  quote: q,
  text: 'TEXT',
  ms,
  jsonObject: 'json_object',
  now: NOW,
  fromMs: (param) => text(`${param} / 86400000.0 + 2440587.5`),
  // The stored text sorts chronologically, so this compares through the ended_at index.
  daysAgo: (days) => text(`${NOW_JD} - (${days})`),
  insertIgnore: 'INSERT OR IGNORE',
  live: (a) => `(${a}.expires_at IS NULL OR julianday(${a}.expires_at) > ${NOW_JD})`,
  instant: (expr) => `julianday(${expr})`,
};

/** (lock id, owner token) pairs travel as two JSON arrays, so the statement text never changes with their number. */
const OURS = `lock_id IN (SELECT value FROM json_each(:lockIds))
  AND (lock_id, owner_token) IN (SELECT a.value, b.value FROM json_each(:lockIds) AS a JOIN json_each(:ownerTokens) AS b ON a.key = b.key)`;

function oursParams(locks: readonly LeaseKey[]): Record<string, unknown> {
  return { lockIds: JSON.stringify(locks.map((l) => l.lockId)), ownerTokens: JSON.stringify(locks.map((l) => l.ownerToken)) };
}

class SqliteStore extends PlaceholderLockStore {
  protected get spelling() {
    return SPELLING;
  }
  private readonly counter = q(counterName(this.names));

  async acquire(p: AcquireParams) {
    // An upsert whose WHERE refuses returns no row in SQLite: the caller reads the holder with
    // `inspect`, on the refused path only.
    const rows = await this.send(
      'acquire',
      `INSERT INTO ${this.t} (lock_id, owner_token, fencing_token, holder, hostname, pid,
          acquired_at, expires_at, deadline_at, heartbeat_at, lease_seconds, kind, semaphore_id, permit, permit_limit)
        VALUES (:lockId, :ownerToken, COALESCE((SELECT value FROM ${this.counter} WHERE id = 1), 0) + 1, :holder, :hostname, :pid,
          ${NOW}, ${text(`${NOW_JD} + ${earliest(':leaseSeconds', ':ttlSeconds')} / 86400.0`)}, ${inSeconds(':ttlSeconds')}, ${NOW}, :leaseSeconds,
          :kind, NULL, NULL, NULL)
        ON CONFLICT (lock_id) DO UPDATE SET owner_token = excluded.owner_token, fencing_token = excluded.fencing_token,
          holder = excluded.holder, hostname = excluded.hostname, pid = excluded.pid, acquired_at = excluded.acquired_at,
          expires_at = excluded.expires_at, deadline_at = excluded.deadline_at, heartbeat_at = excluded.heartbeat_at,
          lease_seconds = excluded.lease_seconds, kind = excluded.kind, semaphore_id = NULL, permit = NULL, permit_limit = NULL
        WHERE ${expired('expires_at')}
        RETURNING CAST(fencing_token AS TEXT) AS fencing_token, ${ms('acquired_at')} AS acquired_ms, ${ms('expires_at')} AS expires_ms`,
      { ...p, kind: p.kind ?? 'lock' },
    );
    return parseAcquisition(rows);
  }

  async acquireSemaphore(p: SemaphoreAcquireParams) {
    // One statement: it takes the file's write lock before it reads (as every writing statement
    // here does), so what it reads is current and nobody writes until it is done. The lowest free
    // permit (no row or an expired one) is taken unless the live permits carry another limit; the
    // token is the counter + 1, so it exceeds every token handed out before, of any id.
    const live = (a: string) => SPELLING.live(a);
    const rows = await this.send(
      'acquireSemaphore',
      `WITH RECURSIVE r (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n + 1 < :limit),
          free AS (SELECT n FROM r
            WHERE NOT EXISTS (SELECT 1 FROM ${this.t} AS o WHERE o.lock_id = :semaphoreId || '/permit/' || r.n AND ${live('o')})
              AND NOT EXISTS (SELECT 1 FROM ${this.t} AS o WHERE o.semaphore_id = :semaphoreId AND o.kind = 'semaphore' AND ${live('o')}
                AND o.permit_limit IS NOT :limit)
            ORDER BY n LIMIT 1)
        INSERT INTO ${this.t} (lock_id, owner_token, fencing_token, holder, hostname, pid,
            acquired_at, expires_at, deadline_at, heartbeat_at, lease_seconds, kind, semaphore_id, permit, permit_limit)
          SELECT :semaphoreId || '/permit/' || free.n, :ownerToken, COALESCE((SELECT value FROM ${this.counter} WHERE id = 1), 0) + 1,
            :holder, :hostname, :pid, ${NOW}, ${text(`${NOW_JD} + ${earliest(':leaseSeconds', ':ttlSeconds')} / 86400.0`)},
            ${inSeconds(':ttlSeconds')}, ${NOW}, :leaseSeconds, 'semaphore', :semaphoreId, free.n, :limit
          FROM free WHERE true
        ON CONFLICT (lock_id) DO UPDATE SET owner_token = excluded.owner_token, fencing_token = excluded.fencing_token,
          holder = excluded.holder, hostname = excluded.hostname, pid = excluded.pid, acquired_at = excluded.acquired_at,
          expires_at = excluded.expires_at, deadline_at = excluded.deadline_at, heartbeat_at = excluded.heartbeat_at,
          lease_seconds = excluded.lease_seconds, kind = excluded.kind, semaphore_id = excluded.semaphore_id,
          permit = excluded.permit, permit_limit = excluded.permit_limit
        WHERE ${expired('expires_at')}
        RETURNING CAST(fencing_token AS TEXT) AS fencing_token, ${ms('acquired_at')} AS acquired_ms, ${ms('expires_at')} AS expires_ms, permit`,
      p,
    );
    const attempt = parseSemaphoreRow(rows, p);
    if (attempt) return attempt;
    // Only a permit won returns a row: one read says why not (another limit, or full).
    return this.semaphoreState(p);
  }

  async listPermits(p: { filter: string | null; limit: number }) {
    const rows = await this.send(
      'listPermits',
      `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t}
        WHERE semaphore_id IS NOT NULL AND kind = 'semaphore' AND (:filter IS NULL OR instr(semaphore_id, :filter) > 0)
        ORDER BY semaphore_id, permit LIMIT :limit`,
      p,
    );
    return parseLockRows(rows);
  }

  async releasePermitOf(semaphoreId: string, ownerToken: string) {
    const rows = await this.send(
      'releasePermitOf',
      `DELETE FROM ${this.t} WHERE semaphore_id = :semaphoreId AND owner_token = :ownerToken RETURNING lock_id`,
      { semaphoreId, ownerToken },
    );
    return rows.length > 0;
  }

  protected async releaseRow({ lockId, ownerToken }: LeaseKey) {
    const rows = await this.send(
      'release',
      `DELETE FROM ${this.t} WHERE lock_id = :lockId AND owner_token = :ownerToken
        RETURNING COALESCE(${expired('expires_at')}, 0) AS expired`,
      { lockId, ownerToken },
    );
    return parseRelease(rows);
  }

  async renew(locks: readonly LeaseKey[]) {
    // One statement renews every lock this DbMutex holds; never past the TTL deadline, never
    // resurrecting a lease that already ran out.
    const rows = await this.send(
      'renew',
      `UPDATE ${this.t} SET heartbeat_at = ${NOW},
          expires_at = ${text(earliest(`${NOW_JD} + lease_seconds / 86400.0`, 'julianday(deadline_at)'))}
        WHERE ${OURS} AND lease_seconds IS NOT NULL AND julianday(expires_at) > ${NOW_JD}
        RETURNING owner_token`,
      oursParams(locks),
    );
    return parseOwnerTokens(rows);
  }

  async classify(locks: readonly LeaseKey[]) {
    const rows = await this.send('classify', `SELECT owner_token FROM ${this.t} WHERE ${OURS} AND ${expired('expires_at')}`, oursParams(locks));
    return parseOwnerTokens(rows);
  }

  async extend({ lockId, ownerToken }: LeaseKey, seconds: number | null) {
    const rows = await this.send(
      'extend',
      `UPDATE ${this.t} SET heartbeat_at = ${NOW}, deadline_at = ${inSeconds(':seconds')},
          expires_at = CASE WHEN lease_seconds IS NULL THEN ${inSeconds(':seconds')}
            ELSE ${text(earliest(`${NOW_JD} + lease_seconds / 86400.0`, `${NOW_JD} + (:seconds) / 86400.0`))} END
        WHERE lock_id = :lockId AND owner_token = :ownerToken AND (expires_at IS NULL OR julianday(expires_at) > ${NOW_JD})
        RETURNING ${ms('expires_at')} AS expires_ms, ${ms('deadline_at')} AS deadline_ms`,
      { lockId, ownerToken, seconds },
    );
    return parseExtend(rows);
  }

  async inspect(lockId: string) {
    const rows = await this.send('inspect', `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t} WHERE lock_id = :lockId`, { lockId });
    return parseLockRows(rows)[0] ?? null;
  }

  async list(p: ListParams) {
    // Keyset pagination on (acquired_at, lock_id); the stored text sorts chronologically.
    const rows = await this.send(
      'list',
      `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t}
        WHERE (:filter IS NULL OR instr(lock_id, :filter) > 0)
          AND (NOT :staleOnly OR ${STALE})
          AND (:afterMs IS NULL OR (acquired_at, lock_id) > (${text(':afterMs / 86400000.0 + 2440587.5')}, :afterId))
        ORDER BY acquired_at, lock_id LIMIT :limit`,
      listParams(p, p.staleOnly ? 1 : 0),
    );
    return parseLockRows(rows);
  }

  async counts(filter: string | null) {
    const rows = await this.send(
      'counts',
      `SELECT count(*) AS total, COALESCE(sum(CASE WHEN ${STALE} THEN 1 ELSE 0 END), 0) AS stale FROM ${this.t}
        WHERE (:filter IS NULL OR instr(lock_id, :filter) > 0)`,
      { filter },
    );
    return parseCounts(rows);
  }

  protected async releaseAudited(where: ReleaseWhere, action: string, audit: Audit, operation: StoreOperation) {
    const { t, ev } = this;
    // Two statements in one transaction (SQLite has no DML in WITH): record the matching rows in
    // the audit table, then delete exactly the rows that now have an audit row. The transaction
    // starts with a write, so it holds the file's write lock from its first statement on and
    // nothing can change in between. Every audit row records the deletion of that very acquisition
    // and (lock_id, fencing_token) names one acquisition, so "has an audit row" means "audited now".
    // The age is rounded to the millisecond (the precision of SQLite's clock), which also keeps it
    // identical through json_object's 15-digit number format.
    const { condition, params } = auditedRows(where, action, audit, { stale: STALE, expired: expired('expires_at') });
    const audited = (e: string) => `${e}.lock_id = ${t}.lock_id AND ${e}.fencing_token = ${t}.fencing_token`;
    const results = await this.transaction(operation, [
      this.statement(
        `audit_${where.kind}`,
        `INSERT INTO ${ev} (action, lock_id, fencing_token, holder, hostname, pid, acquired_at, age_seconds, operator, reason, created_at)
            SELECT :action, lock_id, fencing_token, holder, hostname, pid, acquired_at,
              round((${NOW_JD} - julianday(acquired_at)) * 86400.0, 3), :operator, :reason, ${NOW}
            FROM ${t} WHERE ${condition}`,
        params,
      ),
      this.statement(
        `delete_audited`,
        `DELETE FROM ${t} WHERE EXISTS (SELECT 1 FROM ${ev} AS e WHERE ${audited('e')})
            RETURNING (SELECT ${eventJson('e', SPELLING)} FROM ${ev} AS e WHERE ${audited('e')} ORDER BY e.id DESC LIMIT 1) AS event`,
        params,
      ),
    ]);
    return parseJsonEventRows(results[results.length - 1] ?? []);
  }

  async fencingFloor(floor: number) {
    // The counter holds the highest token ever handed out (one writer at a time: SQLite).
    await this.transaction('fencingFloor', [
      this.statement(
        `floor`,
        `INSERT INTO ${this.counter} (id, value) VALUES (1, :floor) ON CONFLICT (id) DO UPDATE SET value = max(value, excluded.value)`,
        { floor },
      ),
    ]);
  }
}

function counterName(names: SchemaNames): string {
  return `${names.tableName}_fencing`;
}

export const sqliteDialect: Dialect = {
  name: 'sqlite',
  driver,
  notifies: false,
  async prepareSchema(sequelize) {
    const cm = (sequelize as unknown as { connectionManager: { getConnection(options: object): Promise<unknown> } }).connectionManager;
    // Sequelize's shared connection: the one its own queries (and so the schema statements) use.
    await prepare((await cm.getConnection({})) as SqliteDatabase, SCHEMA_BUSY_TIMEOUT_MS);
  },
  schemaExtrasSql(names) {
    const t = q(names.tableName);
    const counter = q(counterName(names));
    // Raise the counter to every token written; never lower it. (Plain UPDATE/INSERT: inside a
    // trigger, a conflict clause such as OR REPLACE would be overridden by the upsert that fired it.)
    // The INSERT recreates the row if someone deleted it.
    const raise = `UPDATE ${counter} SET value = NEW.fencing_token WHERE id = 1 AND value < NEW.fencing_token;
      INSERT INTO ${counter} (id, value) SELECT 1, NEW.fencing_token WHERE NOT EXISTS (SELECT 1 FROM ${counter} WHERE id = 1);`
    return [
      `CREATE TABLE IF NOT EXISTS ${counter} (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)`,
      // A counter created next to existing lock rows starts above all of them.
      `INSERT OR IGNORE INTO ${counter} (id, value) SELECT 1, COALESCE(max(fencing_token), 0) FROM ${t}`,
      `CREATE TRIGGER IF NOT EXISTS ${q(`${names.tableName}_fencing_insert`)} AFTER INSERT ON ${t} BEGIN ${raise} END`,
      `CREATE TRIGGER IF NOT EXISTS ${q(`${names.tableName}_fencing_update`)} AFTER UPDATE OF fencing_token ON ${t} BEGIN ${raise} END`,
    ];
  },
  // The triggers go with the lock table (dropSchema drops it first).
  dropExtrasSql: (names) => [`DROP TABLE IF EXISTS ${q(counterName(names))}`],
  store: (names, sender, settings, variant) => new SqliteStore(names, sender, settings, variant),
};
