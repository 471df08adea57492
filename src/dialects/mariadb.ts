/**
 * MariaDB (10.5 or later), reached through either Sequelize dialect: `mariadb` (the `mariadb`
 * connector) or `mysql` (the `mysql2` driver). Both drivers send the same SQL; only how a statement
 * is run differs. MySQL servers are not supported: the statements rely on MariaDB's sequences and
 * on `RETURNING` (see the server check in `ensureMariaDb`).
 *
 * Why these shapes:
 * - Acquire is one `INSERT … ON DUPLICATE KEY UPDATE … RETURNING`. On a duplicate key InnoDB locks
 *   the existing row and every assignment is `IF(expired, new, old)`, so a live lock is left as it
 *   was and an expired one is taken over, under that row lock. MariaDB applies the assignments left
 *   to right and later ones see the columns already changed, so `expires_at` (the column the
 *   condition reads) is assigned last and every earlier condition still sees the old expiry.
 *   `RETURNING` reports the row as it is after the statement, taken over or not; we won if it carries
 *   our owner token.
 * - UPDATE has no RETURNING in MariaDB, so renewal and extend are also `INSERT … SELECT … FOR UPDATE
 *   ON DUPLICATE KEY UPDATE … RETURNING`: the SELECT picks our own live rows and locks them, so each
 *   one is certain to hit its duplicate key and be updated, never inserted. `FOR UPDATE` matters:
 *   under READ COMMITTED a plain INSERT … SELECT reads a snapshot, and a row changed meanwhile (by a
 *   force-release, or deleted by a purge) would be written back (resurrected) with our stale token.
 * - Fencing tokens come from a sequence (`NEXTVAL`), which no delete or takeover can rewind; a
 *   takeover also takes more than the old token, so a statement that drew its number and then
 *   waited for the row lock can never hand out a smaller token than the one it replaces. Such a
 *   statement draws a second number under the row lock instead of using old + 1, which the sequence
 *   may not have passed yet and could later hand out again (after the row is deleted).
 * - Rows persist: a release (and a force-release, release-stale or purge) never deletes the row, it
 *   marks it released (see `markReleased`). NEXTVAL is drawn before the statement claims the row, so
 *   an acquisition delayed between the two (descheduled, or waiting on a release's row lock) could
 *   otherwise insert after a later-drawn acquisition had come and gone, holding the lock with a
 *   smaller token than its predecessor. With the row kept, every later acquisition of that id takes
 *   the ON DUPLICATE KEY path, under the row lock, with at least the kept token + 1. Only a DELETE
 *   (a manual one, or purge of rows released more than a day ago) reopens that window, for a
 *   statement delayed across it.
 * - Times are `UTC_TIMESTAMP(6)` and stored as UTC in DATETIME(6), independent of every session's
 *   time_zone; they travel as epoch milliseconds computed by TIMESTAMPDIFF (also time-zone free).
 * - Tables use utf8mb4 with the binary, no-pad collation, so lock ids compare exactly as JavaScript
 *   strings do ('Job' ≠ 'job', 'a' ≠ 'a '), and ROW_FORMAT=DYNAMIC, whose 3072-byte key limit holds
 *   the 255-character (1020-byte) primary key.
 */
import { QueryTypes } from 'sequelize';
import { DbMutexUnsupportedServerError } from '../errors';
import type { SchemaNames } from '../schema';
import { auditedRows, eventJson, listParams, PlaceholderLockStore, type SqlSpelling } from './placeholder-sql';
import { parseAcquisition, parseCounts, parseExtend, parseJsonEventRows, parseLockRows, parseOwnerTokens, parseRelease, parseSemaphoreRow } from './rows';
import type { AcquireParams, Audit, Dialect, DialectDriver, LeaseKey, ListParams, ReleaseWhere, Rows, SemaphoreAcquireParams, Statement, StoreOperation } from './types';

const MIN_VERSION: readonly [number, number] = [10, 5];
const DEADLOCK = 1213;

/** Connections already checked to be MariaDB 10.5+. */
const checked = new WeakSet<object>();

/** A driver-independent way to send one query: text with `?` placeholders plus values. */
type Send = (connection: unknown, sql: string, values: readonly unknown[], timeoutMs: number, prepare: boolean) => Promise<unknown>;

function makeDriver(send: Send, isBroken: DialectDriver['isBroken']): DialectDriver {
  return {
    async run(connection, statement, timeoutMs) {
      await ensureMariaDb(connection, send, timeoutMs);
      // The server enforces the limit and the connection stays usable afterwards (unlike a
      // client-side timeout, after which the reply may still arrive).
      const text = `SET STATEMENT max_statement_time=${(timeoutMs / 1000).toFixed(3)} FOR ${statement.text}`;
      const result = await send(connection, text, statement.values, timeoutMs, statement.prepare === true);
      return Array.isArray(result) ? (result as Rows) : [];
    },
    async control(connection, command, timeoutMs) {
      // Not wrapped: SET STATEMENT … FOR does not take transaction control.
      await ensureMariaDb(connection, send, timeoutMs);
      await send(connection, command, [], timeoutMs, false);
    },
    isBroken,
    isRetryable(error) {
      // ER_LOCK_DEADLOCK: InnoDB rolled the victim back as a whole. Concurrent upserts and deletes of
      // one key can deadlock on the key's gap locks even though each is a single statement.
      return (error as { errno?: unknown } | null)?.errno === DEADLOCK;
    },
  };
}

async function ensureMariaDb(connection: unknown, send: Send, timeoutMs: number): Promise<void> {
  const key = connection as object;
  if (checked.has(key)) return;
  const rows = (await send(connection, 'SELECT VERSION() AS v', [], timeoutMs, false)) as { v?: string }[];
  checkVersion(rows[0]?.v ?? '');
  checked.add(key);
}

function checkVersion(version: string): void {
  const match = /^(\d+)\.(\d+)/.exec(version);
  const [major, minor] = match ? [Number(match[1]), Number(match[2])] : [0, 0];
  const recent = major > MIN_VERSION[0] || (major === MIN_VERSION[0] && minor >= MIN_VERSION[1]);
  if (!/mariadb/i.test(version) || !recent) throw new DbMutexUnsupportedServerError(version);
}

// ---- drivers ----------------------------------------------------------------------------------

interface MariadbConnection {
  query(options: { sql: string }, values?: unknown[]): Promise<unknown>;
  execute?(options: { sql: string }, values?: unknown[]): Promise<unknown>;
  isValid?(): boolean;
}

/**
 * The `mariadb` connector (Sequelize dialect `mariadb`): promise API. Fixed-shape statements go
 * through `execute` (binary protocol; the connector keeps the server-side prepared statement per
 * connection, so the server parses the acquire and release once, not on every call). The bench's
 * "text-protocol" lever row measures what that is worth against text queries.
 */
const mariadbDriver = makeDriver(
  (connection, sql, values, _timeoutMs, prepare) => {
    const c = connection as MariadbConnection;
    return prepare && typeof c.execute === 'function' ? c.execute({ sql }, values as unknown[]) : c.query({ sql }, values as unknown[]);
  },
  (connection) => {
    const c = connection as MariadbConnection;
    return typeof c.isValid === 'function' && !c.isValid();
  },
);

interface Mysql2Connection {
  query(options: { sql: string; values?: unknown[] }, callback: (error: Error | null, result: unknown) => void): unknown;
  _fatalError?: unknown;
  _closing?: boolean;
}

/** Extra time the client waits beyond the server's own limit before giving up on the reply. */
const CLIENT_GRACE_MS = 2000;
const CLIENT_TIMEOUT_CODE = 'DB_MUTEX_CLIENT_TIMEOUT';

/**
 * The `mysql2` driver (Sequelize dialect `mysql`): callback API. The client-side deadline is our own
 * timer rather than mysql2's `timeout` option, which is not cleared when the server answers with an
 * error (a deadlock, say): that timer would keep the process alive and call back again much later.
 */
const mysql2Driver = makeDriver(
  (connection, sql, values, timeoutMs) =>
    new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(Object.assign(new Error(`no reply from the server within ${timeoutMs + CLIENT_GRACE_MS} ms`), { code: CLIENT_TIMEOUT_CODE }));
      }, timeoutMs + CLIENT_GRACE_MS);
      (connection as Mysql2Connection).query({ sql, values: values as unknown[] }, (error, result) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        if (error) reject(error);
        else resolve(result);
      });
    }),
  (connection, error) => {
    // After a client-side timeout the reply may still arrive, so the protocol state is unknown.
    const c = connection as Mysql2Connection;
    const e = error as { code?: unknown; fatal?: unknown } | null;
    return e?.code === CLIENT_TIMEOUT_CODE || e?.fatal === true || Boolean(c._fatalError) || c._closing === true;
  },
);

// ---- SQL --------------------------------------------------------------------------------------

const q = (identifier: string) => `\`${identifier.replace(/`/g, '``')}\``;
const NOW = 'UTC_TIMESTAMP(6)';
const EPOCH = "TIMESTAMP'1970-01-01 00:00:00'";
/** Epoch milliseconds (with the microseconds as a fraction), as text. */
const ms = (expr: string) => `CAST(TIMESTAMPDIFF(MICROSECOND, ${EPOCH}, ${expr}) / 1000 AS CHAR)`;
const interval = (seconds: string) => `INTERVAL CAST(ROUND((${seconds}) * 1000000) AS SIGNED) MICROSECOND`;
/** `base` plus `seconds`; NULL when `seconds` is NULL. */
const plus = (base: string, seconds: string) => `(${base} + ${interval(seconds)})`;
/** The earlier of two instants, ignoring a NULL one (MariaDB's LEAST returns NULL if any argument is NULL). */
const earliest = (a: string, b: string) => `COALESCE(LEAST(${a}, ${b}), ${a}, ${b})`;
const fromMs = (param: string) => `(${EPOCH} + INTERVAL CAST(ROUND(${param} * 1000) AS SIGNED) MICROSECOND)`;

/**
 * A released row: owner token the nil UUID (no owner's random token is ever nil), acquired_at past
 * every real row (so the oldest-first index range of live rows never walks released ones),
 * expires_at long past (so the acquire's takeover condition treats it as free).
 */
const FREE_OWNER = "'00000000-0000-0000-0000-000000000000'";
const FREE_AT = "TIMESTAMP'9999-12-31 23:59:59.999999'";
/** Every reader and operator action sees only rows that are not released. */
const LIVE = `acquired_at < ${FREE_AT}`;
/** How long purge keeps a released row: far beyond any statement that could still be in flight. */
const PURGE_RELEASED_AFTER = 'INTERVAL 1 DAY';

/**
 * ON DUPLICATE KEY UPDATE assignments that mark a row released. The token stays. deadline_at keeps
 * the expiry the row had (VALUES() is the pre-release row selected FOR UPDATE), which is how the
 * release reports whether it had already run out; heartbeat_at records when it was released.
 */
const markReleased = `deadline_at = VALUES(expires_at), owner_token = ${FREE_OWNER}, acquired_at = ${FREE_AT},
  heartbeat_at = ${NOW}, lease_seconds = NULL, expires_at = ${EPOCH}`;

const COLUMNS = 'lock_id, owner_token, fencing_token, holder, hostname, pid, acquired_at, expires_at, deadline_at, heartbeat_at, lease_seconds';

const LOCK_COLUMNS = `lock_id, holder, hostname, pid, CAST(fencing_token AS CHAR) AS fencing_token,
  ${ms('acquired_at')} AS acquired_ms, ${ms('expires_at')} AS expires_ms, ${ms('deadline_at')} AS deadline_ms,
  ${ms('heartbeat_at')} AS heartbeat_ms, lease_seconds, ${ms(NOW)} AS now_ms, kind, semaphore_id, permit, permit_limit`;

/** Expired, or no heartbeat for more than two renewal periods (2/3 of a lease). */
const STALE = `(expires_at <= ${NOW} OR (lease_seconds IS NOT NULL
  AND heartbeat_at < ${NOW} - ${interval('lease_seconds * 2 / 3')}))`;

/** Our own rows: (lock id, owner token) pairs, see `oursParams`. */
const OURS = `lock_id IN (:lockIds) AND (lock_id, owner_token) IN (:pairs)`;

const SPELLING: SqlSpelling = {
  quote: q,
  text: 'CHAR',
  ms,
  jsonObject: 'JSON_OBJECT',
  now: NOW,
  fromMs,
  daysAgo: (days) => `(${NOW} - ${interval(`${days} * 86400`)})`,
  insertIgnore: 'INSERT IGNORE',
  live: (a) => `${a}.acquired_at < ${FREE_AT} AND (${a}.expires_at IS NULL OR ${a}.expires_at > ${NOW})`,
  instant: (expr) => expr,
};

/** Our own rows (lock id and owner token pairs), as the positional list placeholders expand them. */
function oursParams(locks: readonly LeaseKey[]): Record<string, unknown> {
  return { lockIds: locks.map((l) => l.lockId), pairs: locks.map((l) => [l.lockId, l.ownerToken]) };
}

class MariadbStore extends PlaceholderLockStore {
  protected get spelling() {
    return SPELLING;
  }
  private readonly seq = q(sequenceName(this.names));

  async acquire(p: AcquireParams) {
    const { t, seq } = this;
    /** Taken over only when expired by the database clock; NULL (never expires) is never taken over. */
    const ifExpired = (column: string, value = `VALUES(${column})`) => `${column} = IF(expires_at <= ${NOW}, ${value}, ${column})`;
    // RETURNING reports the row as the statement left it: on a refusal, the live holder's row, read
    // under the row lock the upsert took anyway.
    const rows = await this.send(
      'acquire',
      `INSERT INTO ${t} (${COLUMNS}, kind, semaphore_id, permit, permit_limit)
        VALUES (:lockId, :ownerToken, NEXTVAL(${seq}), :holder, :hostname, :pid, ${NOW},
          ${earliest(plus(NOW, ':leaseSeconds'), plus(NOW, ':ttlSeconds'))}, ${plus(NOW, ':ttlSeconds')}, ${NOW}, :leaseSeconds,
          :kind, NULL, NULL, NULL)
        ON DUPLICATE KEY UPDATE
          ${ifExpired('owner_token')},
          ${ifExpired('fencing_token', `GREATEST(IF(VALUES(fencing_token) > fencing_token, VALUES(fencing_token), NEXTVAL(${seq})), fencing_token + 1)`)},
          ${ifExpired('holder')}, ${ifExpired('hostname')}, ${ifExpired('pid')}, ${ifExpired('acquired_at')},
          ${ifExpired('deadline_at')}, ${ifExpired('heartbeat_at')}, ${ifExpired('lease_seconds')},
          ${ifExpired('kind')}, ${ifExpired('semaphore_id')}, ${ifExpired('permit')}, ${ifExpired('permit_limit')},
          ${ifExpired('expires_at')}
        RETURNING owner_token = :ownerToken AS won, CAST(fencing_token AS CHAR) AS fencing_token,
          ${ms('acquired_at')} AS acquired_ms, ${ms('expires_at')} AS expires_ms, holder`,
      { ...p, kind: p.kind ?? 'lock' },
    );
    return parseAcquisition(rows);
  }

  async acquireSemaphore(p: SemaphoreAcquireParams) {
    const { t, seq } = this;
    const ifExpired = (column: string, value = `VALUES(${column})`) => `${column} = IF(expires_at <= ${NOW}, ${value}, ${column})`;
    const live = (a: string) => SPELLING.live(a);
    const params = { ...p, anchor: `${p.semaphoreId}/permits` };
    // Two statements in one transaction (no advisory lock that lasts a statement, and no DML in
    // WITH). First the semaphore's anchor row is upserted, which takes its row lock until commit:
    // acquisitions of one semaphore id go one at a time from here on. The anchor looks like a
    // released row (see markReleased), so no listing, count or acquisition ever treats it as held;
    // a lock that takes its key only shares the row lock. Then, under that lock, the second
    // statement's reads see every permit committed before (a locking read under REPEATABLE READ, a
    // fresh snapshot under READ COMMITTED); it takes the lowest free permit (no row, expired, or
    // released) unless the live permits carry another limit, and draws the token: NEXTVAL under the
    // anchor's lock is larger than every token of this semaphore handed out before.
    const results = await this.transaction('acquireSemaphore', [
      this.statement(
        'semaphore_anchor',
        `INSERT INTO ${t} (${COLUMNS})
          VALUES (:anchor, ${FREE_OWNER}, 0, '', '', 0, ${FREE_AT}, ${EPOCH}, NULL, ${NOW}, NULL)
          ON DUPLICATE KEY UPDATE lock_id = lock_id`,
        params,
      ),
      this.statement(
        'semaphore_acquire',
        `INSERT INTO ${t} (${COLUMNS}, kind, semaphore_id, permit, permit_limit)
          SELECT CONCAT(:semaphoreId, '/permit/', f.n), :ownerToken, NEXTVAL(${seq}), :holder, :hostname, :pid, ${NOW},
            ${earliest(plus(NOW, ':leaseSeconds'), plus(NOW, ':ttlSeconds'))}, ${plus(NOW, ':ttlSeconds')}, ${NOW}, :leaseSeconds,
            'semaphore', :semaphoreId, f.n, :limit
          FROM (SELECT s.n FROM (WITH RECURSIVE r (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n + 1 < :limit) SELECT n FROM r) AS s
            WHERE NOT EXISTS (SELECT 1 FROM ${t} AS o WHERE o.lock_id = CONCAT(:semaphoreId, '/permit/', s.n) AND ${live('o')})
              AND NOT EXISTS (SELECT 1 FROM ${t} AS o WHERE o.semaphore_id = :semaphoreId AND o.kind = 'semaphore' AND ${live('o')}
                AND NOT (o.permit_limit <=> :limit))
            ORDER BY s.n LIMIT 1) AS f
          ON DUPLICATE KEY UPDATE
            ${ifExpired('owner_token')},
            ${ifExpired('fencing_token', 'GREATEST(VALUES(fencing_token), fencing_token + 1)')},
            ${ifExpired('holder')}, ${ifExpired('hostname')}, ${ifExpired('pid')}, ${ifExpired('acquired_at')},
            ${ifExpired('deadline_at')}, ${ifExpired('heartbeat_at')}, ${ifExpired('lease_seconds')},
            ${ifExpired('kind')}, ${ifExpired('semaphore_id')}, ${ifExpired('permit')}, ${ifExpired('permit_limit')},
            ${ifExpired('expires_at')}
          RETURNING IF(owner_token = :ownerToken, 'won', 'raced') AS outcome, CAST(fencing_token AS CHAR) AS fencing_token,
            ${ms('acquired_at')} AS acquired_ms, ${ms('expires_at')} AS expires_ms, permit, 0 AS used, permit_limit AS current_limit, holder`,
        params,
      ),
    ]);
    const attempt = parseSemaphoreRow(results.at(-1) ?? [], p);
    if (attempt) return attempt;
    // No permit taken: one read says why (another limit among the live permits, or full).
    return this.semaphoreState(p);
  }

  async listPermits(p: { filter: string | null; limit: number }) {
    const rows = await this.send(
      'listPermits',
      `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t}
        WHERE semaphore_id IS NOT NULL AND kind = 'semaphore' AND ${LIVE} AND (:filter IS NULL OR INSTR(semaphore_id, :filter) > 0)
        ORDER BY semaphore_id, permit LIMIT :limit`,
      p,
    );
    return parseLockRows(rows);
  }

  async releasePermitOf(semaphoreId: string, ownerToken: string) {
    // Marked released like any release (rows persist), found by the semaphore index instead of the key.
    const rows = await this.send('releasePermitOf', this.markReleasedWhere('semaphore_id = :semaphoreId AND owner_token = :ownerToken', 'lock_id'), {
      semaphoreId,
      ownerToken,
    });
    return rows.length > 0;
  }

  /**
   * Marks the rows `condition` selects released (rows persist, see above) with the INSERT … SELECT …
   * FOR UPDATE form that renew uses: each row selected exists, so it always hits its key and is never
   * inserted. `returning`: the RETURNING list.
   */
  private markReleasedWhere(condition: string, returning: string): string {
    return `INSERT INTO ${this.t} (${COLUMNS})
        SELECT ${COLUMNS} FROM ${this.t} AS src WHERE ${condition}
        FOR UPDATE
        ON DUPLICATE KEY UPDATE ${markReleased}
        RETURNING ${returning}`;
  }

  protected async releaseRow({ lockId, ownerToken }: LeaseKey) {
    // Our row only: the owner token names this acquisition.
    const rows = await this.send(
      'release',
      this.markReleasedWhere('lock_id = :lockId AND owner_token = :ownerToken', `COALESCE(deadline_at <= ${NOW}, 0) AS expired`),
      { lockId, ownerToken },
    );
    return parseRelease(rows);
  }

  async renew(locks: readonly LeaseKey[]) {
    const t = this.t;
    // One statement renews every lock this DbMutex holds; never past the TTL deadline, never
    // resurrecting a lease that already ran out.
    const rows = await this.send(
      'renew',
      `INSERT INTO ${t} (${COLUMNS})
        SELECT ${COLUMNS} FROM ${t} AS src WHERE ${OURS} AND lease_seconds IS NOT NULL AND expires_at > ${NOW}
        FOR UPDATE
        ON DUPLICATE KEY UPDATE heartbeat_at = ${NOW},
          expires_at = ${earliest(plus(NOW, `${t}.lease_seconds`), `${t}.deadline_at`)}
        RETURNING owner_token`,
      oursParams(locks),
    );
    return parseOwnerTokens(rows);
  }

  async classify(locks: readonly LeaseKey[]) {
    const rows = await this.send('classify', `SELECT owner_token FROM ${this.t} WHERE ${OURS} AND expires_at <= ${NOW}`, oursParams(locks));
    return parseOwnerTokens(rows);
  }

  async extend({ lockId, ownerToken }: LeaseKey, seconds: number | null) {
    const t = this.t;
    const rows = await this.send(
      'extend',
      `INSERT INTO ${t} (${COLUMNS})
        SELECT ${COLUMNS} FROM ${t} AS src
        WHERE lock_id = :lockId AND owner_token = :ownerToken AND (expires_at IS NULL OR expires_at > ${NOW})
        FOR UPDATE
        ON DUPLICATE KEY UPDATE heartbeat_at = ${NOW}, deadline_at = ${plus(NOW, ':seconds')},
          expires_at = IF(${t}.lease_seconds IS NULL, ${plus(NOW, ':seconds')},
            ${earliest(plus(NOW, `${t}.lease_seconds`), plus(NOW, ':seconds'))})
        RETURNING ${ms('expires_at')} AS expires_ms, ${ms('deadline_at')} AS deadline_ms`,
      { lockId, ownerToken, seconds },
    );
    return parseExtend(rows);
  }

  async inspect(lockId: string) {
    const rows = await this.send('inspect', `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t} WHERE lock_id = :lockId AND ${LIVE}`, { lockId });
    return parseLockRows(rows)[0] ?? null;
  }

  async list(p: ListParams) {
    // Keyset pagination on (acquired_at, lock_id) stays fast at any depth, unlike OFFSET.
    const rows = await this.send(
      'list',
      `SELECT ${LOCK_COLUMNS}, ${STALE} AS stale FROM ${this.t}
        WHERE ${LIVE} AND (:filter IS NULL OR INSTR(lock_id, :filter) > 0)
          AND (NOT :staleOnly OR ${STALE})
          AND (:afterMs IS NULL OR (acquired_at, lock_id) > (${fromMs(':afterMs')}, :afterId))
        ORDER BY acquired_at, lock_id LIMIT :limit`,
      listParams(p, p.staleOnly),
    );
    return parseLockRows(rows);
  }

  async counts(filter: string | null) {
    const rows = await this.send(
      'counts',
      `SELECT CAST(COUNT(*) AS CHAR) AS total, CAST(COALESCE(SUM(${STALE}), 0) AS CHAR) AS stale FROM ${this.t}
        WHERE ${LIVE} AND (:filter IS NULL OR INSTR(lock_id, :filter) > 0)`,
      { filter },
    );
    return parseCounts(rows);
  }

  protected async releaseAudited(where: ReleaseWhere, action: string, audit: Audit, operation: StoreOperation) {
    const { t, ev } = this;
    // Statements in one transaction (MariaDB has no DML in WITH, and a trigger may not write the
    // table its statement reads): first record the matching live rows in the audit table, locking
    // them; then mark released exactly the live rows that now have an audit row, returning those
    // audit rows. Every audit row records the end of that very acquisition, and (lock_id,
    // fencing_token) names one acquisition (a released row keeps its token, but is no longer
    // live, and the next acquisition takes a larger one), so "live with an audit row" can only
    // mean "audited just now"; `id >= LAST_INSERT_ID()` (the first id this connection's INSERT
    // generated) merely keeps the lookup short.
    const { condition, params } = auditedRows(where, action, audit, { stale: STALE, expired: `expires_at <= ${NOW}` });
    const purgeReleased: Statement[] =
      where.kind === 'expired'
        ? [
            // Purge also drops rows released long ago (else every lock id ever used stays). This
            // is the one DELETE the library does; the day's margin keeps it clear of any
            // acquisition statement that drew its token before the release.
            this.statement('purge_released', `DELETE FROM ${t} WHERE NOT ${LIVE} AND heartbeat_at < ${NOW} - ${PURGE_RELEASED_AFTER}`, {}),
          ]
        : [];
    const results = await this.transaction(operation, [
      ...purgeReleased,
      this.statement(
        `audit_${where.kind}`,
        `INSERT INTO ${ev} (action, lock_id, fencing_token, holder, hostname, pid, acquired_at, age_seconds, operator, reason, created_at)
            SELECT :action, lock_id, fencing_token, holder, hostname, pid, acquired_at,
              TIMESTAMPDIFF(MICROSECOND, acquired_at, ${NOW}) / 1000000, :operator, :reason, ${NOW}
            FROM ${t} WHERE ${LIVE} AND ${condition}
            FOR UPDATE`,
        params,
      ),
      this.statement(
        `release_audited`,
        `INSERT INTO ${t} (${COLUMNS})
            SELECT ${COLUMNS} FROM ${t} AS src WHERE ${where.kind === 'one' ? 'lock_id = :lockId AND ' : ''}${LIVE} AND (lock_id, fencing_token) IN
              (SELECT e.lock_id, e.fencing_token FROM ${ev} AS e WHERE e.id >= LAST_INSERT_ID())
            FOR UPDATE
            ON DUPLICATE KEY UPDATE ${markReleased}
            RETURNING (SELECT ${eventJson('e', SPELLING)} FROM ${ev} AS e
              WHERE e.lock_id = ${t}.lock_id AND e.fencing_token = ${t}.fencing_token ORDER BY e.id DESC LIMIT 1) AS event`,
        params,
      ),
    ]);
    return parseJsonEventRows(results[results.length - 1] ?? []);
  }

  async fencingFloor(floor: number) {
    // MariaDB's SETVAL never moves a sequence backwards (a smaller value is ignored), atomically
    // with concurrent NEXTVALs. Tokens also exceed the kept row's own token, which a floor
    // cannot lower either.
    // SETVAL takes no placeholders: the floor (a validated safe integer) goes in as a literal,
    // unprepared, since each value is a different text.
    await this.transaction('fencingFloor', [
      { name: `${this.prefix}_floor`, text: `SELECT SETVAL(${this.seq}, ${String(floor)}) AS floor`, values: [], prepare: false },
    ]);
  }
}

function sequenceName(names: SchemaNames): string {
  return `${names.tableName}_fencing_seq`;
}

function mariadbFamily(name: 'mariadb' | 'mysql', driver: DialectDriver): Dialect {
  return {
    name,
    driver,
    notifies: false,
    tableOptions: { charset: 'utf8mb4', collate: 'utf8mb4_nopad_bin', rowFormat: 'DYNAMIC' },
    async prepareSchema(sequelize) {
      // Refuse a MySQL (or old MariaDB) server before creating anything, with an error that says why.
      const [row] = await sequelize.query<{ v: string }>('SELECT VERSION() AS v', { type: QueryTypes.SELECT });
      checkVersion(row?.v ?? '');
    },
    schemaExtrasSql: (names) => [`CREATE SEQUENCE IF NOT EXISTS ${q(sequenceName(names))}`],
    dropExtrasSql: (names) => [`DROP SEQUENCE IF EXISTS ${q(sequenceName(names))}`],
    store: (names, sender, settings, variant) => new MariadbStore(names, sender, settings, variant),
  };
}

/** Sequelize dialect `mariadb` (the `mariadb` connector). */
export const mariadbDialect: Dialect = mariadbFamily('mariadb', mariadbDriver);
/** Sequelize dialect `mysql` (the `mysql2` driver), against a MariaDB server. */
export const mysqlDialect: Dialect = mariadbFamily('mysql', mysql2Driver);
